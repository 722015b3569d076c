"""The interleaving scenario: however webhooks are reordered, duplicated, lost or batched,
however consumers interleave at every port call, and wherever one is killed, the cache
converges to Supabase; and no published list version ever mixes versions or shows a row older
than an earlier one.

Supabase changes while consumers run. A lost webhook is healed by one full sync at the end. No
list is shown complete before its fill has finished (I6).

With ``heal=True`` the table is cached first, reconcile cycles are scheduled among the consumers
(crashed like any of them), rows are stamped with the time their transaction began (which may be
before an earlier scan: commit order is not timestamp order), and once Supabase is quiet the
reconciler alone must heal every lost webhook (I1 without a full sync), never replacing a newer
row by an older (I2) or bringing a deleted one back (I5).
The scenario takes the store it runs on: in-memory fakes in
``tests/unit/test_interleavings_on_fakes.py`` (many examples), the real ``CacheStore`` over
moto in ``tests/integration/test_interleavings_under_moto.py`` (fewer, slower); ``make soak``
runs thousands of each.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from tests.fakes import MemoryQueue, MemorySource, Paused, Scheduler
from waituntil.cache.model import ListHead
from waituntil.core.contracts import Change
from waituntil.core.list_order import ListOrder
from waituntil.core.settings import ConsumerSettings
from waituntil.read.cache_client import get_item, get_list
from waituntil.sync.batch import QueuedMessage, process_batch
from waituntil.sync.ports import ConsumerPorts

KEYS = st.integers(min_value=1, max_value=12)
OPS = st.lists(
    st.tuples(
        st.sampled_from(["upsert", "upsert", "delete"]),
        KEYS,
        st.integers(min_value=0, max_value=3),  # the list's order column (rank)
        st.integers(min_value=0, max_value=2),  # how much padding: rows move between chunks
    ),
    min_size=3,
    max_size=14,
)


def _settings(list_order: str | None, fingerprint: bool = False) -> ConsumerSettings:
    # With fingerprints, no change column: the reconciler finds updates by range sums alone.
    policies = '{"articles": {"changed_at": false, "fingerprint": true}}' if fingerprint else ""
    return ConsumerSettings.model_validate(
        {
            "CACHE_TABLE_NAME": "cache",
            "SUPABASE_URL": "http://supabase.invalid",
            "SUPABASE_KEY_SECRET_NAME": "key",
            "QUEUE_URL": "http://queue.invalid",
            "CACHED_TABLES": "articles",
            "SUPABASE_PAGE_SIZE": "3",
            # Tiny chunks and index pages, so a dozen rows split and merge both.
            "LIST_CHUNK_BYTES": "1024",
            "LIST_INDEX_REFS": "4",
            # Every row of the scenario is in the scan's window; rows younger than a second
            # are left to the next cycle, and a follow-up runs whenever a consumer takes it.
            "RECONCILE_OVERLAP_MINUTES": "2000",
            "RECONCILE_SETTLE_SECONDS": "1",
            **({"LIST_ORDER": list_order} if list_order else {}),
            **({"TABLE_POLICIES": policies} if policies else {}),
        }
    )


def _row(key: int, rank: int, size: int) -> dict[str, Any]:
    # 1024-byte chunks split above 2 KB: a few rows make several chunks, and a row that grows
    # or shrinks makes chunks split and merge.
    return {"id": key, "rank": rank, "title": f"title {key}", "pad": "x" * (150 + 300 * size)}


def _stamped(row: dict[str, Any], stamp: str, fingerprint: bool) -> dict[str, Any]:
    """The row with its change column, as a moddatetime trigger keeps it (none with
    fingerprints)."""
    return row if fingerprint else {**row, "updated_at": stamp}


def _change(kind: str, key: int) -> str:
    return Change(
        type="DELETE" if kind == "delete" else "UPDATE",
        schema_name="public",
        table="articles",
        key=key,
        received_at=datetime.now(UTC),
        correlation_id=f"c-{kind}-{key}",
    ).to_message()


def _reconcile() -> str:
    return Change(
        type="RECONCILE",
        schema_name="public",
        table="articles",
        key=None,
        received_at=datetime.now(UTC),
        correlation_id=f"reconcile-{next(_RECONCILES)}",
    ).to_message()


_RECONCILES = itertools.count()


class _Clock:
    """The consumers' clock (ns, a microsecond per call: the scan's timestamps are in µs) and
    Supabase's, which stamps ``updated_at``; ``advance`` lets time pass while all is quiet."""

    def __init__(self) -> None:
        self._now = itertools.count(1_000_000_000, 1_000)
        self._offset = 0

    def __call__(self) -> int:
        return next(self._now) + self._offset

    def advance(self, seconds: int) -> None:
        self._offset += seconds * 10**9

    def stamp(self, back_s: int = 0) -> str:
        """Now, or when a transaction that began ``back_s`` ago started."""
        moment = datetime.fromtimestamp(self() / 1e9 - back_s, tz=UTC)
        return moment.isoformat(timespec="microseconds")


def _resync() -> str:
    return Change(
        type="RESYNC",
        schema_name="public",
        table="articles",
        key=None,
        received_at=datetime.now(UTC),
        correlation_id="resync",
    ).to_message()


@dataclass
class ListWatch:
    """Checks every version as it is published (in the publishing consumer's thread)."""

    source: MemorySource
    order: ListOrder
    newest_listed: dict[str, int] = field(default_factory=dict)
    versions: int = 0
    complete: bool = False

    def __call__(self, store: Any, head: ListHead) -> None:
        if head.complete and not self.complete:
            # I6: only a full sync, at its end, says a list is complete.
            callers = {frame.function for frame in inspect.stack()}
            assert "full_sync" in callers, f"a list was shown complete by {sorted(callers)}"
        self.complete = head.complete
        entries = []
        for page_ref in head.pages:
            page = store.get_index_page(page_ref.key)
            for ref in page.chunks:
                entries += store.get_chunk(ref.key).entries
        keys = [entry.key for entry in entries]
        # I3: one version is one consistent list: each key once, in list order, and every row
        # a state Supabase really had (no half-built or invented rows).
        assert len(keys) == len(set(keys)), f"a key is listed twice: {keys}"
        positions = [self.order.sort_key(entry.position) for entry in entries]
        assert positions == sorted(positions), "the list is out of order"
        assert head.row_count == len(entries)
        for entry in entries:
            assert entry.text in self.source.history[entry.key], "a row Supabase never had"
            # I4: never older than what an earlier version showed for that key.
            assert entry.read_at_ns >= self.newest_listed.get(entry.key, 0), (
                f"row {entry.key} went back in time"
            )
            self.newest_listed[entry.key] = entry.read_at_ns
        self.versions += 1


def run_scenario(data: st.DataObject, make_store: Callable[[], Any], *, heal: bool = False) -> None:
    order_column = data.draw(st.sampled_from([None, "rank", "rank.desc"]), label="order")
    fingerprint = heal and data.draw(st.booleans(), label="fingerprints, no change column")
    settings_ = _settings(order_column, fingerprint)
    order = settings_.policy("articles").list_order
    source = MemorySource(order=order)
    initial = data.draw(
        st.dictionaries(KEYS, st.integers(0, 2), min_size=4, max_size=10), label="rows"
    )
    clock = _Clock()
    for key, size in initial.items():
        source.put(_stamped(_row(key, key % 3, size), clock.stamp(), fingerprint))
    ops = data.draw(OPS, label="ops")
    scheduler = Scheduler()
    queue = MemoryQueue()
    watch = ListWatch(source, order)

    with make_store() as raw_store:
        store = Paused(raw_store, scheduler, on_flip=watch)
        ports = ConsumerPorts(
            settings=settings_,
            source=Paused(source, scheduler),
            store=store,
            queue=queue,
            clock_ns=clock,
        )
        if heal:
            # The table is cached before anything is lost: what the reconciler heals.
            pending = [_resync()]
            while pending:
                batch = [QueuedMessage(f"fill{i}", body) for i, body in enumerate(pending)]
                assert not process_batch(batch, ports, lambda: 10**9).failures
                pending, queue.bodies[:] = list(queue.bodies), []
        ready: list[str] = []
        running: dict[int, list[str]] = {}
        outcomes: dict[int, Any] = {}
        lost = False
        crashes = 0
        reconciles = 0

        def start(bodies: list[str], budget: int) -> None:
            calls = itertools.count()
            messages = [QueuedMessage(f"m{i}", body) for i, body in enumerate(bodies)]

            def remaining_ms() -> int:
                # A full sync checks its time before each page: after ``budget`` pages it is
                # "out of time" and must continue through the queue.
                return 10**9 if next(calls) < budget else 0

            def work() -> None:
                outcomes[consumer] = process_batch(messages, ports, remaining_ms)

            consumer = scheduler.start(work)
            running[consumer] = bodies

        def settle(consumer: int) -> None:
            bodies = running.pop(consumer)
            error = scheduler.error(consumer)
            if error is not None:
                assert type(error).__name__ == "Crash", f"consumer failed: {error!r}"
                ready.extend(bodies)  # SQS redelivers what a dead consumer held
                return
            failed = outcomes.pop(consumer).failures
            assert not failed, f"records failed: {failed}"

        def step(consumer: int, crash: bool = False) -> None:
            scheduler.step(consumer, crash=crash)
            if scheduler.finished(consumer):
                settle(consumer)

        for _ in range(400):
            ready.extend(queue.bodies)
            queue.bodies.clear()
            choices = []
            if ops:
                choices.append("supabase changes")
            if ready and len(running) < 3:
                choices.append("a consumer starts")
            if heal and reconciles < 4:
                choices.append("a reconcile is scheduled")
            if scheduler.waiting:
                choices.append("a consumer steps")
                if crashes < 2:
                    choices.append("a consumer is killed")
            if not choices:
                break
            choice = data.draw(st.sampled_from(choices), label="action")
            if choice == "supabase changes":
                kind, key, rank, size = ops.pop(0)
                back = data.draw(st.integers(0, 3), label="transaction began s ago") if heal else 0
                if kind == "delete":
                    source.delete(key)
                else:
                    source.put(_stamped(_row(key, rank, size), clock.stamp(back), fingerprint))
                delivered = data.draw(st.integers(0, 9), label="delivery")
                if delivered == 0:
                    lost = True  # Supabase never retries: only a full sync heals this
                else:
                    ready.extend([_change(kind, key)] * (2 if delivered == 9 else 1))
                if data.draw(st.integers(0, 19), label="resync") == 0:
                    ready.append(_resync())
            elif choice == "a reconcile is scheduled":
                reconciles += 1
                ready.append(_reconcile())
            elif choice == "a consumer starts":
                count = data.draw(st.integers(1, min(3, len(ready))), label="batch")
                picked = sorted(
                    data.draw(
                        st.sets(st.integers(0, len(ready) - 1), min_size=count, max_size=count)
                    ),
                    reverse=True,
                )
                bodies = [ready.pop(index) for index in picked]
                start(bodies, data.draw(st.integers(1, 3), label="pages per invocation"))
            else:
                consumer = data.draw(st.sampled_from(scheduler.waiting), label="who")
                crash = choice == "a consumer is killed"
                crashes += crash
                step(consumer, crash=crash)

        def drain() -> None:
            for _ in range(2000):
                ready.extend(queue.bodies)
                queue.bodies.clear()
                if scheduler.waiting:
                    step(scheduler.waiting[0])
                elif ready:
                    start([ready.pop(0)], budget=3)
                elif not running:
                    return
            raise AssertionError("the queue never drained")

        def converged() -> None:
            expected = source.rows(order)
            assert get_list(raw_store, "articles") == expected
            for key in range(1, 13):
                row = source.table.get(key)
                assert get_item(raw_store, "articles", key) == row

        drain()
        if raw_store.get_head("articles") is not None and not lost:
            # I1 without a full sync: every change was delivered at least once.
            converged()
        if heal:
            # More changes whose webhooks are all lost, then quiet: reconcile cycles alone heal
            # everything (I1 without a full sync).
            for kind, key, rank, size in data.draw(OPS, label="lost at the end")[:5]:
                if kind == "delete":
                    source.delete(key)
                else:
                    stamp = clock.stamp(data.draw(st.integers(0, 3), label="began s ago"))
                    source.put(_stamped(_row(key, rank, size), stamp, fingerprint))
            clock.advance(5)
            for _ in range(2):
                ready.append(_reconcile())
                drain()
            converged()
        # I1 with lost webhooks: one full sync heals whatever they left behind.
        ready.append(_resync())
        drain()
        converged()
