"""A stretch of a list, and the scan past a change mark, as PostgREST filters.

A list's order is (column, key) with Postgres's null placement: nulls last ascending, first
descending (``core.list_order`` mirrors it), the key ascending. "Position >= (c1, k1)" is then
a small logic tree, for example ascending with a value: ``c > c1 OR (c = c1 AND k >= k1) OR c IS
NULL``. Both bounds of a range go in one ``and=(...)`` parameter, which PostgREST ANDs with the
table policy's own filters. A list ordered by its key needs no tree: ``k=gte.a&k=lt.b``.

Values inside a tree are double-quoted (PostgREST's rule for reserved characters: ``,.:()``),
except numbers and booleans; Postgres casts the quoted text to the column's type. Pure: the
adapter (``supabase_source``) adds these pairs to its query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from waituntil.cache.model import ChangeMark, PositionRange
from waituntil.core.list_order import ListOrder, Position

Param = tuple[str, str]  # (query parameter, value), e.g. ("id", "gte.5") or ("and", "(...)")


@dataclass(frozen=True)
class _Cond:
    column: str
    operator: str  # gt, gte, lt, eq, is, not.is
    value: Any

    def tree(self) -> str:
        return f"{self.column}.{self.operator}.{tree_value(self.value)}"


@dataclass(frozen=True)
class _Logic:
    kind: str  # "and" | "or"
    children: tuple[_Cond | _Logic, ...]

    def tree(self) -> str:
        return f"{self.kind}({','.join(child.tree() for child in self.children)})"


_Expr = _Cond | _Logic


def tree_value(value: Any) -> str:
    """A value as it goes inside ``or=(...)``/``and=(...)``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plain_value(value: Any) -> str:
    """A value after ``column=operator.``: PostgREST takes the rest of the parameter as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _at_or_after(order: ListOrder, position: Position) -> _Expr:
    key = order.primary_key
    if order.column is None:
        return _Cond(key, "gte", position[0])
    column, (value, key_value) = order.column, position
    if not order.descending:
        if value is None:  # nulls last: only nulls at or past the key
            return _Logic("and", (_Cond(column, "is", None), _Cond(key, "gte", key_value)))
        return _Logic(
            "or",
            (
                _Cond(column, "gt", value),
                _Logic("and", (_Cond(column, "eq", value), _Cond(key, "gte", key_value))),
                _Cond(column, "is", None),
            ),
        )
    if value is None:  # nulls first: the later nulls, then every value
        return _Logic(
            "or",
            (
                _Cond(column, "not.is", None),
                _Logic("and", (_Cond(column, "is", None), _Cond(key, "gte", key_value))),
            ),
        )
    return _Logic(
        "or",
        (
            _Cond(column, "lt", value),
            _Logic("and", (_Cond(column, "eq", value), _Cond(key, "gte", key_value))),
        ),
    )


def _before(order: ListOrder, position: Position) -> _Expr:
    key = order.primary_key
    if order.column is None:
        return _Cond(key, "lt", position[0])
    column, (value, key_value) = order.column, position
    if not order.descending:
        if value is None:
            return _Logic(
                "or",
                (
                    _Cond(column, "not.is", None),
                    _Logic("and", (_Cond(column, "is", None), _Cond(key, "lt", key_value))),
                ),
            )
        return _Logic(
            "or",
            (
                _Cond(column, "lt", value),
                _Logic("and", (_Cond(column, "eq", value), _Cond(key, "lt", key_value))),
            ),
        )
    if value is None:
        return _Logic("and", (_Cond(column, "is", None), _Cond(key, "lt", key_value)))
    return _Logic(
        "or",
        (
            _Cond(column, "gt", value),
            _Logic("and", (_Cond(column, "eq", value), _Cond(key, "lt", key_value))),
            _Cond(column, "is", None),
        ),
    )


def _params(conjuncts: list[_Expr]) -> list[Param]:
    plain = [expr for expr in conjuncts if isinstance(expr, _Cond)]
    trees = [expr for expr in conjuncts if isinstance(expr, _Logic)]
    params = [(cond.column, f"{cond.operator}.{plain_value(cond.value)}") for cond in plain]
    if len(trees) == 1:
        params.append((trees[0].kind, "(" + ",".join(c.tree() for c in trees[0].children) + ")"))
    elif trees:
        params.append(("and", "(" + ",".join(tree.tree() for tree in trees) + ")"))
    return params


def range_params(order: ListOrder, bounds: PositionRange) -> list[Param]:
    """The filters that select exactly ``bounds`` of a list in ``order``."""
    conjuncts: list[_Expr] = []
    if bounds.lower is not None:
        conjuncts.append(_at_or_after(order, tuple(bounds.lower)))
    if bounds.upper is not None:
        conjuncts.append(_before(order, tuple(bounds.upper)))
    return _params(conjuncts)


def order_param(order: ListOrder) -> str:
    """``order=`` for a list: its column with Postgres's default null placement, then the key."""
    if order.column is None:
        return f"{order.primary_key}.asc"
    direction = "desc.nullsfirst" if order.descending else "asc.nullslast"
    return f"{order.column}.{direction},{order.primary_key}.asc"


def scan_params(
    key: str, column: str, since: str, before: str, after: ChangeMark | None
) -> list[Param]:
    """Rows with ``since <= column < before``, past ``after`` in (column, key) order."""
    params: list[Param] = [(column, f"gte.{since}"), (column, f"lt.{before}")]
    if after is not None:
        past = _Logic(
            "or",
            (
                _Cond(column, "gt", after.changed),
                _Logic("and", (_Cond(column, "eq", after.changed), _Cond(key, "gt", after.key))),
            ),
        )
        params += _params([past])
    return params
