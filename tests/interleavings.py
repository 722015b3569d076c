"""The interleaving scenario: however webhooks are reordered, duplicated, lost or batched,
however consumers interleave at every port call, wherever one is killed, whichever store write
applies and loses its answer (outcome unknown), and whenever the table's policy changes or an
operator rebuilds the table, the cache converges to Supabase; no published list version ever
mixes versions or shows a row older than an earlier one of its policy; and once all is quiet
and the sweep has run, every stored list node is reached by a head or expiring (no orphans).

Supabase changes while consumers run, rows change keys too (an UPDATE of the primary key). A
lost webhook is healed by one full sync at the end. The row-level faults AWS and Supabase
produce are drawn too: a row's write failing (its record fails and SQS delivers it again),
reads cut short by the project's max-rows, tombstones expiring (DynamoDB's TTL, once their
row is unlisted), and the clock read at any point (every clock read is a step of its own).
No list is shown complete before its fill has finished (I6).

With ``heal=True`` the table is cached first, reconcile cycles are scheduled among the consumers
(crashed like any of them), rows are stamped with the time their transaction began (which may be
before an earlier scan: commit order is not timestamp order), and once Supabase is quiet the
reconciler alone must heal every lost webhook (I1 without a full sync), never replacing a newer
row by an older (I2) or bringing a deleted one back (I5). The table's policy does not change in
that mode: a policy change is healed by the rebuild it starts, not by the reconciler.
The scenario takes the store it runs on: in-memory fakes in
``tests/unit/test_interleavings_on_fakes.py`` (many examples), the real ``CacheStore`` over
moto in ``tests/integration/test_interleavings_under_moto.py`` (fewer, slower); ``make soak``
runs thousands of each.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from tests.fakes import (
    FailingRows,
    MemoryQueue,
    MemorySource,
    Paused,
    Scheduler,
    StoreFaults,
    listed_rows,
)
from tests.list_checks import orphans
from waituntil.cache.model import ListHead, RowFailure, RowFailureReason
from waituntil.core.contracts import Change, SyncProgress
from waituntil.core.errors import DependencyUnavailable, RowWriteFailed, RowWritesFailed
from waituntil.core.list_order import ListOrder
from waituntil.core.settings import ConsumerSettings
from waituntil.read.cache_client import get_item, get_list
from waituntil.sync.batch import QueuedMessage, process_batch
from waituntil.sync.ports import ConsumerPorts
from waituntil.sync.rebuild import sync_message

ORDERS = [None, "rank", "rank.desc"]
# Outcome unknown, and a plain failure: see ``tests.fakes.StoreFaults``.
FAULTS = ["resent", "gave up", "failed"]


@dataclass
class StoreUnderTest:
    """The store a scenario runs on, and how to make its next write lose its answer: on the
    fakes ``Paused`` applies ``StoreFaults``; the real store under moto takes ``lose_answer``
    (botocore's own retry path), which says whether a fault was armed."""

    store: Any
    lose_answer: Callable[[str, Callable[[], None]], bool] | None = None


KEYS = st.integers(min_value=1, max_value=12)
OPS = st.lists(
    st.tuples(
        st.sampled_from(["upsert", "upsert", "delete", "rekey"]),
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


def _change(kind: str, key: int, old_key: int | None = None) -> str:
    return Change(
        type="DELETE" if kind == "delete" else "UPDATE",
        schema_name="public",
        table="articles",
        key=key,
        old_key=old_key,
        received_at=datetime.now(UTC),
        correlation_id=f"c-{kind}-{key}",
    ).to_message()


def _free_key(source: MemorySource, after: int) -> int | None:
    """The next key, cyclically after ``after``, that no row has: where a rekeyed row goes."""
    for step in range(1, 12):
        key = (after - 1 + step) % 12 + 1
        if key not in source.table:
            return key
    return None


def _row_faults(failing: set[int]) -> Callable[[str], RowFailure | None]:
    """The row writes (counted from the scenario's start) that fail on a dependency."""
    writes = itertools.count()

    def fault(key: str) -> RowFailure | None:
        if next(writes) in failing:
            return RowFailure(RowFailureReason.DEPENDENCY_FAILED, f"row {key}: DynamoDB 500")
        return None

    return fault


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
    """Checks every version as it is published (in the publishing consumer's thread).

    A version is checked in the order of the policy it was built with (``orders``, by
    digest); I4 holds among the served versions of one policy (a policy change starts a
    fresh list, and a rebuild's versions are not served until switched to).
    """

    source: MemorySource
    orders: dict[str, ListOrder]
    # Per policy and key: the newest read an earlier served version showed, and its content.
    newest_listed: dict[str, dict[str, tuple[int, str]]] = field(default_factory=dict)
    versions: int = 0
    complete: dict[str, bool] = field(default_factory=dict)  # per policy: shown complete yet

    def __call__(self, store: Any, head: ListHead) -> None:
        order = self.orders[head.policy]
        if head.complete and not self.complete.get(head.policy):
            # I6: only a full sync, at its end, says a list is complete.
            callers = {frame.function for frame in inspect.stack()}
            assert "full_sync" in callers, f"a list was shown complete by {sorted(callers)}"
        if head.rebuild is None:
            self.complete[head.policy] = head.complete
        entries = []
        for page_ref in head.pages:
            page = store.get_index_page(page_ref.key)
            for ref in page.chunks:
                entries += store.get_chunk(ref.key).entries
        keys = [entry.key for entry in entries]
        # I3: one version is one consistent list: each key once, in list order, and every row
        # a state Supabase really had (no half-built or invented rows).
        assert len(keys) == len(set(keys)), f"a key is listed twice: {keys}"
        positions = [order.sort_key(entry.position) for entry in entries]
        assert positions == sorted(positions), "the list is out of order"
        assert head.row_count == len(entries)
        newest = self.newest_listed.setdefault(head.policy, {})
        for entry in entries:
            assert entry.text in self.source.history[entry.key], "a row Supabase never had"
            if head.rebuild:
                continue
            # I4: never older than what an earlier version showed for that key. The same
            # content may keep an earlier read: a rebuild's version that had it unchanged.
            read_at, etag = newest.get(entry.key, (0, ""))
            assert entry.read_at_ns >= read_at or entry.etag == etag, (
                f"row {entry.key} went back in time"
            )
            if entry.read_at_ns >= read_at:
                newest[entry.key] = (entry.read_at_ns, entry.etag)
        self.versions += 1


def run_scenario(data: st.DataObject, make_store: Callable[[], Any], *, heal: bool = False) -> None:
    order_column = data.draw(st.sampled_from(ORDERS), label="order")
    fingerprint = heal and data.draw(st.booleans(), label="fingerprints, no change column")
    settings_ = _settings(order_column, fingerprint)
    # A project whose max-rows is below the declared page size (3) cuts reads short.
    source = MemorySource(
        max_rows=data.draw(st.sampled_from([None, None, 1, 2]), label="cap"),
        order=settings_.policy("articles").list_order,
    )
    failing = data.draw(st.sets(st.integers(0, 60), max_size=3), label="failing row writes")
    initial = data.draw(
        st.dictionaries(KEYS, st.integers(0, 2), min_size=4, max_size=10), label="rows"
    )
    clock = _Clock()  # jumps past the sweep's age, and the reconciler's settle, when quiet
    for key, size in initial.items():
        source.put(_stamped(_row(key, key % 3, size), clock.stamp(), fingerprint))
    ops = data.draw(OPS, label="ops")
    scheduler = Scheduler()
    queue = MemoryQueue()
    watch = ListWatch(source, {})
    faults = StoreFaults()

    def now() -> int:
        return clock()

    def clock_ns() -> int:
        scheduler.pause()  # the clock is read at any point between two other calls
        return clock()

    with make_store() as under_test:
        if not isinstance(under_test, StoreUnderTest):
            under_test = StoreUnderTest(under_test)
        raw_store = under_test.store
        store_faults = faults if under_test.lose_answer is None else None
        store = Paused(
            FailingRows(raw_store, _row_faults(failing)),
            scheduler,
            on_flip=watch,
            faults=store_faults,
        )

        def ports_for(settings: ConsumerSettings) -> ConsumerPorts:
            policy = settings.policy("articles")
            watch.orders[policy.digest] = policy.list_order
            return ConsumerPorts(
                settings=settings,
                source=Paused(source, scheduler),
                store=store,
                queue=queue,
                clock_ns=clock_ns,
            )

        ports = ports_for(settings_)
        ready: list[str] = []
        running: dict[int, list[str]] = {}
        started_at: dict[int, int] = {}
        outcomes: dict[int, Any] = {}
        lost = False
        crashes = 0
        policy_changes = rebuilds = store_faults_drawn = reconciles = 0
        faulted: set[int | None] = set()
        expire: Callable[..., list[str]] | None = getattr(raw_store, "expire_tombstones", None)
        if heal or data.draw(st.booleans(), label="filled first"):
            # A cache in use: filled before these changes, so no first fill heals what they
            # leave behind (a key change, a clock taken late) before the check below; with
            # ``heal``, what the reconciler heals.
            filler = replace(ports, source=source, store=raw_store, clock_ns=now)
            filled = process_batch([QueuedMessage("fill", _resync())], filler, lambda: 10**9)
            assert not filled.failures
            head = raw_store.get_head("articles")
            watch.complete[head.policy] = head.complete  # the watch did not see this fill

        def start(bodies: list[str], budget: int) -> None:
            calls = itertools.count()
            messages = [QueuedMessage(f"m{i}", body) for i, body in enumerate(bodies)]
            consumer_ports = ports  # a running consumer keeps the settings it started with

            def remaining_ms() -> int:
                # A full sync checks its time before each page: after ``budget`` pages it is
                # "out of time" and must continue through the queue.
                return 10**9 if next(calls) < budget else 0

            def work() -> None:
                outcomes[consumer] = process_batch(messages, consumer_ports, remaining_ms)

            started = now()
            consumer = scheduler.start(work)
            running[consumer] = bodies
            started_at[consumer] = started

        def settle(consumer: int) -> None:
            bodies = running.pop(consumer)
            error = scheduler.error(consumer)
            faulted.update(hit for hit, _, _ in faults.hit)
            faults.hit.clear()
            if error is not None:
                assert type(error).__name__ == "Crash", f"consumer failed: {error!r}"
                ready.extend(bodies)  # SQS redelivers what a dead consumer held
                return
            started_at.pop(consumer, None)
            failed = outcomes.pop(consumer).failures
            # Only the injected faults may fail a record (a row's write, or a store write that
            # lost its answer); SQS delivers it again.
            unexpected = {
                key: error
                for key, error in failed.items()
                if not isinstance(error, RowWriteFailed | RowWritesFailed)
                and not (consumer in faulted and isinstance(error, DependencyUnavailable))
            }
            assert not unexpected, f"records failed: {unexpected}"
            ready.extend(bodies[int(message_id[1:])] for message_id in failed)

        def lose_next_answer(fault: str) -> None:
            if under_test.lose_answer is None:
                faults.armed.append(fault)
                return
            armed = under_test.lose_answer(fault, lambda: faulted.add(scheduler.current()))
            assert armed or fault == "failed"

        def step(consumer: int, crash: bool = False) -> None:
            scheduler.step(consumer, crash=crash)
            if scheduler.finished(consumer):
                if crash:
                    started_at.pop(consumer, None)
                settle(consumer)

        for _ in range(400):
            ready.extend(queue.bodies)
            queue.bodies.clear()
            choices = []
            if ops:
                choices.append("supabase changes")
            if ready and len(running) < 3:
                choices.append("a consumer starts")
            if scheduler.waiting:
                choices.append("a consumer steps")
                if crashes < 2:
                    choices.append("a consumer is killed")
                if store_faults_drawn < 3:
                    choices.append("a store write loses its answer")
            if expire is not None and ops:
                choices.append("tombstones expire")
            if policy_changes < 2 and ops and not heal:
                choices.append("the table's policy changes")
            if rebuilds < 1 and ops:
                choices.append("an operator rebuilds the table")
            if heal and reconciles < 4:
                choices.append("a reconcile is scheduled")
            if not choices:
                break
            choice = data.draw(st.sampled_from(choices), label="action")
            if choice == "supabase changes":
                kind, key, rank, size = ops.pop(0)
                back = data.draw(st.integers(0, 3), label="transaction began s ago") if heal else 0
                old_key = None
                if kind == "rekey":
                    # UPDATE articles SET id = <free> WHERE id = key: one webhook, both keys
                    new_key = _free_key(source, key)
                    if key in source.table and new_key is not None:
                        source.delete(key)
                        key, old_key = new_key, key
                    kind = "upsert"
                if kind == "delete":
                    source.delete(key)
                else:
                    source.put(_stamped(_row(key, rank, size), clock.stamp(back), fingerprint))
                delivered = data.draw(st.integers(0, 9), label="delivery")
                if delivered == 0:
                    lost = True  # Supabase never retries: only a full sync heals this
                else:
                    message = _change(kind, key, old_key)
                    ready.extend([message] * (2 if delivered == 9 else 1))
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
            elif choice == "tombstones expire":
                # DynamoDB's TTL removes tombstones of reads older than any a running consumer
                # holds, and of rows no longer listed: a real TTL (the dead-letter queue's
                # retention and a day) outlives every consumer's run, and the hourly resync
                # unlists a deleted row long before. (A tombstone expiring while its row is
                # still listed: tests/unit/test_row_faults.py.)
                assert expire is not None
                oldest = min(started_at.values(), default=now())
                heads = [raw_store.get_head("articles"), raw_store.get_next_head("articles")]
                listed = {
                    str(row["id"]) for head in heads if head for row in listed_rows(raw_store, head)
                }
                expire("articles", read_before_ns=oldest, keep=listed)
            elif choice == "a store write loses its answer":
                store_faults_drawn += 1
                lose_next_answer(data.draw(st.sampled_from(FAULTS), label="fault"))
            elif choice == "the table's policy changes":
                # A deployment: consumers started from now on read with the new policy (and
                # the reader serves only what carries it); running ones finish with the old.
                policy_changes += 1
                current = ports.settings.policy("articles").order
                others = [order for order in ORDERS if order != current]
                new_order = data.draw(st.sampled_from(others), label="new")
                ports = ports_for(_settings(new_order, fingerprint))
            elif choice == "an operator rebuilds the table":
                rebuilds += 1  # `make rebuild TABLE=articles`
                progress = SyncProgress(sync_id=f"operator{rebuilds}", rebuild=True)
                ready.append(sync_message("articles", progress, ports))
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

        policy = ports.settings.policy("articles")

        def converged() -> None:
            expected = source.rows(policy.list_order)
            assert get_list(raw_store, "articles", policy=policy.digest) == expected
            for key in range(1, 13):
                row = source.table.get(key)
                assert get_item(raw_store, "articles", key, policy=policy.digest) == row

        drain()
        if raw_store.get_head("articles") is not None and not lost and not policy_changes:
            # I1 without a full sync: every change was delivered at least once. (After a
            # policy change, a consumer still running with the old one may write a row last,
            # in the old view: the reader refuses it until the next full sync rewrites it.)
            converged()
        if heal:
            # More changes whose webhooks are all lost, then quiet: reconcile cycles alone heal
            # everything (I1 without a full sync).
            for kind, key, rank, size in data.draw(OPS, label="lost at the end")[:5]:
                if kind == "delete":
                    source.delete(key)
                    continue
                if kind == "rekey":
                    new_key = _free_key(source, key)
                    if key in source.table and new_key is not None:
                        source.delete(key)
                        key = new_key
                stamp = clock.stamp(data.draw(st.integers(0, 3), label="began s ago"))
                source.put(_stamped(_row(key, rank, size), stamp, fingerprint))
            clock.advance(5)
            # Two cycles (the second finds what the first's follow-ups left), and one more for
            # each drawn row write that fails: a cycle whose heal write fails heals nothing and
            # the next one starts again, as a minute later on AWS.
            for _ in range(2 + len(failing)):
                ready.append(_reconcile())
                drain()
            converged()
        # I1 with lost webhooks: one full sync heals whatever they left behind; it comes after
        # the longest invocation, so its sweep settles every publish ever killed.
        clock.advance(ports.settings.orphan_age_s + 1)
        ready.append(_resync())
        drain()
        converged()
        # No orphans: every stored list node is reached by a head or expiring.
        assert orphans(raw_store, "articles") == []
