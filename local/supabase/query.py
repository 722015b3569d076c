"""PostgREST's query string as SQL fragments (pure: no connection).

Every value becomes a bound parameter, sent untyped as PostgREST sends it, so PostgreSQL reads
it as the column's type (``id=eq.7`` compares a bigint, ``title=eq.7`` a text); identifiers are
quoted by psycopg; type names in ``::casts`` are resolved by the caller against the catalog.
Covered: ``select`` (columns, ``alias:``, ``::cast``, JSON paths), every horizontal filter
operator with ``not.`` and ``(any)``/``(all)``, ``or``/``and`` trees, ``order``, ``limit``,
``offset``, ``Range``, ``Prefer``. Not covered (refused with a 400): resource embedding,
aggregates, spread.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

RESERVED = frozenset({"select", "order", "limit", "offset", "on_conflict", "columns", "apikey"})
QUANT_OPS = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "LIKE"}
QUANT_OPS |= {"ilike": "ILIKE", "match": "~", "imatch": "~*"}
SIMPLE_OPS = {"neq": "<>", "cs": "@>", "cd": "<@", "ov": "&&", "sl": "<<", "sr": ">>"}
SIMPLE_OPS |= {"nxr": "&<", "nxl": "&>", "adj": "-|-"}
FTS_OPS = {"fts": "to_tsquery", "plfts": "plainto_tsquery", "phfts": "phraseto_tsquery"}
FTS_OPS |= {"wfts": "websearch_to_tsquery"}
IS_VALUES = {"null": "NULL", "not_null": "NOT NULL", "true": "TRUE", "false": "FALSE"}
IS_VALUES |= {"unknown": "UNKNOWN"}
_OPERATION = re.compile(r"(not\.)?([a-z]+)(?:\(([^)]*)\))?\.(.*)", re.DOTALL)
_LOGIC = re.compile(r"(not\.)?(and|or)\((.*)\)", re.DOTALL)
_ARROWS = re.compile(r"(->>|->)")


class PostgrestError(Exception):
    """An answer in PostgREST's shape: status and ``{code, message, details, hint}``."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        details: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details, self.hint = (
            status,
            code,
            message,
            details,
            hint,
        )

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "details": self.details,
            "hint": self.hint,
            "message": self.message,
        }


def parse_error(what: str, text: str, details: str) -> PostgrestError:
    """PGRST100, worded as PostgREST's parser words it."""
    return PostgrestError(
        400, "PGRST100", f'"failed to parse {what} ({text})" (line 1, column 1)', details
    )


@dataclass
class Builder:
    """Collects the bound values of one statement; SQL holds only their placeholders."""

    resolve_type: Callable[[str], str]  # a ``::cast`` as the catalog names it
    params: dict[str, Any] = field(default_factory=dict)

    def value(self, value: Any) -> sql.Composable:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return sql.Placeholder(name)


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside double quotes and parentheses."""
    parts, current, depth, quoted, escaped = [], [], 0, False, False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
        elif char == sep and not quoted and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def unquote(text: str) -> str:
    """``"a,b"`` -> ``a,b`` (backslash escapes undone); anything else as is."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def split_field(text: str) -> tuple[str, str]:
    """``field.rest`` at the first dot outside double quotes."""
    parts = split_top(text, ".")
    return parts[0], ".".join(parts[1:])


def array_literal(values: list[str]) -> str:
    """A PostgreSQL array literal, every element quoted (PostgREST's ``in`` and ANY())."""
    return (
        "{"
        + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        + "}"
    )


def parse_field(
    text: str, b: Builder, table: sql.Composable | None = None
) -> tuple[sql.Composable, str]:
    """``col``, ``"quoted col"`` or ``col->key->>key``: (SQL, the name PostgREST outputs)."""
    text = text.strip()
    if text.startswith('"'):
        quoted = re.match(r'"(?:[^"\\]|\\.)*"', text)
        if quoted is None:
            raise parse_error("field", text, "unterminated quoted identifier")
        name, rest = unquote(quoted.group(0)), text[quoted.end() :]
    else:
        arrow = _ARROWS.search(text)
        name, rest = (text[: arrow.start()], text[arrow.start() :]) if arrow else (text, "")
    tokens = _ARROWS.split(rest)
    if not name or tokens[0] != "":
        raise parse_error("field", text, "expecting a column name, then -> or ->> keys")
    column: sql.Composable = sql.Identifier(name)
    expression = column if table is None else sql.SQL("{}.{}").format(table, column)
    output = name
    for arrow, key in zip(tokens[1::2], tokens[2::2], strict=True):
        if not key:
            raise parse_error("field", text, "empty JSON key")
        key = unquote(key)
        operand = (
            sql.SQL("{}::int").format(b.value(key)) if re.fullmatch(r"-?\d+", key) else b.value(key)
        )
        expression = sql.SQL("{}{}{}").format(expression, sql.SQL(arrow), operand)
        output = key
    return expression, output


def parse_select(text: str, b: Builder) -> sql.Composable:
    """The ``select`` list (``*`` when absent)."""
    items: list[sql.Composable] = []
    for raw in split_top(text or "*"):
        item = raw.strip()
        if item == "*":
            items.append(sql.SQL("*"))
            continue
        alias = None
        head, colon, rest = item.partition(":")
        if colon and not rest.startswith(":") and not head.startswith('"'):
            alias, item = unquote(head.strip()), rest.strip()
        if "(" in item.split("::")[0] and not item.startswith('"'):
            raise PostgrestError(
                400,
                "PGRST100",
                f'"failed to parse select parameter ({text})" (line 1, column 1)',
                "resource embedding and aggregates are not implemented by the local stack",
            )
        body, _, cast = item.partition("::")
        expression, output = parse_field(body, b)
        if cast:
            expression = sql.SQL("{}::{}").format(expression, sql.SQL(b.resolve_type(cast.strip())))
        if alias or output != body.strip() or cast:
            expression = sql.SQL("{} AS {}").format(expression, sql.Identifier(alias or output))
        items.append(expression)
    if not items:
        raise parse_error("select parameter", text, "empty select")
    return sql.SQL(", ").join(items)


def parse_condition(
    field_text: str, operation: str, b: Builder, table: sql.Composable, *, in_logic: bool = False
) -> sql.Composable:
    """One horizontal filter: ``field=[not.]op[(any|all)].value``."""
    match = _OPERATION.fullmatch(operation)
    if match is None:
        raise parse_error(
            "filter", operation, 'unexpected end of input expecting "not" or operator (eq, gt, ...)'
        )
    negate, op, modifier, value = match.groups()
    column, _ = parse_field(field_text, b, table)
    if in_logic:
        value = unquote(value)
    if op in QUANT_OPS and modifier in (None, "any", "all"):
        literal = value.replace("*", "%") if op in ("like", "ilike") else value
        right = b.value(literal)
        if modifier:
            right = sql.SQL("{}({})").format(sql.SQL(modifier.upper()), right)
        condition = sql.SQL("{} {} {}").format(column, sql.SQL(QUANT_OPS[op]), right)
    elif op in SIMPLE_OPS and modifier is None:
        condition = sql.SQL("{} {} {}").format(column, sql.SQL(SIMPLE_OPS[op]), b.value(value))
    elif op == "in" and modifier is None:
        if not (value.startswith("(") and value.endswith(")")):
            raise parse_error("filter", operation, 'expecting "(" after in.')
        items = [unquote(item.strip()) for item in split_top(value[1:-1])]
        literal = "{}" if items == [""] else array_literal(items)
        condition = sql.SQL("{} = ANY({})").format(column, b.value(literal))
    elif op == "is" and modifier is None and value.lower() in IS_VALUES:
        condition = sql.SQL("{} IS {}").format(column, sql.SQL(IS_VALUES[value.lower()]))
    elif op == "isdistinct" and modifier is None:
        condition = sql.SQL("{} IS DISTINCT FROM {}").format(column, b.value(value))
    elif op in FTS_OPS:
        language = sql.SQL("{}, ").format(b.value(modifier)) if modifier else sql.SQL("")
        condition = sql.SQL("{} @@ {}({}{})").format(
            column, sql.SQL(FTS_OPS[op]), language, b.value(value)
        )
    else:
        raise parse_error(
            "filter", operation, f'unexpected "{op}" expecting "not" or operator (eq, gt, ...)'
        )
    return sql.SQL("NOT ({})").format(condition) if negate else condition


def parse_logic(key: str, value: str, b: Builder, table: sql.Composable) -> sql.Composable:
    """``or=(a.eq.1,and(b.gt.2,c.is.null))`` and ``and``, ``not.or``, ``not.and``."""
    match = _LOGIC.fullmatch(key + value)
    if match is None:
        raise parse_error("logic tree", value, 'expecting "(" and a list of conditions')
    negate, op, inner = match.groups()
    children: list[sql.Composable] = []
    for raw in split_top(inner):
        item = raw.strip()
        if _LOGIC.fullmatch(item):
            nested_key, _, nested_value = item.partition("(")
            children.append(parse_logic(nested_key, "(" + nested_value, b, table))
            continue
        field_text, operation = split_field(item)
        if not operation:
            raise parse_error("logic tree", value, f"expecting field.operator.value in {item!r}")
        children.append(parse_condition(field_text, operation, b, table, in_logic=True))
    tree = sql.SQL("({})").format(sql.SQL(f" {op.upper()} ").join(children))
    return sql.SQL("NOT {}").format(tree) if negate else tree


def parse_order(text: str, b: Builder, table: sql.Composable) -> sql.Composable:
    """``order=a.desc.nullslast,b``."""
    terms: list[sql.Composable] = []
    for raw in split_top(text):
        field_text, modifiers = split_field(raw.strip())
        words = []
        for modifier in modifiers.split(".") if modifiers else []:
            if modifier not in ("asc", "desc", "nullsfirst", "nullslast"):
                raise parse_error(
                    "order",
                    text,
                    f'unexpected "{modifier}" expecting asc, desc, nullsfirst or nullslast',
                )
            words.append(
                {"nullsfirst": "NULLS FIRST", "nullslast": "NULLS LAST"}.get(
                    modifier, modifier.upper()
                )
            )
        column, _ = parse_field(field_text, b, table)
        terms.append(sql.SQL(" ").join([column, *map(sql.SQL, words)]))
    return sql.SQL(", ").join(terms)


@dataclass
class ReadQuery:
    """The parts of a request's query string, as SQL."""

    select: sql.Composable
    where: list[sql.Composable]
    order: sql.Composable | None
    limit: int | None
    offset: int
    columns: list[str] | None
    on_conflict: list[str] | None


def parse_query(params: list[tuple[str, str]], b: Builder, table: sql.Composable) -> ReadQuery:
    """Every parameter of a table request; filters are ANDed, as PostgREST does."""
    named = {key: value for key, value in params if key in RESERVED}
    where: list[sql.Composable] = []
    for key, value in params:
        if key in RESERVED:
            continue
        if key in ("or", "and", "not.or", "not.and"):
            where.append(parse_logic(key, value, b, table))
            continue
        field_text, rest = split_field(key)
        if rest:
            raise PostgrestError(
                400,
                "PGRST108",
                f"'{field_text}' is not an embedded resource in this request",
                None,
                f"Verify that '{field_text}' is included in the 'select' query parameter.",
            )
        where.append(parse_condition(key, value, b, table))

    def number(name: str) -> int | None:
        value = named.get(name)
        if value is None:
            return None
        if not value.strip().isdigit():
            raise parse_error(name, value, f"{name} must be a non-negative integer")
        return int(value)

    def names(name: str) -> list[str] | None:
        value = named.get(name)
        return (
            None if value is None else [unquote(c.strip()) for c in split_top(value) if c.strip()]
        )

    return ReadQuery(
        select=parse_select(named.get("select", "*"), b),
        where=where,
        order=parse_order(named["order"], b, table) if named.get("order") else None,
        limit=number("limit"),
        offset=number("offset") or 0,
        columns=names("columns"),
        on_conflict=names("on_conflict"),
    )


def row_range(header: str | None, offset: int, limit: int | None, max_rows: int) -> tuple[int, int]:
    """(lower, upper) rows, inclusive, from ``Range``, ``offset``/``limit`` and max-rows;
    upper < lower for none. A ``Range`` header of another shape is ignored, as PostgREST does."""
    lower, upper = 0, None
    match = re.fullmatch(r"(\d+)-(\d*)", (header or "").strip())
    if match:
        lower, upper = int(match.group(1)), int(match.group(2)) if match.group(2) else None
        if upper is not None and lower > upper:
            raise PostgrestError(
                416,
                "PGRST103",
                "Requested range not satisfiable",
                "The lower boundary must be lower than or equal to the upper boundary in the Range header.",
            )
    if limit == 0:
        return 0, -1
    lower = max(lower, offset)
    uppers = [u for u in (upper, None if limit is None else offset + limit - 1) if u is not None]
    upper = min([*uppers, lower + max_rows - 1])
    return lower, upper


def content_range(lower: int, returned: int, total: int | None) -> tuple[int, str]:
    """PostgREST's status (200, 206, 416) and ``Content-Range`` for a read."""
    upper = lower + returned - 1
    shown = f"{lower}-{upper}" if total != 0 and lower <= upper else "*"
    status = 200
    if total is not None and lower > total:
        status = 416
    elif total is not None and returned < total:
        status = 206
    return status, f"{shown}/{'*' if total is None else total}"


@dataclass
class Preferences:
    """The ``Prefer`` items acted on, and those to echo in ``Preference-Applied``."""

    representation: bool = False
    count: bool = False
    resolution: str | None = None
    applied: list[str] = field(default_factory=list)


def parse_prefer(values: list[str]) -> Preferences:
    prefs = Preferences()
    for item in (part.strip().lower() for value in values for part in value.split(",")):
        key, _, value = item.partition("=")
        if key == "return" and value in ("representation", "minimal", "headers-only"):
            prefs.representation = value == "representation"
        elif key == "count" and value in ("exact", "planned", "estimated"):
            prefs.count = True  # planned and estimated are answered exactly here
        elif key == "resolution" and value in ("merge-duplicates", "ignore-duplicates"):
            prefs.resolution = value
        else:
            continue
        prefs.applied.append(item)
    return prefs
