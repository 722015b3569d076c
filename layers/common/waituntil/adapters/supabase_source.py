"""Reads Supabase (the source of truth) over its REST API: touched keys, or a table by pages.

With postgrest-py, the REST client inside supabase-py, used directly: the consumer reads
tables and nothing else, and ``import supabase`` also loads its auth, storage, realtime and
functions clients (cryptography, websockets...): about 0.1 s more of every consumer cold start
(docs/SCALE.md, "Cold start"). The requests are the ones ``supabase.create_client(url,
key).table(name)`` sends: ``<url>/rest/v1``, the key as ``apiKey`` and as the bearer token.
Imported by the consumer only: the receiver's and the reader's cold starts do not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import httpx
from postgrest import SyncPostgrestClient
from postgrest.exceptions import APIError

from waituntil.core.contracts import Row
from waituntil.core.errors import SourceUnavailable
from waituntil.core.settings import SUPABASE_MAX_ROWS
from waituntil.core.table_policy import TablePolicy

# Characters of one ``in.(...)`` list: with the rest of the URL, far below the 8 KB that
# common proxies accept for a request line, even after percent-encoding.
MAX_KEYS_CHARS = 3000


class SupabaseSource:
    """Keyset-paginated reads: Supabase silently truncates any single read at 1000 rows."""

    def __init__(
        self,
        url: str,
        keys: Mapping[str, Callable[[], str]],
        policies: Mapping[str, TablePolicy],
        *,
        schema_name: str = "public",
        timeout_s: float = 8.0,
        retry: bool = True,
        max_rows: int = SUPABASE_MAX_ROWS,
    ) -> None:
        """``keys``: a getter of the API key for each role (``anon``, ``service``) a policy
        names; each table is read with the key of its policy's role. ``max_rows``: the most
        rows the project answers to one read (its max-rows setting, which the consumer's
        ``SUPABASE_PAGE_SIZE`` declares); no read here ever asks for more."""
        self._url = url
        self._keys = keys
        self._policies = policies
        self._schema = schema_name
        self._timeout_s = timeout_s
        self._retry = retry
        self._max_rows = max_rows
        self._clients: dict[str, SyncPostgrestClient] = {}
        self.rows_read = 0

    def _query(self, table: str, select: str | None = None) -> Any:
        """A query on ``table`` as its policy says: whose key, which columns, which rows."""
        policy = self._policies[table]
        query = self._client(policy.role).from_(table).select(select or policy.select)
        for column, condition in policy.filters():
            # filter() writes "column=operator.criteria": splitting the condition at its first
            # dot and letting it join them again passes it on exactly as written (or=(...) too).
            operator, _, criteria = condition.partition(".")
            query = query.filter(column, operator, criteria)
        return query

    def _client(self, role: str) -> SyncPostgrestClient:
        if role not in self._clients:
            self._clients[role] = self._connect(self._keys[role]())
        return self._clients[role]

    def _connect(self, key: str) -> SyncPostgrestClient:
        # supabase-py's default HTTP timeout is 120 s, far beyond what a batch can wait: an
        # httpx client of our own keeps the timeout short and exact. postgrest-py itself
        # retries GETs that fail with 503/520 or a network error (3 times, 1-2-4 s apart).
        return SyncPostgrestClient(
            f"{self._url.rstrip('/')}/rest/v1",
            schema=self._schema,
            headers={"apiKey": key, "Authorization": f"Bearer {key}"},
            http_client=httpx.Client(timeout=httpx.Timeout(self._timeout_s)),
            retry_enabled=self._retry,
        )

    def read_rows(self, table: str, keys: Sequence[str]) -> list[Row]:
        """The rows whose primary key is one of ``keys``: ``pk=in.(...)``, in groups that keep
        each URL short (PostgREST sits behind proxies that refuse long request lines)."""
        rows: list[Row] = []
        key = self._policies[table].key
        for group in key_groups(keys, max_keys=self._max_rows):
            rows.extend(self._execute(table, self._query(table).in_(key, group)))
        return rows

    def existing_keys(self, table: str, keys: Sequence[str]) -> set[str]:
        """The ``keys`` Supabase still has. A key it does not return is asked again, alone
        with the other missing ones, until an answer returns none of them: a read cut short by
        the project's max-rows (set below what ``SUPABASE_PAGE_SIZE`` declares) could drop
        keys that exist, but an empty answer cannot be cut short. So a row is never taken for
        deleted because a read was truncated, at one more request when some keys are gone."""
        found: set[str] = set()
        missing = list(keys)
        while missing:
            answered = self._keys_found(table, missing)
            if not answered:
                return found
            found |= answered
            missing = [key for key in missing if key not in answered]
        return found

    def _keys_found(self, table: str, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        key = self._policies[table].key
        for group in key_groups(keys, max_keys=self._max_rows):
            query = self._query(table, select=key).in_(key, group)
            found |= {str(row[key]) for row in self._execute(table, query)}
        return found

    def read_page(self, table: str, after: Any, limit: int) -> list[Row]:
        """Up to ``limit`` rows with key > ``after``, by key.

        Keyset pagination (``pk > last``) rather than offsets: rows inserted or deleted while
        we page cannot shift a page boundary and make us skip or repeat rows. ``limit`` must
        not exceed the project's max-rows setting (1000 by default), or pages are truncated.
        """
        key = self._policies[table].key
        query = self._query(table).order(key).limit(limit)
        if after is not None:
            query = query.gt(key, after)
        return self._execute(table, query)

    def _execute(self, table: str, query: Any) -> list[Row]:
        try:
            response = query.execute()
        except (APIError, httpx.HTTPError, ValueError) as error:
            raise SourceUnavailable(f"reading {table} from Supabase failed: {error}") from error
        rows = cast(list[Row], response.data)
        self.rows_read += len(rows)
        return rows


def key_groups(
    keys: Sequence[str], max_chars: int = MAX_KEYS_CHARS, max_keys: int = SUPABASE_MAX_ROWS
) -> list[list[str]]:
    """Keys in groups of at most ``max_keys`` whose ``in.(...)`` list stays under
    ``max_chars`` (postgrest-py quotes a key holding a comma or quote itself; counted here as
    if every key were quoted)."""
    groups: list[list[str]] = []
    size = max_chars
    for key in keys:
        cost = len(key) + 3
        if size + cost > max_chars or len(groups[-1]) >= max_keys:
            groups.append([])
            size = 0
        groups[-1].append(key)
        size += cost
    return groups
