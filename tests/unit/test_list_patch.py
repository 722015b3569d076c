"""The list patch and the sync flows on in-memory fakes of the ports: no moto, no HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tests.fakes import MemoryQueue, MemorySource, MemoryStore
from waituntil.cache.layout import row_body
from waituntil.cache.list_patch import ListSizes
from waituntil.cache.model import FreshRow
from waituntil.core.contracts import Change, SyncProgress
from waituntil.core.list_order import ListOrder
from waituntil.core.settings import ConsumerSettings
from waituntil.read.cache_client import get_item, get_list
from waituntil.sync.full_sync import full_sync, resync
from waituntil.sync.list_publish import publish_list
from waituntil.sync.ports import ConsumerPorts
from waituntil.sync.row_changes import apply_changes

SIZES = ListSizes(chunk_bytes=1024, index_refs=4)


def _row(key: int, rank: int = 0, pad: int = 300) -> dict[str, Any]:
    return {"id": key, "rank": rank, "pad": "x" * pad}


def _write(
    store: MemoryStore, rows: Mapping[int, dict[str, Any] | None], at: int, order: ListOrder
) -> None:
    fresh = [
        FreshRow(str(key), None, None)
        if row is None
        else FreshRow(str(key), row_body(row), order.position(row))
        for key, row in rows.items()
    ]
    store.write_rows("articles", fresh, read_at_ns=at, order=order)


def _publish(store: MemoryStore, keys: list[int], at: int, order: ListOrder) -> Any:
    return publish_list(
        store,
        "articles",
        [str(key) for key in keys],
        order=order,
        sizes=SIZES,
        clock_ns=lambda: at,
        complete=True,
    )


def _sorted(rows: list[dict[str, Any]], order: ListOrder) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: order.sort_key(order.position(row)))


def test_a_fill_splits_into_chunks_and_index_pages() -> None:
    # Given 40 rows of about 320 bytes (3 per 1 KB chunk; 4 chunks per index page)
    store, order = MemoryStore(), ListOrder("id")
    rows = {key: _row(key) for key in range(1, 41)}
    _write(store, rows, 10, order)
    # When published at once
    result = _publish(store, list(rows), 10, order)
    # Then the list is whole, in several chunks under several index pages
    head = store.get_head("articles")
    assert head is not None and result.outcome == "created"
    assert head.chunk_count >= 10 and len(head.pages) >= 3
    assert get_list(store, "articles") == list(rows.values())


def test_a_one_row_change_rewrites_one_chunk_one_index_page_and_the_head() -> None:
    # Given a published list of 40 rows
    store, order = MemoryStore(), ListOrder("id")
    rows = {key: _row(key) for key in range(1, 41)}
    _write(store, rows, 10, order)
    _publish(store, list(rows), 10, order)
    nodes_before = set(store.nodes)
    # When row 20 changes
    rows[20] = _row(20, pad=310)
    _write(store, {20: rows[20]}, 20, order)
    result = _publish(store, [20], 20, order)
    # Then exactly one chunk and one index page are new; every other node is carried over
    assert (result.outcome, result.chunks_written, result.index_pages_written) == (
        "published",
        1,
        1,
    )
    assert len(set(store.nodes) - nodes_before) == 2
    assert get_list(store, "articles") == list(rows.values())


def test_an_unchanged_row_publishes_nothing() -> None:
    store, order = MemoryStore(), ListOrder("id")
    rows = {key: _row(key) for key in range(1, 6)}
    _write(store, rows, 10, order)
    _publish(store, list(rows), 10, order)
    version = store.get_head("articles")
    # When the same content is read again
    _write(store, {3: rows[3]}, 20, order)
    result = _publish(store, [3], 20, order)
    # Then no version is published
    assert result.outcome == "unchanged"
    assert store.get_head("articles") == version


@pytest.mark.parametrize("order_text", ["rank", "rank.desc"])
def test_a_row_whose_order_column_changed_moves_between_chunks(order_text: str) -> None:
    # Given 30 rows ordered by rank, in many chunks, row 1 first (rank 0)
    order = ListOrder.parse("id", order_text)
    store = MemoryStore()
    rows = {key: _row(key, rank=min(key, 2)) for key in range(1, 31)}
    _write(store, rows, 10, order)
    _publish(store, list(rows), 10, order)
    # When row 1 moves to the other end of the list, twice before the list is patched
    rows[1] = _row(1, rank=5)
    _write(store, {1: _row(1, rank=4)}, 20, order)
    _write(store, {1: rows[1]}, 30, order)
    _publish(store, [1], 30, order)
    # Then it is listed once, at its new place, and the list is in order
    listed = get_list(store, "articles")
    assert listed == _sorted(list(rows.values()), order)
    # And its position tags were pruned to the one the list now holds
    assert len(store.rows[("articles", "1")].positions) == 1


def test_deletes_merge_small_chunks_and_an_emptied_list_is_empty() -> None:
    store, order = MemoryStore(), ListOrder("id")
    rows = {key: _row(key) for key in range(1, 31)}
    _write(store, rows, 10, order)
    _publish(store, list(rows), 10, order)
    before = store.get_head("articles")
    assert before is not None
    # When most rows are deleted, one by one
    for at, key in enumerate(range(1, 28), start=20):
        _write(store, {key: None}, at, order)
        _publish(store, [key], at, order)
    # Then the few rows left are in few chunks, not in a trail of near-empty ones
    head = store.get_head("articles")
    assert head is not None and head.chunk_count <= 2 < before.chunk_count
    assert get_list(store, "articles") == [rows[28], rows[29], rows[30]]
    # When the rest go too / Then the list is cached and empty
    for at, key in enumerate(range(28, 31), start=100):
        _write(store, {key: None}, at, order)
        _publish(store, [key], at, order)
    assert get_list(store, "articles") == []


def test_an_older_state_never_replaces_a_newer_listed_row() -> None:
    # Given row 1 listed from a read at t=30
    store, order = MemoryStore(), ListOrder("id")
    _write(store, {1: _row(1, pad=1)}, 30, order)
    _publish(store, [1], 30, order)
    # When a consumer that read it at t=20 comes late (its write is refused as stale)
    _write(store, {1: _row(1, pad=2)}, 20, order)
    _publish(store, [1], 40, order)
    # Then the list keeps the newer row
    assert get_list(store, "articles") == [_row(1, pad=1)]


# ----- the sync flows on fakes -----------------------------------------------------------------


def _ports(
    source: MemorySource, store: MemoryStore, queue: MemoryQueue, page: int = 3
) -> ConsumerPorts:
    settings = ConsumerSettings.model_validate(
        {
            "CACHE_TABLE_NAME": "cache",
            "SUPABASE_URL": "http://supabase.invalid",
            "SUPABASE_KEY_SECRET_NAME": "key",
            "QUEUE_URL": "http://queue.invalid",
            "CACHED_TABLES": "articles",
            "SUPABASE_PAGE_SIZE": str(page),
            "LIST_CHUNK_BYTES": "1024",
            "LIST_INDEX_REFS": "4",
        }
    )
    clock = iter(range(1000, 10**6))
    return ConsumerPorts(settings, source, store, queue, clock_ns=lambda: next(clock))


def _change(key: int | None, kind: str = "UPDATE", table: str = "articles") -> Change:
    return Change.model_validate(
        {
            "type": kind,
            "schema": "public",
            "table": table,
            "key": key,
            "received_at": "2026-11-29T00:00:00Z",
            "correlation_id": "c",
        }
    )


def test_a_change_reads_only_its_keys_and_starts_the_first_fill() -> None:
    # Given a 50-row table and an empty cache
    source, store, queue = MemorySource(), MemoryStore(), MemoryQueue()
    for key in range(1, 51):
        source.put(_row(key))
    ports = _ports(source, store, queue)
    # When one change arrives
    apply_changes("articles", [_change(7)], ports)
    # Then one row was read, the list exists but says it is filling, and a fill was queued
    assert source.rows_read == 1
    head = store.get_head("articles")
    assert head is not None and not head.complete and head.row_count == 1
    assert len(queue.bodies) == 1 and '"RESYNC"' in queue.bodies[0]
    assert get_item(store, "articles", 7) == _row(7)


def test_a_first_change_while_a_queued_resync_has_not_begun_starts_no_second_fill() -> None:
    # Given a 10-row table, an empty cache, and a RESYNC of every table queued but not yet run
    source, store, queue = MemorySource(), MemoryStore(), MemoryQueue()
    for key in range(1, 11):
        source.put(_row(key))
    ports = _ports(source, store, queue)
    resync(_change(None, "RESYNC", table="*"), ports, lambda: 10**9)
    assert len(queue.bodies) == 1
    # When the table's first change arrives before that sync begins
    apply_changes("articles", [_change(7)], ports)
    # Then it queues no second fill: the queued sync will complete the list
    assert len(queue.bodies) == 1
    queued = Change.from_message(queue.bodies[0])
    assert queued.sync is not None
    assert full_sync("articles", queued.sync, ports, lambda: 10**9) is None
    assert get_list(store, "articles") == source.rows(ListOrder("id"))
    head = store.get_head("articles")
    assert head is not None and head.complete


def test_a_full_sync_out_of_time_continues_and_resumes_from_its_checkpoint() -> None:
    # Given a 50-row table and an invocation with time for two pages of 3 rows
    source, store, queue = MemorySource(), MemoryStore(), MemoryQueue()
    for key in range(1, 51):
        source.put(_row(key))
    ports = _ports(source, store, queue)
    budget = iter([10**9, 10**9, 0])
    progress = full_sync("articles", SyncProgress(sync_id="s1"), ports, lambda: next(budget))
    # Then it stopped after two pages, with a checkpoint, and sent itself a continuation
    assert progress is not None and progress.after == 6
    assert store.get_checkpoint("articles") is not None
    assert len(queue.bodies) == 1
    # When the continuation runs with time enough / Then the whole table is cached and complete
    continuation = Change.from_message(queue.bodies[0])
    assert continuation.sync is not None
    assert full_sync("articles", continuation.sync, ports, lambda: 10**9) is None
    assert get_list(store, "articles") == source.rows(ListOrder("id"))
    assert store.get_checkpoint("articles") is None
    # And no row was read twice: the continuation resumed where the first invocation stopped
    assert source.rows_read == 50


def test_a_full_sync_heals_lost_inserts_updates_and_deletes() -> None:
    # Given a cache in step with 20 rows
    source, store, queue = MemorySource(), MemoryStore(), MemoryQueue()
    for key in range(1, 21):
        source.put(_row(key))
    ports = _ports(source, store, queue)
    assert full_sync("articles", SyncProgress(sync_id="a"), ports, lambda: 10**9) is None
    # When rows change in Supabase without any webhook reaching us
    source.put(_row(3, pad=5))
    source.delete(10)
    source.put(_row(25))
    # And a resync runs
    assert full_sync("articles", SyncProgress(sync_id="b"), ports, lambda: 10**9) is None
    # Then the cache equals Supabase, and the deleted row is gone as an item too
    assert get_list(store, "articles") == source.rows(ListOrder("id"))
    assert get_item(store, "articles", 10) is None
    assert get_item(store, "articles", 3) == _row(3, pad=5)
