"""Compare the cache with Supabase, row by row, and report drift. Changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from waituntil.core.contracts import Row, RowKey
from waituntil.read.cache_client import get_item, get_list

if TYPE_CHECKING:
    from waituntil.adapters.cache_store import CacheStore

PAGE_SIZE = 1000  # Supabase's default cap; keyset pages never rely on it
EXAMPLES = 5

# (table, last key or None, page size) -> the next page of rows ordered by the primary key
PageReader = Callable[[str, RowKey | None, int], list[Row]]


@dataclass
class TableDrift:
    table: str
    rows_in_supabase: int = 0
    rows_in_list: int | None = None  # None: the table has no cached list at all
    # category -> keys (all of them; the report shows a few)
    drift: dict[str, list[RowKey]] = field(default_factory=dict)

    def add(self, category: str, key: RowKey) -> None:
        self.drift.setdefault(category, []).append(key)

    @property
    def drifted(self) -> bool:
        return self.rows_in_list is None or any(self.drift.values())

    def report(self) -> str:
        listed = "not cached" if self.rows_in_list is None else f"{self.rows_in_list} in the list"
        lines = [f"{self.table}: {self.rows_in_supabase} rows in Supabase, {listed}"]
        for category, keys in sorted(self.drift.items()):
            examples = ", ".join(str(key) for key in keys[:EXAMPLES])
            more = f" (and {len(keys) - EXAMPLES} more)" if len(keys) > EXAMPLES else ""
            lines.append(f"  {category}: {len(keys)}  e.g. {examples}{more}")
        if not self.drifted:
            lines.append("  in step: every row and the list match")
        return "\n".join(lines)


def verify_table(
    table: str, primary_key: str, read_page: PageReader, store: CacheStore
) -> TableDrift:
    """Every Supabase row against its cached item and the cached list, and the reverse."""
    result = TableDrift(table)
    truth: dict[RowKey, Row] = {}
    for row in _all_rows(table, primary_key, read_page):
        truth[row[primary_key]] = row
    result.rows_in_supabase = len(truth)

    for key, row in truth.items():
        cached = get_item(store, table, key)
        if cached is None:
            result.add("row item missing", key)
        elif cached != row:
            result.add("row item differs", key)

    listed = get_list(store, table)
    if listed is None:
        return result
    result.rows_in_list = len(listed)
    listed_by_key: dict[Any, Row] = {row.get(primary_key): row for row in listed}
    for key, row in truth.items():
        if key not in listed_by_key:
            result.add("missing from the list", key)
        elif listed_by_key[key] != row:
            result.add("differs in the list", key)
    for key in listed_by_key:
        if key not in truth:
            result.add("in the list, deleted in Supabase", key)
            if get_item(store, table, key) is not None:
                result.add("row item of a deleted row", key)
    return result


def _all_rows(table: str, primary_key: str, read_page: PageReader) -> Iterator[Row]:
    last: RowKey | None = None
    while True:
        # Only an empty page ends the table: a project whose max-rows is below PAGE_SIZE
        # answers short pages before the end.
        page = read_page(table, last, PAGE_SIZE)
        if not page:
            return
        yield from page
        last = page[-1][primary_key]
