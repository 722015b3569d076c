"""What the tests check of a stored list beyond what a reader sees: nothing is left orphaned.

"No orphans": once no publish is in flight and the sweep has run, every stored list node
(chunk, index page, frozen version) is reached by a head (the served one, or the one a rebuild
builds), expiring, or carried by a head to retire (a change's publish leaves what it replaced
on its head, for whoever next reads that head: the next change, any publish, the sweep). On
the in-memory fake the store knows; on the real store under moto the table is scanned.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.fakes import MemoryStore, carried_keys
from waituntil.cache.layout import chunk_node_key, index_node_key, version_item_key
from waituntil.cache.list_patch import chunk_ref
from waituntil.cache.model import IndexPage, ListChunk
from waituntil.sync.list_retire import reachable_keys


def orphans(store: Any, table: str) -> list[str]:
    """Stored nodes and versions of ``table`` that no head reaches, that never expire, and
    that no head carries to retire."""
    if isinstance(store, MemoryStore):
        return store.orphans(table)
    heads = [head for head in (store.get_next_head(table), store.get_head(table)) if head]
    live = reachable_keys(store, heads) | {version_item_key(table, head.version) for head in heads}
    carried = carried_keys(table, heads)
    assert not carried & live, f"a head carries to retire what a head reaches: {carried & live}"
    live |= carried
    found = []
    scan = store._client.get_paginator("scan")
    for page in scan.paginate(TableName=store._table, ProjectionExpression="pk, expires_at"):
        for item in page["Items"]:
            key = item["pk"]["S"]
            node = key.startswith((f"/{table}#c/", f"/{table}#i/", f"/{table}@"))
            if node and key not in live and "expires_at" not in item:
                found.append(key)
    return sorted(found)


def expiring(store: Any, key: str) -> bool:
    """Whether a stored node has been given its grace period (an expiry)."""
    if isinstance(store, MemoryStore):
        return key in store.retired
    item = store._client.get_item(TableName=store._table, Key={"pk": {"S": key}}).get("Item")
    return item is not None and "expires_at" in item


def plant_duplicate(store: Any, table: str) -> None:
    """Switch the list to a version whose first chunk holds its first row twice: a list no
    patch repairs (a patch finds one of the two), as an order change once left them."""
    head = store.get_head(table)
    assert head is not None
    page = store.get_index_page(head.pages[0].key)
    first = store.get_chunk(page.chunks[0].key)
    doubled = ListChunk(
        key=chunk_node_key(table, "planted"), entries=(first.entries[0], *first.entries)
    )
    planted = IndexPage(
        key=index_node_key(table, "planted"), chunks=(chunk_ref(doubled), *page.chunks[1:])
    )
    store.write_nodes(table, [doubled], [planted])
    ref = replace(head.pages[0], key=planted.key, row_count=head.pages[0].row_count + 1)
    corrupted = replace(
        head,
        version=f"{head.modified_at_ns + 1}-planted",
        pages=(ref, *head.pages[1:]),
        row_count=head.row_count + 1,
        retiring=None,
    )
    assert store.flip_head(corrupted, head)
    store.retire(table, [first.key], [page.key], head.version)
