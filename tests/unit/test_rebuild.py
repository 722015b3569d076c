"""Rebuilding a table's list as a fresh version, apart from the served one (``make rebuild``,
or a changed table policy): readers keep the served version until the new one is complete.
On the in-memory fakes: no moto, no HTTP."""

from __future__ import annotations

from typing import Any

from tests.fakes import MemoryQueue, MemorySource, MemoryStore
from tests.list_checks import orphans, plant_duplicate
from waituntil.core.contracts import Change, SyncProgress
from waituntil.core.list_order import ListOrder
from waituntil.core.settings import ConsumerSettings
from waituntil.read.cache_client import get_item, get_list
from waituntil.sync.full_sync import full_sync, resync
from waituntil.sync.ports import ConsumerPorts
from waituntil.sync.row_changes import apply_changes

ORDER = ListOrder("id")


def _ports(
    source: MemorySource, store: MemoryStore, queue: MemoryQueue, **environment: str
) -> ConsumerPorts:
    settings = ConsumerSettings.model_validate(
        {
            **environment,
            "CACHE_TABLE_NAME": "cache",
            "SUPABASE_URL": "http://supabase.invalid",
            "SUPABASE_KEY_SECRET_NAME": "key",
            "QUEUE_URL": "http://queue.invalid",
            "CACHED_TABLES": "articles",
            "SUPABASE_PAGE_SIZE": "5",
            "LIST_CHUNK_BYTES": "1024",
            "LIST_INDEX_REFS": "4",
        }
    )
    clock = iter(range(1000, 10**6))
    return ConsumerPorts(settings, source, store, queue, clock_ns=lambda: next(clock))


def _row(key: int, title: str = "t") -> dict[str, Any]:
    return {"id": key, "title": f"{title} {key}", "pad": "x" * 300}


def _change(key: int) -> Change:
    return Change.model_validate(
        {
            "type": "UPDATE",
            "schema": "public",
            "table": "articles",
            "key": key,
            "received_at": "2026-11-29T00:00:00Z",
            "correlation_id": "c",
        }
    )


def _one_page() -> Any:
    """An invocation with time for one page of a full sync."""
    budget = iter([10**9, 0])
    return lambda: next(budget)


def _corrupted(source: MemorySource, store: MemoryStore, ports: ConsumerPorts) -> list[Any]:
    """A filled list whose first chunk holds its first row twice (served so)."""
    for key in range(1, 21):
        source.put(_row(key))
    assert full_sync("articles", SyncProgress(sync_id="fill"), ports, lambda: 10**9) is None
    plant_duplicate(store, "articles")
    rows = get_list(store, "articles")
    assert rows is not None and rows[0] == rows[1]
    return rows


def test_a_rebuild_keeps_serving_the_current_list_until_the_new_one_is_complete() -> None:
    # Given a served list that holds a row twice
    source, store, queue = MemorySource(), MemoryStore(), MemoryQueue()
    ports = _ports(source, store, queue)
    served = _corrupted(source, store, ports)
    # When a rebuild runs one page per invocation, and a change arrives in the middle of it
    progress = SyncProgress(sync_id="r1", rebuild=True)
    assert full_sync("articles", progress, ports, _one_page()) is not None
    assert get_list(store, "articles") == served  # readers keep the current list meanwhile
    source.put(_row(3, "changed"))
    apply_changes("articles", [_change(3)], ports)
    while queue.bodies:
        continuation = Change.from_message(queue.bodies.pop(0))
        assert continuation.sync is not None and continuation.sync.rebuild
        full_sync("articles", continuation.sync, ports, _one_page())
    # Then the list is whole again: every row once, the change included
    assert get_list(store, "articles") == source.rows(ORDER)
    assert store.get_next_head("articles") is None
    assert orphans(store, "articles") == []


def test_a_newer_rebuild_supersedes_an_older_one_which_stops_quietly() -> None:
    # Given a rebuild that has done one page and queued its continuation
    source, store, queue = MemorySource(), MemoryStore(), MemoryQueue()
    ports = _ports(source, store, queue)
    _corrupted(source, store, ports)
    assert full_sync("articles", SyncProgress(sync_id="r1", rebuild=True), ports, _one_page())
    older = queue.bodies.pop()
    # When another rebuild runs whole, and the older one's continuation arrives after it
    assert (
        full_sync("articles", SyncProgress(sync_id="r2", rebuild=True), ports, lambda: 10**9)
        is None
    )
    assert resync(Change.from_message(older), ports, lambda: 10**9) == {}
    # Then the older stopped without failing or touching the list, which is whole
    assert queue.bodies == []
    assert get_list(store, "articles") == source.rows(ORDER)
    assert store.get_next_head("articles") is None


def test_a_rebuild_tombstones_a_row_only_the_list_it_replaces_held() -> None:
    # Given a served list holding row 3, which Supabase deleted without a webhook
    source, store, queue = MemorySource(), MemoryStore(), MemoryQueue()
    ports = _ports(source, store, queue)
    for key in range(1, 21):
        source.put(_row(key))
    assert full_sync("articles", SyncProgress(sync_id="fill"), ports, lambda: 10**9) is None
    source.delete(3)
    # When the table is rebuilt (the new version never lists row 3: Supabase has no row 3)
    assert (
        full_sync("articles", SyncProgress(sync_id="r", rebuild=True), ports, lambda: 10**9) is None
    )
    # Then row 3 is gone as an item too, not just from the list
    assert get_list(store, "articles") == source.rows(ORDER)
    assert get_item(store, "articles", 3) is None


def test_a_rebuild_whose_message_was_lost_is_started_again_though_changes_keep_coming() -> None:
    # Given a list served with the default policy, then a deployment that orders it by title;
    # the first change after it begins a rebuild, but its consumer dies before queueing it
    source, store, queue = MemorySource(), MemoryStore(), MemoryQueue()
    for key in range(1, 6):
        source.put(_row(key))
    full_sync("articles", SyncProgress(sync_id="fill"), _ports(source, store, queue), lambda: 10**9)
    now = [10**15]
    settings = _ports(source, store, queue, LIST_ORDER="title").settings
    ports = ConsumerPorts(settings, source, store, queue, clock_ns=lambda: now[0])
    queue.bodies.clear()
    apply_changes("articles", [_change(1)], ports)
    assert store.get_next_head("articles") is not None
    queue.bodies.clear()  # the rebuild's message, lost
    # When changes keep coming, each one published to the dead rebuild's version too, and
    # then longer than the orphan age passes with changes still coming
    for key in (2, 3):
        now[0] += 10**9
        apply_changes("articles", [_change(key)], ports)
    assert queue.bodies == []  # a rebuild begun a moment ago is taken to be running
    now[0] += (settings.orphan_age_s + 1) * 10**9
    for key in (4, 5):
        now[0] += 10**9
        apply_changes("articles", [_change(key)], ports)
    # Then a new rebuild is queued (once): a change's patch of the rebuild's version is not
    # the rebuild's progress, and the dead one is told by its own silence
    rebuilds = [Change.from_message(body) for body in queue.bodies]
    assert [(change.type, bool(change.sync and change.sync.rebuild)) for change in rebuilds] == [
        ("RESYNC", True)
    ]
    assert rebuilds[0].sync is not None
    next_head = store.get_next_head("articles")
    assert next_head is not None and next_head.rebuild == rebuilds[0].sync.sync_id
