"""Reads whole tables from Supabase (the source of truth) with supabase-py.

Imported by the consumer only: ``import supabase`` costs about 0.3 s, which the receiver's
cold start must not pay.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

import httpx
from postgrest.exceptions import APIError
from supabase import ClientOptions, create_client

from waituntil.contracts import Row
from waituntil.errors import SourceUnavailable

if TYPE_CHECKING:
    from supabase import Client


class SupabaseSource:
    """Keyset-paginated reads: Supabase silently truncates any single read at 1000 rows."""

    def __init__(
        self,
        url: str,
        key: Callable[[], str],
        *,
        schema_name: str = "public",
        timeout_s: float = 8.0,
        page_size: int = 1000,
        retry: bool = True,
        client: Client | None = None,
    ) -> None:
        self._url = url
        self._key = key
        self._schema = schema_name
        self._timeout_s = timeout_s
        self._page_size = page_size
        self._retry = retry
        self._injected = client
        self.requests_made = 0

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

    def read_table(self, table: str, primary_key: str) -> list[Row]:
        """Every row, in primary-key order, one page per request.

        Keyset pagination (``pk > last``) rather than offsets: rows inserted or deleted while
        we page cannot shift a page boundary and make us skip or repeat rows. A page shorter
        than ``page_size`` is the last one (``page_size`` must not exceed the project's
        max-rows setting, 1000 by default).
        """
        rows: list[Row] = []
        last: Any = None
        while True:
            page = self._read_page(table, primary_key, last)
            rows.extend(page)
            if len(page) < self._page_size:
                return rows
            last = page[-1][primary_key]

    def _read_page(self, table: str, primary_key: str, after: Any) -> list[Row]:
        query = self._client.table(table).select("*").order(primary_key).limit(self._page_size)
        if after is not None:
            query = query.gt(primary_key, after)
        self.requests_made += 1
        try:
            response = query.execute()
        except (APIError, httpx.HTTPError, ValueError) as error:
            raise SourceUnavailable(f"reading {table} from Supabase failed: {error}") from error
        return cast(list[Row], response.data)
