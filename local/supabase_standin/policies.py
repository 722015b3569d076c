"""Row Level Security for the ``anon`` role: one visibility filter per table, nothing more.

A Supabase project has two API keys, both JWTs: ``anon`` (public; PostgreSQL role ``anon``,
subject to RLS) and ``service_role`` (secret; a role with BYPASSRLS). The stand-in models RLS
as exactly one policy per table for ``anon``, declared at construction::

    SupabaseStandIn({"articles": "id", "authors": "slug", "drafts": "id"},
                    anon_policies={"articles": "published=eq.true", "authors": "true"})

- A policy is the ``USING`` clause of ``CREATE POLICY ... ON <table> FOR SELECT TO anon``,
  written in PostgREST filter syntax (``published=eq.true``, ``or=(a.eq.1,b.is.null)``, several
  joined by ``&`` are ANDed) and parsed by ``query.py``. ``"true"`` shows every row, which is
  also what anon sees on a table whose RLS is disabled (Supabase grants ``anon`` SELECT on
  ``public`` tables). Tables here are schemaless, so a column the policy names that no row
  has reads as NULL: a misspelt policy hides every row (fails closed) where PostgreSQL would
  have refused the ``CREATE POLICY``.
- A table absent from the mapping has RLS enabled and no policy (``drafts`` above): anon sees
  no row at all. PostgreSQL filters, it does not refuse, so reads answer 200 with ``[]`` and a
  count of 0. This is what the Supabase dashboard gives a new table, and the safe default.
- A hidden row is absent from every anon read: select, ``count``, ``HEAD``, ranges, ``in.()``
  and keyset pages all see only the visible rows, as when PostgreSQL adds the policy to WHERE.
- The policies are SELECT policies only, so anon writes behave as they do in PostgreSQL when
  no INSERT/UPDATE/DELETE policy exists: an INSERT (or upsert) fails its RLS check with
  ``42501 new row violates row-level security policy``, answered 401 because PostgREST
  answers 403 only for roles other than the anon role; an UPDATE or DELETE matches no row
  (its ``USING`` defaults to false) and changes nothing, without an error.
- Columns are not restricted: an anon read returns every column of a visible row unless
  ``select=`` names fewer (Supabase's column privileges are out of scope).
- Webhooks are not filtered: Supabase's trigger runs as the table owner and sends full rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import parse_qsl

from local.supabase_standin.errors import PostgrestError
from local.supabase_standin.query import Node, ParsedQuery, Row, matches, parse_query

Role = Literal["anon", "service_role"]
ANON: Final[Role] = "anon"
SERVICE_ROLE: Final[Role] = "service_role"
ALL_ROWS: Final = "true"


@dataclass(frozen=True)
class AnonPolicy:
    """``USING (<filters>)`` of one table's SELECT policy for ``anon``; no filters: every row."""

    table: str
    text: str
    filters: tuple[Node, ...]

    def allows(self, row: Row) -> bool:
        """Whether anon sees ``row`` (NULL in a compared column hides it, as in SQL)."""
        return matches(self.filters, row)


def parse_anon_policy(table: str, text: str) -> AnonPolicy:
    """Parse ``"true"`` or a PostgREST filter string; ValueError says what is wrong."""
    stripped = text.strip()
    if stripped.lower() == ALL_ROWS:
        return AnonPolicy(table, ALL_ROWS, ())
    if not stripped:  # ambiguous: say which of the two meanings
        raise ValueError(
            f"anon policy for {table!r} is empty: expected 'true' (every row) or filters like "
            "'published=eq.true'; leave the table out to show anon no row"
        )
    try:
        params = parse_qsl(stripped, keep_blank_values=True, strict_parsing=True)
        query = parse_query(params)
    except PostgrestError as exc:
        raise ValueError(
            f"anon policy for {table!r} ({text!r}): {exc.message} {exc.details or ''}".strip()
        ) from None
    except ValueError as exc:  # parse_qsl: a part without "="
        raise ValueError(
            f"anon policy for {table!r} ({text!r}): expected 'true' or filters like "
            f"'published=eq.true' ({exc})"
        ) from None
    only_filters = ParsedQuery(filters=query.filters)
    if query != only_filters or not query.filters:  # "apikey=x" parses to no filter
        raise ValueError(
            f"anon policy for {table!r} ({text!r}): a policy is a row filter only "
            "(no select, order, limit, offset, on_conflict or columns)"
        )
    return AnonPolicy(table, stripped, tuple(query.filters))


def parse_anon_policies(
    policies: Mapping[str, str] | None, tables: Iterable[str]
) -> dict[str, AnonPolicy]:
    """Parse every policy; a policy for a table that is not served is a ValueError."""
    served = set(tables)
    parsed: dict[str, AnonPolicy] = {}
    for table, text in (policies or {}).items():
        if table not in served:
            raise ValueError(f"anon policy for unknown table {table!r}; served: {sorted(served)}")
        if not isinstance(text, str):
            raise ValueError(f"anon policy for {table!r} must be a string, got {text!r}")
        parsed[table] = parse_anon_policy(table, text)
    return parsed


def no_row(_row: Row) -> bool:
    """The row test of a policy that is missing (RLS enabled, no policy): nothing passes."""
    return False


def visibility(
    role: Role, table: str, policies: Mapping[str, AnonPolicy]
) -> Callable[[Row], bool] | None:
    """The row test reads apply for ``role``; None when every row is visible (BYPASSRLS)."""
    if role == SERVICE_ROLE:
        return None
    policy = policies.get(table)
    if policy is None:
        return no_row  # RLS enabled, no policy: PostgreSQL shows nothing
    return policy.allows


def rls_insert_violation(table: str) -> PostgrestError:
    """42501 as PostgREST answers it for the anon role (401; 403 is for other roles)."""
    return PostgrestError(
        401, "42501", f'new row violates row-level security policy for table "{table}"'
    )
