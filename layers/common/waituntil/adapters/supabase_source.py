"""Reads Supabase (the source of truth) with supabase-py: touched keys, or a table by pages.

Imported by the consumer only: ``import supabase`` costs about 0.3 s, which the receiver's
cold start must not pay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

import httpx
from postgrest.exceptions import APIError
from supabase import ClientOptions, create_client

from waituntil.contracts import Row
from waituntil.errors import SourceUnavailable

if TYPE_CHECKING:
    from supabase import Client

# Characters of one ``in.(...)`` list: with the rest of the URL, far below the 8 KB that
# common proxies accept for a request line, even after percent-encoding.
MAX_KEYS_CHARS = 3000


class SupabaseSource:
    """Keyset-paginated reads: Supabase silently truncates any single read at 1000 rows."""

    def __init__(
        self,
        url: str,
        key: Callable[[], str],
        *,
        schema_name: str = "public",
        timeout_s: float = 8.0,
        primary_key: str = "id",
        retry: bool = True,
        client: Client | None = None,
    ) -> None:
        self._url = url
        self._key = key
        self._schema = schema_name
        self._timeout_s = timeout_s
        self._primary_key = primary_key
        self._retry = retry
        self._injected = client
        self.requests_made = 0
        self.rows_read = 0

    @cached_property
    def _client(self) -> Client:
        if self._injected is not None:
            return self._injected
        # supabase-py's default HTTP timeout is 120 s, far beyond what a batch can wait, and
        # its postgrest_client_timeout option truncates to whole seconds (0.5 becomes 0): an
        # httpx client of our own keeps the timeout exact. supabase-py itself retries GETs
        # that fail with 503/520 or a network error (3 times, 1-2-4 s apart).
        options = ClientOptions(
            schema=self._schema,
            httpx_client=httpx.Client(timeout=httpx.Timeout(self._timeout_s)),
            postgrest_client_retry=self._retry,
        )
        return create_client(self._url, self._key(), options=options)

    def read_rows(self, table: str, keys: Sequence[str]) -> list[Row]:
        """The rows whose primary key is one of ``keys``: ``pk=in.(...)``, in groups that keep
        each URL short (PostgREST sits behind proxies that refuse long request lines)."""
        rows: list[Row] = []
        for group in key_groups(keys):
            query = self._client.table(table).select("*").in_(self._primary_key, group)
            rows.extend(self._execute(table, query))
        return rows

    def existing_keys(self, table: str, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for group in key_groups(keys):
            query = (
                self._client.table(table).select(self._primary_key).in_(self._primary_key, group)
            )
            found |= {str(row[self._primary_key]) for row in self._execute(table, query)}
        return found

    def read_page(self, table: str, after: Any, limit: int) -> list[Row]:
        """Up to ``limit`` rows with key > ``after``, by key.

        Keyset pagination (``pk > last``) rather than offsets: rows inserted or deleted while
        we page cannot shift a page boundary and make us skip or repeat rows. ``limit`` must
        not exceed the project's max-rows setting (1000 by default), or pages are truncated.
        """
        query = self._client.table(table).select("*").order(self._primary_key).limit(limit)
        if after is not None:
            query = query.gt(self._primary_key, after)
        return self._execute(table, query)

    def _execute(self, table: str, query: Any) -> list[Row]:
        self.requests_made += 1
        try:
            response = query.execute()
        except (APIError, httpx.HTTPError, ValueError) as error:
            raise SourceUnavailable(f"reading {table} from Supabase failed: {error}") from error
        rows = cast(list[Row], response.data)
        self.rows_read += len(rows)
        return rows


def key_groups(keys: Sequence[str], max_chars: int = MAX_KEYS_CHARS) -> list[list[str]]:
    """Keys in groups whose ``in.(...)`` list stays under ``max_chars`` (postgrest-py quotes a
    key holding a comma or quote itself; counted here as if every key were quoted)."""
    groups: list[list[str]] = []
    size = max_chars
    for key in keys:
        cost = len(key) + 3
        if size + cost > max_chars:
            groups.append([])
            size = 0
        groups[-1].append(key)
        size += cost
    return groups
