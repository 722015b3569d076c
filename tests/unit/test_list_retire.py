"""What a killed or failed publish leaves behind is found and given its grace period; nothing
a head reaches ever is. On the in-memory fakes: no moto, no HTTP."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from tests.fakes import Crash, MemoryQueue, MemorySource, MemoryStore
from waituntil.cache.layout import version_item_key
from waituntil.core.contracts import Change, SyncProgress
from waituntil.core.list_order import ListOrder
from waituntil.core.settings import ConsumerSettings
from waituntil.read.cache_client import get_list
from waituntil.sync.full_sync import full_sync
from waituntil.sync.ports import ConsumerPorts
from waituntil.sync.row_changes import apply_changes

ORPHAN_AGE_NS = 1200 * 10**9


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


class KilledAt:
    """The store, except that the consumer dies at the first call of ``method`` (after it
    applied, when ``after`` is set): the kill Lambda's timeout or an OOM deals."""

    def __init__(self, store: MemoryStore, method: str, *, after: bool = False) -> None:
        self._store, self._method, self._after = store, method, after
        self.killed = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name != self._method or self.killed:
            return attribute

        def killed(*args: Any, **kwargs: Any) -> Any:
            self.killed = True
            if self._after:
                attribute(*args, **kwargs)
            raise Crash(f"killed at {name}")

        return killed


def _ports(source: MemorySource, store: Any, clock: Clock) -> ConsumerPorts:
    settings = ConsumerSettings.model_validate(
        {
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
    return ConsumerPorts(settings, source, store, MemoryQueue(), clock_ns=clock)


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


def _orphans(store: MemoryStore) -> list[str]:
    """Stored nodes and versions no head reaches and that never expire."""
    live: set[str] = set()
    for head in [store.heads.get("articles"), getattr(store, "next_heads", {}).get("articles")]:
        if head is not None:
            live.add(version_item_key("articles", head.version))
            live.update(store.node_keys(head))
    stored = list(store.nodes) + [version_item_key(t, v) for t, v in store.versions]
    return sorted(key for key in stored if key not in live and key not in store.retired)


def _filled(source: MemorySource, store: MemoryStore, clock: Clock) -> ConsumerPorts:
    for key in range(1, 31):
        source.put(_row(key))
    ports = _ports(source, store, clock)
    assert full_sync("articles", SyncProgress(sync_id="fill"), ports, lambda: 10**9) is None
    assert _orphans(store) == []
    return ports


def test_nodes_of_a_publish_killed_before_its_switch_are_swept_by_the_next_resync() -> None:
    # Given a filled table, and a batch of changes to every chunk (more nodes than a head
    # switch carries: they are written before it) whose consumer is killed after writing its
    # new list nodes, before switching the head to them
    source, store, clock = MemorySource(), MemoryStore(), Clock()
    _filled(source, store, clock)
    changed = range(1, 31, 3)
    for key in changed:
        source.put(_row(key, "changed"))
    killed = KilledAt(store, "flip_head")
    with suppress(Crash):
        apply_changes("articles", [_change(key) for key in changed], _ports(source, killed, clock))
    assert killed.killed and _orphans(store) != []
    # When, past the longest invocation, the scheduled RESYNC runs
    clock.now += ORPHAN_AGE_NS
    ports = _ports(source, store, clock)
    assert full_sync("articles", SyncProgress(sync_id="hourly"), ports, lambda: 10**9) is None
    # Then every stored node is reached by the head or expiring, and the list is right
    assert _orphans(store) == []
    assert get_list(store, "articles") == source.rows(ListOrder("id"))


def test_a_small_publish_killed_before_its_switch_leaves_no_node_behind() -> None:
    # Given a filled table
    source, store, clock = MemorySource(), MemoryStore(), Clock()
    _filled(source, store, clock)
    before = dict(store.nodes)
    # When a change's consumer is killed at its head switch, which carries its nodes
    source.put(_row(7, "changed"))
    killed = KilledAt(store, "flip_head")
    with suppress(Crash):
        apply_changes("articles", [_change(7)], _ports(source, killed, clock))
    # Then no node was written, and none was registered for the sweep
    assert killed.killed
    assert store.nodes == before
    assert store.get_attempts("articles") == []


def test_a_version_switched_just_before_a_kill_is_retired_all_the_same() -> None:
    # Given a filled table, and a change whose consumer is killed right after switching the
    # head, before retiring the version it replaced
    source, store, clock = MemorySource(), MemoryStore(), Clock()
    _filled(source, store, clock)
    old = store.get_head("articles")
    assert old is not None
    source.put(_row(7, "changed"))
    killed = KilledAt(store, "flip_head", after=True)
    with suppress(Crash):
        apply_changes("articles", [_change(7)], _ports(source, killed, clock))
    assert killed.killed and store.get_head("articles") != old
    # When SQS delivers the change again (the list already holds it)
    apply_changes("articles", [_change(7)], _ports(source, store, clock))
    # Then the old version is retired, and nothing is left orphaned
    assert version_item_key("articles", old.version) in store.retired
    assert _orphans(store) == []
