"""PostgREST's query string as SQL fragments (pure: no connection).

Every value becomes a bound parameter, untyped as PostgREST sends it, so PostgreSQL reads it as
the column's type (``id=eq.7`` compares a bigint, ``title=eq.7`` a text); identifiers are quoted
by psycopg; a ``::cast``'s type is resolved by the caller against the catalog. Covered: select
(columns, ``alias:``, casts, JSON paths), every filter operator with ``not.`` and
``(any)``/``(all)``, ``or``/``and`` trees, order, limit, offset, Range, Prefer. Refused (400):
resource embedding, aggregates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

SQL, Ident = sql.SQL, sql.Identifier
RESERVED = frozenset({"select", "order", "limit", "offset", "on_conflict", "columns", "apikey"})
QUANT_OPS = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "LIKE"}
QUANT_OPS |= {"ilike": "ILIKE", "match": "~", "imatch": "~*"}
SIMPLE_OPS = {"neq": "<>", "cs": "@>", "cd": "<@", "ov": "&&", "sl": "<<", "sr": ">>"}
SIMPLE_OPS |= {"nxr": "&<", "nxl": "&>", "adj": "-|-"}
FTS_OPS = {"fts": "to_tsquery", "plfts": "plainto_tsquery", "phfts": "phraseto_tsquery"}
FTS_OPS |= {"wfts": "websearch_to_tsquery"}
IS_VALUES = {"null": "NULL", "not_null": "NOT NULL", "true": "TRUE", "false": "FALSE"}
IS_VALUES |= {"unknown": "UNKNOWN"}
ORDER_WORDS = {"asc": "ASC", "desc": "DESC", "nullsfirst": "NULLS FIRST", "nullslast": "NULLS LAST"}
_OPERATION = re.compile(r"(not\.)?([a-z]+)(?:\(([^)]*)\))?\.(.*)", re.DOTALL)
_LOGIC = re.compile(r"(not\.)?(and|or)\((.*)\)", re.DOTALL)
_ARROWS = re.compile(r"(->>|->)")
_EXPECTING = 'expecting "not" or operator (eq, gt, ...)'


@dataclass(eq=False)
class PostgrestError(Exception):
    """An answer in PostgREST's shape: a status and ``{code, message, details, hint}``."""

    status: int
    code: str | None
    message: str
    details: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in ("code", "details", "hint", "message")}


def parse_error(what: str, text: str, details: str) -> PostgrestError:
    """PGRST100, worded as PostgREST's parser words it."""
    message = f'"failed to parse {what} ({text})" (line 1, column 1)'
    return PostgrestError(400, "PGRST100", message, details)


@dataclass
class Builder:
    """Collects the bound values of one statement: the SQL holds only their placeholders."""

    resolve_type: Callable[[str], str]  # a ``::cast`` as the catalog names it
    params: dict[str, Any] = field(default_factory=dict)

    def value(self, value: Any) -> sql.Composable:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return sql.Placeholder(name)


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside double quotes and parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted, escaped = 0, False, False
    for char in text:
        if escaped or (quoted and char == "\\"):
            escaped = not escaped
        elif char == '"':
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
        elif char == sep and not quoted and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    return [*parts, "".join(current)]


def unquote(text: str) -> str:
    """``"a,b"`` -> ``a,b`` (backslash escapes undone); anything else as is."""
    quoted = len(text) >= 2 and text[0] == text[-1] == '"'
    return re.sub(r"\\(.)", r"\1", text[1:-1]) if quoted else text


def split_field(text: str) -> tuple[str, str]:
    """``field.rest`` at the first dot outside double quotes."""
    field_text, *rest = split_top(text, ".")
    return field_text, ".".join(rest)


def parse_field(text: str, b: Builder, table: sql.Composable | None = None) -> tuple[Any, str]:
    """``col``, ``"quoted col"`` or ``col->key->>key``: (its SQL, the name PostgREST outputs)."""
    text = text.strip()
    quoted = re.match(r'"(?:[^"\\]|\\.)*"', text)
    arrow = _ARROWS.search(text)
    if quoted:
        name, rest = unquote(quoted.group(0)), text[quoted.end() :]
    else:
        name, rest = (text[: arrow.start()], text[arrow.start() :]) if arrow else (text, "")
    tokens = _ARROWS.split(rest)
    if not name or tokens[0] != "" or not all(tokens[2::2]):
        raise parse_error("field", text, "expecting a column name, then -> or ->> keys")
    expression = Ident(name) if table is None else SQL("{}.{}").format(table, Ident(name))
    for arrow_text, key in zip(tokens[1::2], map(unquote, tokens[2::2]), strict=True):
        operand = b.value(key)
        if re.fullmatch(r"-?\d+", key):
            operand = SQL("{}::int").format(operand)
        expression, name = SQL("{}{}{}").format(expression, SQL(arrow_text), operand), key
    return expression, name


def parse_select(text: str, b: Builder) -> sql.Composable:
    """The ``select`` list (``*`` when absent)."""
    items: list[sql.Composable] = []
    for item in (raw.strip() for raw in split_top(text or "*")):
        if item == "*":
            items.append(SQL("*"))
            continue
        alias, colon, rest = item.partition(":")
        if not colon or rest.startswith(":") or alias.startswith('"'):
            alias, rest = "", item
        if "(" in rest.split("::")[0] and not rest.startswith('"'):
            details = "resource embedding and aggregates are not implemented by the local stack"
            raise parse_error("select parameter", text, details)
        body, _, cast = rest.strip().partition("::")
        expression, output = parse_field(body, b)
        if cast:
            expression = SQL("{}::{}").format(expression, SQL(b.resolve_type(cast.strip())))
        if alias or output != unquote(body.strip()) or cast:
            name = Ident(unquote(alias.strip()) or output)
            expression = SQL("{} AS {}").format(expression, name)
        items.append(expression)
    return SQL(", ").join(items)


def parse_condition(
    field_text: str, operation: str, b: Builder, table: sql.Composable, *, in_logic: bool = False
) -> sql.Composable:
    """One horizontal filter: ``field=[not.]op[(any|all)].value``."""
    match = _OPERATION.fullmatch(operation)
    if match is None:
        raise parse_error("filter", operation, f"unexpected end of input {_EXPECTING}")
    negate, op, modifier, value = match.groups()
    column, _ = parse_field(field_text, b, table)
    value = unquote(value) if in_logic else value
    if op in QUANT_OPS and modifier in (None, "any", "all"):
        right = b.value(value.replace("*", "%") if op in ("like", "ilike") else value)
        if modifier:
            right = SQL("{}({})").format(SQL(modifier.upper()), right)
        condition = SQL("{} {} {}").format(column, SQL(QUANT_OPS[op]), right)
    elif op in SIMPLE_OPS and modifier is None:
        condition = SQL("{} {} {}").format(column, SQL(SIMPLE_OPS[op]), b.value(value))
    elif op == "in" and modifier is None and value[:1] + value[-1:] == "()":
        items = [unquote(item.strip()) for item in split_top(value[1:-1])]
        quoted = ('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items)
        literal = b.value("{" + ",".join(quoted if items != [""] else ()) + "}")
        condition = SQL("{} = ANY({})").format(column, literal)
    elif op == "is" and modifier is None and value.lower() in IS_VALUES:
        condition = SQL("{} IS {}").format(column, SQL(IS_VALUES[value.lower()]))
    elif op == "isdistinct" and modifier is None:
        condition = SQL("{} IS DISTINCT FROM {}").format(column, b.value(value))
    elif op in FTS_OPS:
        language = SQL("{}, ").format(b.value(modifier)) if modifier else SQL("")
        query = SQL("{}({}{})").format(SQL(FTS_OPS[op]), language, b.value(value))
        condition = SQL("{} @@ {}").format(column, query)
    else:
        raise parse_error("filter", operation, f'unexpected "{op}" {_EXPECTING}')
    return SQL("NOT ({})").format(condition) if negate else condition


def parse_logic(key: str, value: str, b: Builder, table: sql.Composable) -> sql.Composable:
    """``or=(a.eq.1,and(b.gt.2,c.is.null))``, and ``and``, ``not.or``, ``not.and``."""
    match = _LOGIC.fullmatch(key + value)
    if match is None:
        raise parse_error("logic tree", value, 'expecting "(" and a list of conditions')
    negate, op, inner = match.groups()
    children: list[sql.Composable] = []
    for item in (raw.strip() for raw in split_top(inner)):
        nested_key, _, nested_value = item.partition("(")
        field_text, operation = split_field(item)
        if _LOGIC.fullmatch(item):
            children.append(parse_logic(nested_key, "(" + nested_value, b, table))
        elif operation:
            children.append(parse_condition(field_text, operation, b, table, in_logic=True))
        else:
            raise parse_error("logic tree", value, f"expecting field.operator.value: {item!r}")
    tree = SQL("({})").format(SQL(f" {op.upper()} ").join(children))
    return SQL("NOT {}").format(tree) if negate else tree


def parse_order(text: str, b: Builder, table: sql.Composable) -> sql.Composable:
    """``order=a.desc.nullslast,b``."""
    terms: list[sql.Composable] = []
    for raw in split_top(text):
        field_text, modifiers = split_field(raw.strip())
        words = modifiers.split(".") if modifiers else []
        unknown = next((word for word in words if word not in ORDER_WORDS), None)
        if unknown is not None:
            raise parse_error("order", text, f'unexpected "{unknown}" expecting asc or desc')
        column, _ = parse_field(field_text, b, table)
        terms.append(SQL(" ").join([column, *(SQL(ORDER_WORDS[word]) for word in words)]))
    return SQL(", ").join(terms)


@dataclass
class ReadQuery:
    """A table request's query string, as SQL."""

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
    for key, value in ((k, v) for k, v in params if k not in RESERVED):
        field_text, embedded = split_field(key)
        if key in ("or", "and", "not.or", "not.and"):
            where.append(parse_logic(key, value, b, table))
        elif embedded:
            message = f"'{field_text}' is not an embedded resource in this request"
            hint = f"Verify that '{field_text}' is included in the 'select' query parameter."
            raise PostgrestError(400, "PGRST108", message, None, hint)
        else:
            where.append(parse_condition(key, value, b, table))
    for name in ("limit", "offset"):
        if not named.get(name, "0").strip().isdigit():
            raise parse_error(name, named[name], f"{name} must be a non-negative integer")
    columns, on_conflict = (
        None if name not in named else [unquote(c.strip()) for c in split_top(named[name])]
        for name in ("columns", "on_conflict")
    )
    order = parse_order(named["order"], b, table) if named.get("order") else None
    limit = int(named["limit"]) if "limit" in named else None
    select = parse_select(named.get("select", "*"), b)
    return ReadQuery(select, where, order, limit, int(named.get("offset", 0)), columns, on_conflict)


def row_range(header: str | None, offset: int, limit: int | None, max_rows: int) -> tuple[int, int]:
    """(lower, upper), inclusive, from ``Range``, ``offset``/``limit`` and max-rows (upper <
    lower: none). A ``Range`` header of another shape is ignored, as PostgREST ignores it."""
    match = re.fullmatch(r"(\d+)-(\d*)", (header or "").strip())
    lower = int(match.group(1)) if match else 0
    upper = int(match.group(2)) if match and match.group(2) else None
    if upper is not None and lower > upper:
        details = "The lower boundary must be lower than or equal to the upper boundary in the "
        details += "Range header."
        raise PostgrestError(416, "PGRST103", "Requested range not satisfiable", details)
    if limit == 0:
        return 0, -1
    lower = max(lower, offset)
    uppers = [u for u in (upper, None if limit is None else offset + limit - 1) if u is not None]
    return lower, min([*uppers, lower + max_rows - 1])


def content_range(lower: int, returned: int, total: int | None) -> tuple[int, str]:
    """PostgREST's status (200, 206 or 416) and ``Content-Range`` for a read."""
    shown = f"{lower}-{lower + returned - 1}" if total != 0 and returned > 0 else "*"
    status = 200 if total is None or (lower <= total and returned >= total) else 206
    status = 416 if total is not None and lower > total else status
    return status, f"{shown}/{'*' if total is None else total}"


@dataclass
class Preferences:
    """The ``Prefer`` items acted on, and those echoed in ``Preference-Applied``."""

    representation: bool = False
    count: bool = False  # exact; planned and estimated are answered exactly too
    resolution: str | None = None
    applied: list[str] = field(default_factory=list)


def parse_prefer(values: list[str]) -> Preferences:
    prefs = Preferences()
    for item in (part.strip().lower() for value in values for part in value.split(",")):
        key, _, value = item.partition("=")
        if key == "return" and value in ("representation", "minimal", "headers-only"):
            prefs.representation = value == "representation"
        elif key == "count" and value in ("exact", "planned", "estimated"):
            prefs.count = True
        elif key == "resolution" and value in ("merge-duplicates", "ignore-duplicates"):
            prefs.resolution = value
        else:
            continue
        prefs.applied.append(item)
    return prefs
