"""Read the cache as other services see it: one row, or the whole list of one version.

``get_item`` and ``get_list`` return the rows exactly as Supabase returned them (parsed JSON).
The read API (and anyone with read access to the table) uses the same layout.
"""

from __future__ import annotations

import json

from waituntil.adapters.cache_store import CacheStore
from waituntil.contracts import Row, RowKey
from waituntil.errors import DependencyUnavailable

# A list version retired between reading its manifest and its chunks is re-read from the
# manifest; two flips within one read are already unlikely.
LIST_READ_ATTEMPTS = 3


def get_item(store: CacheStore, table: str, key: RowKey) -> Row | None:
    cached = store.get_row(table, str(key))
    if cached is None:
        return None
    row: Row = json.loads(cached.body)
    return row


def get_list(store: CacheStore, table: str) -> list[Row] | None:
    """All rows of the current list version, never a mix of two versions. None: not cached."""
    for _ in range(LIST_READ_ATTEMPTS):
        manifest = store.get_manifest(table)
        if manifest is None:
            return None
        rows = store.read_list(manifest)
        if rows is not None:
            return rows
    raise DependencyUnavailable(f"the list of {table} kept changing while being read")
