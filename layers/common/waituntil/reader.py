"""Read the cache as other services see it: one row, or the whole list of one version.

``get_item`` and ``get_list`` return the rows exactly as Supabase returned them (parsed JSON),
bodies kept out of line (S3) included. The read API uses the same layout.
"""

from __future__ import annotations

import json

from waituntil.cache_model import ListHead, ServingReads
from waituntil.contracts import Row, RowKey
from waituntil.errors import DependencyUnavailable, ListFilling

# A list version retired between reading its head and its chunks is re-read from the head;
# two flips within one read are already unlikely.
LIST_READ_ATTEMPTS = 3


def get_item(store: ServingReads, table: str, key: RowKey) -> Row | None:
    found = store.get_row_body(table, str(key))
    if found is None:
        return None
    row: Row = json.loads(found[1])
    return row


def get_list(store: ServingReads, table: str) -> list[Row] | None:
    """All rows of the current list version, never a mix of two versions. None: not cached.

    Raises ``ListFilling`` while the table's first fill has not finished (I6).
    """
    for _ in range(LIST_READ_ATTEMPTS):
        head = store.get_head(table)
        if head is None:
            return None
        if not head.complete:
            raise ListFilling(f"the list of {table} is still filling")
        rows = read_version(store, head)
        if rows is not None:
            return rows
    raise DependencyUnavailable(f"the list of {table} kept changing while being read")


def read_version(store: ServingReads, head: ListHead) -> list[Row] | None:
    """Every row of one version, in list order; None if its nodes have expired."""
    rows: list[Row] = []
    for ref in head.pages:
        page = store.get_index_page(ref.key)
        if page is None:
            return None
        for chunk_ref in page.chunks:
            chunk = store.get_served_chunk(chunk_ref.key)
            if chunk is None:
                return None
            rows.extend(json.loads(chunk.body))
    return rows
