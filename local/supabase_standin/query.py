"""PostgREST query-string grammar and its evaluation over in-memory rows (pure functions).

Covers what supabase-py builds: ``select``, horizontal filters (``col=op.value``), the
``or``/``and`` logic trees, ``order``, ``limit``/``offset``, the ``Range`` header, ``Prefer``,
``on_conflict`` and ``columns``. Comparisons follow SQL: a comparison with NULL is unknown,
and ``not.`` of unknown stays unknown, so such rows never match.

Why all of it, when the consumer's own reads are ``in``/``gt``, ``order`` and ``limit``: a
table's policy (the ``TablePolicies`` parameter) passes its ``columns`` (select syntax: JSON
paths, casts, aliases) and ``filter`` (any filter, ``or=(...)`` too) through the consumer as
written, and a developer's own supabase-py code runs against ``make dev``; a filter the
stand-in got wrong would show as a cache bug. What it does not implement (embedding, full-text
search, array and range operators) it refuses with a 400 naming the gap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from local.supabase_standin.errors import (
    PostgrestError,
    invalid_input,
    parse_error,
    unknown_column,
)

Row = dict[str, Any]

# Operators evaluated here, and those PostgREST has that this stand-in refuses loudly.
SIMPLE_OPS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch"})
SUPPORTED_OPS = SIMPLE_OPS | {"in", "is", "isdistinct"}
UNSUPPORTED_OPS = frozenset(
    {"cs", "cd", "ov", "sl", "sr", "nxl", "nxr", "adj", "fts", "plfts", "phfts", "wfts"}
)
RESERVED_PARAMS = frozenset(
    {"select", "order", "limit", "offset", "on_conflict", "columns", "apikey"}
)
LOGIC_PARAMS = frozenset({"or", "and", "not.or", "not.and"})

_INT_RE = re.compile(r"[+-]?\d+")
_NUM_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_BOOL_WORDS = {
    "true": True,
    "t": True,
    "yes": True,
    "y": True,
    "on": True,
    "1": True,
    "false": False,
    "f": False,
    "no": False,
    "n": False,
    "off": False,
    "0": False,
}
_RANGE_RE = re.compile(r"(\d+)-(\d*)")
_LOGIC_RE = re.compile(r"(not\.)?(and|or)\((.*)\)", re.DOTALL)


# ---------------------------------------------------------------------------------------------
# Small lexing helpers


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside double quotes and parentheses (backslash escapes in quotes)."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    in_quotes = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif in_quotes and char == "\\":
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif not in_quotes and char == "(":
            depth += 1
        elif not in_quotes and char == ")":
            depth -= 1
        elif char == sep and not in_quotes and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def unquote(text: str) -> str:
    """``"a,b"`` -> ``a,b`` (with ``\\"`` and ``\\\\`` unescaped); anything else unchanged."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _read_quoted(text: str) -> tuple[str, str]:
    """Read a leading ``"..."``; return (unquoted value, remainder)."""
    i = 1
    out: list[str] = []
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if char == '"':
            return "".join(out), text[i + 1 :]
        out.append(char)
        i += 1
    raise parse_error("column", text, "unterminated quoted identifier")


def split_column_prefix(text: str) -> tuple[str, str, str]:
    """Split ``column.rest`` at the first dot outside double quotes (like str.partition)."""
    in_quotes = False
    escaped = False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif in_quotes and char == "\\":
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif char == "." and not in_quotes:
            return text[:i], ".", text[i + 1 :]
    return text, "", ""


# ---------------------------------------------------------------------------------------------
# Column references: name, "quoted name", name->key->>key


@dataclass(frozen=True)
class ColumnRef:
    """A column, optionally followed by a JSON path (``data->a->>b``)."""

    name: str
    path: tuple[tuple[str, bool], ...] = ()  # (key, as_text)

    def output_name(self) -> str:
        """The key PostgREST gives the value in a response: the last path key, else the name."""
        return self.path[-1][0] if self.path else self.name

    def resolve(self, row: Mapping[str, Any]) -> Any:
        """The value this reference designates in ``row`` (None when absent)."""
        value = row.get(self.name)
        for key, as_text in self.path:
            if isinstance(value, dict):
                value = value.get(key)
            elif isinstance(value, list) and _INT_RE.fullmatch(key):
                index = int(key)
                value = value[index] if -len(value) <= index < len(value) else None
            else:
                value = None
            if as_text:
                value = json_to_text(value)
        return value

    def __str__(self) -> str:
        arrows = "".join(f"{'->>' if as_text else '->'}{key}" for key, as_text in self.path)
        return f"{self.name}{arrows}"


def json_to_text(value: Any) -> str | None:
    """What PostgreSQL's ``->>`` gives: strings bare, other JSON as text, null as NULL."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def parse_column(text: str) -> ColumnRef:
    """Parse ``name``, ``"quoted name"`` or ``name->key->>key``."""
    text = text.strip()
    if not text:
        raise parse_error("column", text, "empty column name")
    if text.startswith('"'):
        name, rest = _read_quoted(text)
    else:
        match = re.search(r"->", text)
        name, rest = (text[: match.start()], text[match.start() :]) if match else (text, "")
    if not name:
        raise parse_error("column", text, "empty column name")
    path: list[tuple[str, bool]] = []
    tokens = re.split(r"(->>|->)", rest)
    if tokens[0] != "":
        raise parse_error("column", text, f"unexpected {tokens[0]!r} after the column name")
    for i in range(1, len(tokens), 2):
        arrow, key = tokens[i], tokens[i + 1]
        if not key:
            raise parse_error("column", text, "empty JSON key")
        if path and path[-1][1]:
            raise parse_error("column", text, "'->>' must be the last JSON operator")
        path.append((unquote(key), arrow == "->>"))
    return ColumnRef(name, tuple(path))


def check_columns(table: str, refs: Iterable[ColumnRef], known: Sequence[str]) -> None:
    """42703 for the first reference to a column the table does not have."""
    known_set = set(known)
    for ref in refs:
        if ref.name not in known_set:
            raise unknown_column(table, ref.name)


# ---------------------------------------------------------------------------------------------
# Filters and logic trees


@dataclass(frozen=True)
class Condition:
    """``column=[not.]op.value``; ``value`` is a tuple for ``in``."""

    column: ColumnRef
    op: str
    negate: bool
    value: str | tuple[str, ...]

    @cached_property
    def _in_sets(self) -> dict[str, frozenset[Any] | None]:
        # One set of read literals per stored type, built on first use: ``in`` with hundreds
        # of keys over a large table must cost one lookup per row, not one parse per literal.
        return {}

    def holds_in(self, stored: Any) -> bool | None:
        """``stored in (value)`` (three-valued): every literal is read as the stored type,
        so one unreadable literal is an error, as in PostgreSQL."""
        assert isinstance(self.value, tuple)
        if stored is None:
            return None
        kind = _literal_kind(stored)
        if kind not in self._in_sets:
            read = [coerce_literal(stored, item) for item in self.value]
            try:
                self._in_sets[kind] = frozenset(read)
            except TypeError:  # JSON arrays and objects are not hashable
                self._in_sets[kind] = None
        values = self._in_sets[kind]
        if values is None:
            return any(coerce_literal(stored, item) == stored for item in self.value)
        return stored in values


@dataclass(frozen=True)
class Logic:
    """``or=(...)`` / ``and=(...)`` and their ``not.`` forms, nestable."""

    op: Literal["and", "or"]
    negate: bool
    children: tuple[Condition | Logic, ...]


Node = Condition | Logic


def parse_in_list(text: str, original: str) -> tuple[str, ...]:
    """``(a,b,"c,d")`` -> ``("a", "b", "c,d")``."""
    if len(text) < 2 or text[0] != "(" or text[-1] != ")":
        raise parse_error("filter", original, 'the "in" operator expects a list like (a,b)')
    inner = text[1:-1]
    if inner.strip() == "":
        return ()
    return tuple(unquote(item.strip()) for item in split_top(inner))


def parse_operation(column: ColumnRef, expr: str, *, in_logic: bool = False) -> Condition:
    """Parse the right-hand side of a filter: ``[not.]op.value``."""
    original = expr
    negate = False
    if expr.startswith("not."):
        negate, expr = True, expr[4:]
    op, sep, value = expr.partition(".")
    if not sep:
        raise parse_error("filter", original, "expected an operator and a value: op.value")
    base_op = op.split("(", 1)[0]
    if base_op in UNSUPPORTED_OPS or "(" in op:
        raise PostgrestError(
            400,
            "PGRST100",
            f'"failed to parse filter ({original})" (line 1, column 1)',
            f"the operator {op!r} is not implemented by the supabase stand-in",
            "Supported: " + ", ".join(sorted(SUPPORTED_OPS)),
        )
    if op not in SUPPORTED_OPS:
        raise parse_error("filter", original, f"unknown operator {op!r}")
    if op == "in":
        return Condition(column, op, negate, parse_in_list(value, original))
    if op == "is":
        word = value.lower()
        if word not in {"null", "true", "false", "unknown"}:
            raise parse_error("filter", original, "is. expects null, true, false or unknown")
        return Condition(column, op, negate, word)
    if in_logic:
        value = unquote(value)
    return Condition(column, op, negate, value)


def parse_filter(key: str, value: str) -> Condition:
    """A horizontal filter from one query parameter."""
    return parse_operation(parse_column(key), value)


def parse_logic(key: str, value: str) -> Logic:
    """``or=(a.eq.1,and(b.gt.2,c.is.null))`` (key ``or``, ``and``, ``not.or``, ``not.and``)."""
    negate = key.startswith("not.")
    op = key[4:] if negate else key
    if len(value) < 2 or value[0] != "(" or value[-1] != ")":
        raise parse_error("logic tree", value, "expected a parenthesised list")
    return Logic("or" if op == "or" else "and", negate, _parse_logic_items(value[1:-1], value))


def _parse_logic_items(inner: str, original: str) -> tuple[Node, ...]:
    children: list[Node] = []
    for raw in split_top(inner):
        item = raw.strip()
        if not item:
            raise parse_error("logic tree", original, "empty condition")
        nested = _LOGIC_RE.fullmatch(item)
        if nested:
            children.append(
                Logic(
                    "or" if nested.group(2) == "or" else "and",
                    nested.group(1) is not None,
                    _parse_logic_items(nested.group(3), original),
                )
            )
            continue
        col_text, sep, expr = split_column_prefix(item)
        if not sep:
            raise parse_error("logic tree", original, f"expected column.op.value in {item!r}")
        column = parse_column(col_text)
        children.append(parse_operation(column, expr, in_logic=True))
    return tuple(children)


def node_columns(node: Node) -> list[ColumnRef]:
    """Every column a filter tree reads."""
    if isinstance(node, Condition):
        return [node.column]
    return [ref for child in node.children for ref in node_columns(child)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _literal_kind(stored: Any) -> str:
    """The type a literal is read as (see ``coerce_literal``)."""
    if isinstance(stored, bool):
        return "boolean"
    if _is_number(stored):
        return "number"
    return "text" if isinstance(stored, str) else "json"


def coerce_literal(stored: Any, raw: str) -> Any:
    """Read a filter literal as the type of the stored value (as PostgreSQL reads a literal
    as the column's type). Raises 22P02 when it cannot be read, like PostgreSQL."""
    if isinstance(stored, bool):
        word = raw.strip().lower()
        if word not in _BOOL_WORDS:
            raise invalid_input("boolean", raw)
        return _BOOL_WORDS[word]
    if _is_number(stored):
        text = raw.strip()
        if _INT_RE.fullmatch(text):
            return int(text)
        if _NUM_RE.fullmatch(text):
            return float(text)
        raise invalid_input("numeric" if isinstance(stored, float) else "bigint", raw)
    if isinstance(stored, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        raise invalid_input("json", raw) from None


def like_to_regex(pattern: str, *, case_insensitive: bool) -> re.Pattern[str]:
    """SQL LIKE (``%``, ``_``, backslash escape; PostgREST also takes ``*`` for ``%``)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char in "%*":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
        i += 1
    flags = re.DOTALL | (re.IGNORECASE if case_insensitive else 0)
    return re.compile("".join(out), flags)


def _type_label(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "numeric"
    if isinstance(value, str):
        return "text"
    return "jsonb"


def compare(stored: Any, op: str, raw: str | tuple[str, ...]) -> bool | None:
    """One comparison with SQL three-valued logic (None means unknown)."""
    if op == "is":
        if raw in ("null", "unknown"):
            return stored is None
        return stored is (raw == "true")
    if op == "isdistinct":
        assert isinstance(raw, str)
        if stored is None:
            return True
        return bool(coerce_literal(stored, raw) != stored)
    if stored is None:
        return None
    assert isinstance(raw, str), "in is Condition.holds_in"
    if op in ("like", "ilike", "match", "imatch"):
        if not isinstance(stored, str):
            sql_op = {"like": "~~", "ilike": "~~*", "match": "~", "imatch": "~*"}[op]
            raise PostgrestError(
                400,
                "42883",
                f"operator does not exist: {_type_label(stored)} {sql_op} unknown",
                None,
                "No operator matches the given name and argument types. "
                "You might need to add explicit type casts.",
            )
        if op in ("like", "ilike"):
            regex = like_to_regex(raw, case_insensitive=op == "ilike")
            return regex.fullmatch(stored) is not None
        try:
            posix = re.compile(raw, re.IGNORECASE if op == "imatch" else 0)
        except re.error as exc:
            raise PostgrestError(400, "2201B", f"invalid regular expression: {exc}") from None
        return posix.search(stored) is not None
    literal = coerce_literal(stored, raw)
    if op == "eq":
        return bool(stored == literal)
    if op == "neq":
        return bool(stored != literal)
    if isinstance(stored, (dict, list)):
        raise PostgrestError(
            400,
            "42883",
            f"operator does not exist: jsonb {op} unknown",
            None,
            "Only eq, neq, in, is and isdistinct apply to JSON columns in the stand-in.",
        )
    if op == "gt":
        return bool(stored > literal)
    if op == "gte":
        return bool(stored >= literal)
    if op == "lt":
        return bool(stored < literal)
    if op == "lte":
        return bool(stored <= literal)
    raise parse_error("filter", f"{op}.{raw}", f"unknown operator {op!r}")  # pragma: no cover


def evaluate(node: Node, row: Mapping[str, Any]) -> bool | None:
    """Evaluate a filter tree on one row (three-valued)."""
    result: bool | None
    if isinstance(node, Condition) and node.op == "in":
        result = node.holds_in(node.column.resolve(row))
    elif isinstance(node, Condition):
        result = compare(node.column.resolve(row), node.op, node.value)
    else:
        values = [evaluate(child, row) for child in node.children]
        if node.op == "and":
            result = False if False in values else (None if None in values else True)
        else:
            result = True if True in values else (None if None in values else False)
    if node.negate and result is not None:
        result = not result
    return result


def matches(filters: Sequence[Node], row: Mapping[str, Any]) -> bool:
    """Top-level filters are ANDed; a row is kept only when the result is TRUE."""
    return all(evaluate(node, row) is True for node in filters)


# ---------------------------------------------------------------------------------------------
# Ordering


@dataclass(frozen=True)
class OrderTerm:
    """One ``order`` item; PostgreSQL's default puts NULLs last ascending, first descending."""

    column: ColumnRef
    desc: bool = False
    nulls_first: bool = False


def parse_order(value: str) -> list[OrderTerm]:
    """``order=a.desc.nullslast,b`` -> terms."""
    terms: list[OrderTerm] = []
    for raw in split_top(value):
        item = raw.strip()
        if not item:
            raise parse_error("order", value, "empty order term")
        col_text, _, tail = split_column_prefix(item)
        modifiers = tail.split(".") if tail else []
        desc = False
        nulls: bool | None = None
        for modifier in modifiers:
            if modifier in ("asc", "desc"):
                desc = modifier == "desc"
            elif modifier in ("nullsfirst", "nullslast"):
                nulls = modifier == "nullsfirst"
            else:
                raise parse_error("order", value, f"unexpected {modifier!r}")
        terms.append(OrderTerm(parse_column(col_text), desc, desc if nulls is None else nulls))
    return terms


def sort_key_value(value: Any) -> tuple[int, Any]:
    """Rank types so a column holding mixed types sorts without raising."""
    if isinstance(value, bool):
        return (0, value)
    if _is_number(value):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, json.dumps(value, sort_keys=True, ensure_ascii=False))


_NULL_SENTINEL = (-1, 0)


def sort_rows(rows: Sequence[Row], terms: Sequence[OrderTerm]) -> list[Row]:
    """Stable multi-column sort honouring asc/desc and nullsfirst/nullslast per term."""
    result = list(rows)
    for term in reversed(terms):

        def key(row: Row, term: OrderTerm = term) -> tuple[int, tuple[int, Any]]:
            # The sort runs with reverse=desc, so "nulls first" means the smaller flag ascending
            # and the larger flag descending.
            null_flag = int(term.nulls_first == term.desc)
            value = term.column.resolve(row)
            if value is None:
                return (null_flag, _NULL_SENTINEL)
            return (1 - null_flag, sort_key_value(value))

        result.sort(key=key, reverse=term.desc)
    return result


# ---------------------------------------------------------------------------------------------
# Vertical filtering (select)


@dataclass(frozen=True)
class SelectItem:
    """``*`` (column None), ``col``, ``alias:col``, ``col::text``, ``data->>key``."""

    column: ColumnRef | None
    alias: str | None = None
    cast: str | None = None


def parse_select(value: str) -> list[SelectItem]:
    """Parse ``select``; embedded resources (``rel(...)``) are refused (PGRST200)."""
    items: list[SelectItem] = []
    for raw in split_top(value):
        item = raw.strip()
        if not item:
            if value.strip() == "":
                return []
            raise parse_error("select", value, "empty select item")
        if item == "*":
            items.append(SelectItem(None))
            continue
        alias: str | None = None
        body = item
        if not item.startswith('"'):
            head, sep, tail = item.partition(":")
            if sep and not tail.startswith(":"):
                alias, body = unquote(head.strip()), tail.strip()
        if "(" in body and not body.startswith('"'):
            relation = body.split("(", 1)[0].lstrip("!")
            raise PostgrestError(
                400,
                "PGRST200",
                f"Could not find a relationship for '{relation}' in the schema cache",
                "The supabase stand-in does not implement resource embedding.",
                None,
            )
        cast: str | None = None
        if "::" in body:
            body, cast = body.split("::", 1)
            cast = cast.strip().lower()
            if cast not in ("text", "json", "jsonb"):
                raise PostgrestError(
                    400,
                    "PGRST100",
                    f'"failed to parse select ({value})" (line 1, column 1)',
                    f"the cast ::{cast} is not implemented by the supabase stand-in",
                    "Supported casts: ::text, ::json, ::jsonb",
                )
        items.append(SelectItem(parse_column(body), alias, cast))
    return items


def select_columns(items: Sequence[SelectItem]) -> list[ColumnRef]:
    """The column references a select list reads."""
    return [item.column for item in items if item.column is not None]


def project(
    row: Mapping[str, Any], items: Sequence[SelectItem] | None, columns: Sequence[str]
) -> Row:
    """Shape one row for the response: every column in table order for ``*``."""
    if items is None:
        return {name: row.get(name) for name in columns}
    out: Row = {}
    for item in items:
        if item.column is None:
            for name in columns:
                out[name] = row.get(name)
            continue
        value = item.column.resolve(row)
        if item.cast == "text":
            value = json_to_text(value) if not isinstance(value, bool) else str(value).lower()
        out[item.alias or item.column.output_name()] = value
    return out


# ---------------------------------------------------------------------------------------------
# Whole query string


@dataclass
class ParsedQuery:
    """Everything PostgREST reads from the query string of a table request."""

    select: list[SelectItem] | None = None  # None: select=* or absent
    filters: list[Node] = field(default_factory=list)
    order: list[OrderTerm] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    on_conflict: list[str] | None = None
    columns: list[str] | None = None

    def referenced_columns(self) -> list[ColumnRef]:
        """Every column named by select, filters and order (to answer 42703)."""
        refs = select_columns(self.select or [])
        for node in self.filters:
            refs.extend(node_columns(node))
        refs.extend(term.column for term in self.order)
        return refs


def _non_negative_int(name: str, value: str) -> int:
    if not re.fullmatch(r"\d+", value.strip()):
        raise parse_error(name, value, f"{name} must be a non-negative integer")
    return int(value)


def parse_query(params: Sequence[tuple[str, str]]) -> ParsedQuery:
    """Parse the decoded query parameters of a ``/rest/v1/<table>`` request."""
    query = ParsedQuery()
    for key, value in params:
        if key == "select":
            items = parse_select(value)
            query.select = None if [i.column for i in items] == [None] else items
        elif key == "order":
            query.order = parse_order(value)
        elif key == "limit":
            query.limit = _non_negative_int("limit", value)
        elif key == "offset":
            query.offset = _non_negative_int("offset", value)
        elif key == "on_conflict":
            query.on_conflict = [unquote(c.strip()) for c in split_top(value) if c.strip()]
        elif key == "columns":
            query.columns = [unquote(c.strip()) for c in split_top(value) if c.strip()]
        elif key == "apikey":
            continue
        elif key in LOGIC_PARAMS:
            query.filters.append(parse_logic(key, value))
        else:
            query.filters.append(parse_filter(key, value))
    return query


# ---------------------------------------------------------------------------------------------
# Ranges and Content-Range (PostgREST's RangeQuery module)


@dataclass(frozen=True)
class RowRange:
    """Rows ``lower``..``upper`` inclusive (``upper`` None: unbounded)."""

    lower: int = 0
    upper: int | None = None


def parse_range_header(value: str | None) -> RowRange:
    """``Range: 0-999`` / ``10-``; anything not of that shape is ignored (as PostgREST does)."""
    if not value:
        return RowRange()
    match = _RANGE_RE.fullmatch(value.strip())
    if not match:
        return RowRange()
    lower = int(match.group(1))
    upper = int(match.group(2)) if match.group(2) else None
    if upper is not None and lower > upper:
        raise PostgrestError(
            416,
            "PGRST103",
            "Requested range not satisfiable",
            "The lower boundary must be lower than or equal to the upper boundary in the "
            "Range header.",
        )
    return RowRange(lower, upper)


def effective_range(
    header: RowRange, offset: int, limit: int | None, max_rows: int | None
) -> RowRange:
    """Intersect the Range header with offset/limit, then apply db-max-rows."""
    if limit == 0:
        return RowRange(0, -1)
    lower = max(header.lower, offset)
    uppers = [
        u for u in (header.upper, None if limit is None else offset + limit - 1) if u is not None
    ]
    upper = min(uppers) if uppers else None
    if max_rows is not None:
        cap = lower + max_rows - 1
        upper = cap if upper is None else min(upper, cap)
    return RowRange(lower, upper)


def content_range(lower: int, returned: int, total: int | None) -> str:
    """PostgREST's ``Content-Range`` value: ``0-999/2500``, ``0-999/*``, ``*/0``, ``*/*``."""
    upper = lower + returned - 1
    range_text = f"{lower}-{upper}" if total != 0 and lower <= upper else "*"
    return f"{range_text}/{'*' if total is None else total}"


def range_status(lower: int, returned: int, total: int | None) -> int:
    """200, 206 (partial) or 416 (offset past the end), only when a count was asked."""
    if total is None:
        return 200
    if lower > total:
        return 416
    if returned < total:
        return 206
    return 200


# ---------------------------------------------------------------------------------------------
# Prefer header


@dataclass
class Preferences:
    """The ``Prefer`` header items PostgREST acts on."""

    return_: str = "minimal"
    count: str | None = None
    resolution: str | None = None
    missing_default: bool = False
    handling_strict: bool = False
    max_affected: int | None = None
    applied: list[str] = field(default_factory=list)


def parse_prefer(values: Iterable[str]) -> Preferences:
    """Parse every ``Prefer`` header (comma-separated ``key=value`` items)."""
    prefs = Preferences()
    for header in values:
        for raw in header.split(","):
            item = raw.strip()
            key, _, val = item.partition("=")
            key, val = key.strip().lower(), val.strip().lower()
            if key == "return" and val in ("minimal", "representation", "headers-only"):
                prefs.return_ = val
                prefs.applied.append(f"return={val}")
            elif key == "count" and val in ("exact", "planned", "estimated"):
                prefs.count = val
                prefs.applied.append(f"count={val}")
            elif key == "resolution" and val in ("merge-duplicates", "ignore-duplicates"):
                prefs.resolution = val
                prefs.applied.append(f"resolution={val}")
            elif key == "missing" and val == "default":
                prefs.missing_default = True
                prefs.applied.append("missing=default")
            elif key == "handling":
                prefs.handling_strict = val == "strict"
            elif key == "max-affected" and val.isdigit():
                prefs.max_affected = int(val)
    return prefs
