"""Read the cache as other services see it: one row, or the whole list of one version.

``get_item`` and ``get_list`` return the rows exactly as Supabase returned them (parsed JSON),
bodies kept out of line (S3) included. The read API uses the same layout, and the same
``read_current_version`` to read a list's current version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from waituntil.cache.model import ListHead, ServingReads
from waituntil.core.contracts import Row, RowKey
from waituntil.core.errors import DependencyUnavailable, ListFilling, ListRebuilding

# A list version retired between reading its head and its nodes is re-read from the head: that
# race needs the grace period to be shorter than the read, so two flips within one read are
# already unlikely.
LIST_READ_ATTEMPTS = 3

Read = TypeVar("Read")


def get_item(
    store: ServingReads, table: str, key: RowKey, *, policy: str | None = None
) -> Row | None:
    """One cached row; None if not cached. ``policy``: the fingerprint of the table policy in
    force (``TablePolicy.fingerprint``); a row cached under another is not served."""
    found = store.get_row_body(table, str(key))
    if found is None or (policy is not None and found[0].policy != policy):
        return None
    row: Row = json.loads(found[1])
    return row


def get_list(store: ServingReads, table: str, *, policy: str | None = None) -> list[Row] | None:
    """All rows of the current list version, never a mix of two versions. None: not cached.

    Raises ``ListFilling`` while the table's first fill has not finished (I6), and
    ``ListRebuilding`` if the list was built with another policy than ``policy``.
    """
    return read_current_version(store, table, lambda head: read_version(store, head), policy=policy)


def read_current_version(
    store: ServingReads,
    table: str,
    read: Callable[[ListHead], Read | None],
    *,
    policy: str | None = None,
) -> Read | None:
    """``read`` of the table's current list version; None when the table has no list yet.

    ``read`` answers None when the version's nodes have expired (it was retired meanwhile);
    the head is then read again, up to ``LIST_READ_ATTEMPTS`` times in all, after which the
    list is ``DependencyUnavailable``. A list whose first fill has not finished raises
    ``ListFilling`` (I6).
    """
    for _ in range(LIST_READ_ATTEMPTS):
        head = store.get_head(table)
        if head is None:
            return None
        if policy is not None and head.policy != policy:
            raise ListRebuilding(
                f"the list of {table} was built with another table policy than the one in "
                "force; it is being rebuilt"
            )
        if not head.complete:
            raise ListFilling(
                f"the list of {table} is still filling ({head.row_count} rows so far); "
                "rows are served one by one meanwhile"
            )
        result = read(head)
        if result is not None:
            return result
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
