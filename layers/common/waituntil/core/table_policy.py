"""The per-table cache policy: the one place that says what is cached of each table, and how.

Declared once, in the template (``CachedTables`` and ``TablePolicies``), read by all three
functions through their settings:

- ``key``: the primary key column (the receiver takes the row key from it, the consumer reads
  by it, the read API serves ``/<table>/<key>``). Default: the ``PrimaryKey`` parameter.
- ``order``: the list's order, ``column`` or ``column.desc``, then the key. Default: the
  ``ListOrder`` parameter, or the key.
- ``columns``: what to cache, PostgREST ``select`` syntax (``id,title,body``). Default ``*``.
  The key and the order column are always read, listed or not.
- ``filter``: rows to cache, PostgREST filter syntax joined by ``&`` (``published=eq.true``).
- ``role``: whose view of the table to cache. ``anon`` (the default): Supabase's Row Level
  Security applies exactly as for the public, so a row RLS hides is simply not in the read and
  the consumer removes it from the cache. ``service``: the service-role key, which sees every
  row and column; only for tables whose reads are not public (``ReadAccess=iam``) or whose
  every row may be public.
- ``public``: ``true`` says a ``service`` table may be served to anyone anyway (its every row
  and column is public). Without it, a reader with ``ReadAccess=public`` refuses to start
  rather than publish what Row Level Security hides (``ReaderSettings``). Default ``false``.

``TablePolicies`` is JSON: ``{"authors": {"key": "slug", "order": "name"}}``; tables it does
not name get the defaults, so the common case is ``CachedTables=articles`` and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from waituntil.core.list_order import ListOrder

# PostgREST identifiers as this project accepts them: no quoting needed in a URL or a key.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_FILTER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=[^&.]+\.[^&]*")


class TablePolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: Annotated[str, Field(pattern=f"^{_IDENTIFIER.pattern}$")] = "id"
    order: str | None = None
    columns: str = "*"
    filter: str | None = None
    role: Literal["anon", "service"] = "anon"
    # An explicit opt-in, never a default: see the module docstring.
    public: bool = False

    @field_validator("order")
    @classmethod
    def _order_column(cls, value: str | None) -> str | None:
        if value:
            column, _, direction = value.partition(".")
            if not _IDENTIFIER.fullmatch(column) or direction not in ("", "asc", "desc"):
                raise ValueError(f"order must be 'column' or 'column.desc', not {value!r}")
        return value or None

    @field_validator("filter")
    @classmethod
    def _filters(cls, value: str | None) -> str | None:
        if value and not all(_FILTER.fullmatch(part) for part in value.split("&")):
            raise ValueError(f"filter must be PostgREST filters joined by '&', not {value!r}")
        return value or None

    @property
    def list_order(self) -> ListOrder:
        return ListOrder.parse(self.key, self.order)

    @property
    def select(self) -> str:
        """The ``select`` sent to Supabase: the columns, plus the key and order column."""
        if self.columns.strip() == "*":
            return "*"
        columns = [column.strip() for column in self.columns.split(",") if column.strip()]
        needed = [self.key] + ([self.list_order.column] if self.list_order.column else [])
        return ",".join(columns + [column for column in needed if column not in columns])

    @property
    def fingerprint(self) -> str:
        """What the cache of this table is built with: a hash of the whole policy.

        Stored on the list's head and on every row item; a reader serves only what carries the
        fingerprint of the policy in force, so tightening a policy (``service`` to ``anon``,
        fewer columns, a filter) never leaves what it now hides public, and a changed order
        never patches a list built in another one (the table is rebuilt as a fresh version).
        """
        # What shapes the cached rows and the list: not ``public``, which only says who may
        # read them (the reader's start-up check), so changing it rebuilds nothing.
        built_with = self.model_dump(exclude={"public"})
        canonical = json.dumps(built_with, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def filters(self) -> list[tuple[str, str]]:
        """``(column, "operator.value")`` pairs, in the order given."""
        if not self.filter:
            return []
        return [tuple(part.split("=", 1)) for part in self.filter.split("&")]  # type: ignore[misc]


def parse_policies(
    tables: tuple[str, ...], policies_json: str | None, default: TablePolicy
) -> dict[str, TablePolicy]:
    """One policy per cached table: ``default`` merged with what ``policies_json`` says."""
    declared: dict[str, dict[str, object]] = {}
    if policies_json and policies_json.strip():
        try:
            loaded = json.loads(policies_json)
        except json.JSONDecodeError as error:
            raise ValueError(f"TABLE_POLICIES is not JSON: {error}") from error
        if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
            raise ValueError('TABLE_POLICIES must map tables to objects: {"t": {"key": "id"}}')
        declared = loaded
    unknown = sorted(set(declared) - set(tables))
    if unknown:
        raise ValueError(f"TABLE_POLICIES names tables that are not cached: {unknown}")
    policies: dict[str, TablePolicy] = {}
    for table in tables:
        if not _IDENTIFIER.fullmatch(table):
            raise ValueError(f"cached table name {table!r} is not a plain identifier")
        try:
            policies[table] = TablePolicy.model_validate(
                {**default.model_dump(), **declared.get(table, {})}
            )
        except ValidationError as error:
            raise ValueError(f"policy of {table}: {error.errors()[0]['msg']}") from error
    return policies
