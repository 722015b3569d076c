"""The interleaving scenario: however webhooks are reordered, duplicated, lost or batched,
however consumers interleave at every port call, and wherever one is killed, the cache
converges to Supabase; and no published list version ever mixes versions or shows a row older
than an earlier one.

Supabase changes while consumers run, rows change keys too (an UPDATE of the primary key). A
lost webhook is healed by one full sync at the end. The row-level faults AWS and Supabase
produce are drawn too: a row's write failing (its record fails and SQS delivers it again),
reads cut short by the project's max-rows, tombstones expiring (DynamoDB's TTL, once their
row is unlisted), and the clock read at any point (every clock read is a step of its own).
The scenario takes the store it runs on: in-memory fakes in
``tests/unit/test_interleavings_on_fakes.py`` (many examples), the real ``CacheStore`` over
moto in ``tests/integration/test_interleavings_under_moto.py`` (fewer, slower); ``make soak``
runs thousands of each.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from tests.fakes import FailingRows, MemoryQueue, MemorySource, Paused, Scheduler, listed_rows
from waituntil.cache.model import ListHead, RowFailure, RowFailureReason
from waituntil.core.contracts import Change
from waituntil.core.errors import RowWriteFailed, RowWritesFailed
from waituntil.core.list_order import ListOrder
from waituntil.core.settings import ConsumerSettings
from waituntil.read.cache_client import get_item, get_list
from waituntil.sync.batch import QueuedMessage, process_batch
from waituntil.sync.ports import ConsumerPorts

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


def _settings(list_order: str | None) -> ConsumerSettings:
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
            **({"LIST_ORDER": list_order} if list_order else {}),
        }
    )


def _row(key: int, rank: int, size: int) -> dict[str, Any]:
    # 1024-byte chunks split above 2 KB: a few rows make several chunks, and a row that grows
    # or shrinks makes chunks split and merge.
    return {"id": key, "rank": rank, "title": f"title {key}", "pad": "x" * (150 + 300 * size)}


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

    def __call__(self, store: Any, head: ListHead) -> None:
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


def run_scenario(data: st.DataObject, make_store: Callable[[], Any]) -> None:
    order_column = data.draw(st.sampled_from([None, "rank", "rank.desc"]), label="order")
    settings_ = _settings(order_column)
    order = settings_.policy("articles").list_order
    # A project whose max-rows is below the declared page size (3) cuts reads short.
    source = MemorySource(max_rows=data.draw(st.sampled_from([None, None, 1, 2]), label="cap"))
    failing = data.draw(st.sets(st.integers(0, 60), max_size=3), label="failing row writes")
    initial = data.draw(
        st.dictionaries(KEYS, st.integers(0, 2), min_size=4, max_size=10), label="rows"
    )
    for key, size in initial.items():
        source.put(_row(key, key % 3, size))
    ops = data.draw(OPS, label="ops")
    clock = itertools.count(1_000)
    scheduler = Scheduler()
    queue = MemoryQueue()
    watch = ListWatch(source, order)

    def clock_ns() -> int:
        scheduler.pause()  # the clock is read at any point between two other calls
        return next(clock)

    with make_store() as raw_store:
        store = Paused(FailingRows(raw_store, _row_faults(failing)), scheduler, on_flip=watch)
        ports = ConsumerPorts(
            settings=settings_,
            source=Paused(source, scheduler),
            store=store,
            queue=queue,
            clock_ns=clock_ns,
        )
        ready: list[str] = []
        running: dict[int, list[str]] = {}
        started_at: dict[int, int] = {}
        outcomes: dict[int, Any] = {}
        lost = False
        crashes = 0
        expire: Callable[..., list[str]] | None = getattr(raw_store, "expire_tombstones", None)
        if data.draw(st.booleans(), label="filled first"):
            # A cache in use: filled before these changes, so no first fill heals what they
            # leave behind (a key change, a clock taken late) before the check below.
            filler = replace(ports, source=source, store=raw_store, clock_ns=lambda: next(clock))
            filled = process_batch([QueuedMessage("fill", _resync())], filler, lambda: 10**9)
            assert not filled.failures

        def start(bodies: list[str], budget: int) -> None:
            calls = itertools.count()
            messages = [QueuedMessage(f"m{i}", body) for i, body in enumerate(bodies)]

            def remaining_ms() -> int:
                # A full sync checks its time before each page: after ``budget`` pages it is
                # "out of time" and must continue through the queue.
                return 10**9 if next(calls) < budget else 0

            def work() -> None:
                outcomes[consumer] = process_batch(messages, ports, remaining_ms)

            started = next(clock)
            consumer = scheduler.start(work)
            running[consumer] = bodies
            started_at[consumer] = started

        def settle(consumer: int) -> None:
            bodies = running.pop(consumer)
            error = scheduler.error(consumer)
            if error is not None:
                assert type(error).__name__ == "Crash", f"consumer failed: {error!r}"
                ready.extend(bodies)  # SQS redelivers what a dead consumer held
                return
            started_at.pop(consumer, None)
            failed = outcomes.pop(consumer).failures
            # Only the injected row faults may fail a record; SQS delivers it again.
            unexpected = {
                key: error
                for key, error in failed.items()
                if not isinstance(error, RowWriteFailed | RowWritesFailed)
            }
            assert not unexpected, f"records failed: {unexpected}"
            ready.extend(bodies[int(message_id[1:])] for message_id in failed)

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
            if expire is not None and ops:
                choices.append("tombstones expire")
            if not choices:
                break
            choice = data.draw(st.sampled_from(choices), label="action")
            if choice == "supabase changes":
                kind, key, rank, size = ops.pop(0)
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
                    source.put(_row(key, rank, size))
                delivered = data.draw(st.integers(0, 9), label="delivery")
                if delivered == 0:
                    lost = True  # Supabase never retries: only a full sync heals this
                else:
                    message = _change(kind, key, old_key)
                    ready.extend([message] * (2 if delivered == 9 else 1))
                if data.draw(st.integers(0, 19), label="resync") == 0:
                    ready.append(_resync())
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
                oldest = min(started_at.values(), default=next(clock))
                head = raw_store.get_head("articles")
                listed = {str(row["id"]) for row in listed_rows(raw_store, head)} if head else set()
                expire("articles", read_before_ns=oldest, keep=listed)
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
        # I1 with lost webhooks: one full sync heals whatever they left behind.
        ready.append(_resync())
        drain()
        converged()
