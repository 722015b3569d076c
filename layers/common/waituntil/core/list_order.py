"""The order of a table's list: a column (or none) then the primary key; a row's place in it.

Part of a table's policy (``table_policy``), so it sits in ``core``: the cache, the consumer and
the read side all compare positions with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import total_ordering
from typing import Any

from waituntil.core.contracts import Row

# A row's place in the list: [order column value, primary key] (or [primary key] when the list
# is ordered by its key). Stored as JSON; compared through ``sort_key``.
Position = tuple[Any, ...]


@dataclass(frozen=True)
class ListOrder:
    """The list's order: a column (ascending or descending) then the primary key, ascending.

    Nulls sort last ascending and first descending, as Postgres does.
    """

    primary_key: str
    column: str | None = None
    descending: bool = False

    @classmethod
    def parse(cls, primary_key: str, order: str | None) -> ListOrder:
        """``column`` or ``column.desc`` (``.asc`` allowed); None or the key itself: by key."""
        if not order:
            return cls(primary_key)
        column, _, direction = order.partition(".")
        if direction.lower() not in ("", "asc", "desc"):
            raise ValueError(f"list order must be 'column' or 'column.desc', not {order!r}")
        if column == primary_key and direction.lower() != "desc":
            return cls(primary_key)
        return cls(primary_key, column, direction.lower() == "desc")

    @property
    def by_key(self) -> bool:
        return self.column is None

    def position(self, row: Row) -> Position:
        key = row[self.primary_key]
        if self.column is None:
            return (key,)
        return (row.get(self.column), key)

    def sort_key(self, position: Sequence[Any]) -> tuple[Any, ...]:
        if self.column is None:
            return (_rank(position[0]),)
        rank = _rank(position[0])
        return (_Descending(rank) if self.descending else rank, _rank(position[1]))


def _rank(value: Any) -> tuple[Any, ...]:
    # A total order over JSON values: numbers, then text, then anything else (by its JSON),
    # nulls last. Mixed types in one column sort by type instead of failing.
    if value is None:
        return (3,)
    if isinstance(value, bool):
        return (2, json.dumps(value))
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (2, json.dumps(value, sort_keys=True, separators=(",", ":")))


@total_ordering
@dataclass(frozen=True)
class _Descending:
    rank: tuple[Any, ...]

    def __lt__(self, other: object) -> bool:
        assert isinstance(other, _Descending)
        return bool(other.rank < self.rank)
