"""Reads Supabase (the source of truth) with supabase-py: touched keys, or a table by pages.

Imported by the consumer only: ``import supabase`` costs about 0.3 s, which the receiver's
cold start must not pay.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

import httpx
from postgrest.exceptions import APIError
from supabase import ClientOptions, create_client

from waituntil.adapters.postgrest_ranges import (
    Param,
    order_param,
    range_params,
    scan_params,
)
from waituntil.cache.model import ChangeMark, PositionRange, RangePrint
from waituntil.core.contracts import Row
from waituntil.core.errors import ColumnMissing, FingerprintUnavailable, SourceUnavailable
from waituntil.core.list_order import Position
from waituntil.core.settings import SUPABASE_MAX_ROWS
from waituntil.core.table_policy import TablePolicy

if TYPE_CHECKING:
    from supabase import Client

# Range counts asked at once (the reconciler's bisection asks a level of the tree together).
COUNT_WORKERS = 8
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
        self._clients: dict[str, Client] = {}
        # What this source has asked of Supabase (the reconciler's cost goals are in these
        # terms; the counters are shared by the threads that count ranges in parallel).
        self.rows_read = 0
        self.requests = 0
        self._counting = threading.Lock()

    def _query(self, table: str, select: str | None = None, **options: Any) -> Any:
        """A query on ``table`` as its policy says: whose key, which columns, which rows."""
        policy = self._policies[table]
        query = self._client(policy.role).table(table).select(select or policy.select, **options)
        for column, condition in policy.filters():
            # filter() writes "column=operator.criteria": splitting the condition at its first
            # dot and letting it join them again passes it on exactly as written (or=(...) too).
            operator, _, criteria = condition.partition(".")
            query = query.filter(column, operator, criteria)
        return query

    def _client(self, role: str) -> Client:
        if role not in self._clients:
            self._clients[role] = self._connect(self._keys[role]())
        return self._clients[role]

    def _connect(self, key: str) -> Client:
        # supabase-py's default HTTP timeout is 120 s, far beyond what a batch can wait, and
        # its postgrest_client_timeout option truncates to whole seconds (0.5 becomes 0): an
        # httpx client of our own keeps the timeout exact. supabase-py itself retries GETs
        # that fail with 503/520 or a network error (3 times, 1-2-4 s apart).
        options = ClientOptions(
            schema=self._schema,
            httpx_client=httpx.Client(timeout=httpx.Timeout(self._timeout_s)),
            postgrest_client_retry=self._retry,
        )
        return create_client(self._url, key, options=options)

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

    def count_rows(self, table: str, ranges: Sequence[PositionRange]) -> list[int]:
        """``HEAD`` with ``Prefer: count=exact`` per range: Supabase answers ``Content-Range:
        */N`` and no rows; Postgres counts a range through the key's (or the order's) index.
        Several ranges are asked in parallel (a few connections: the round trip dominates)."""
        if len(ranges) <= 1:
            return [self._count(table, bounds) for bounds in ranges]
        with ThreadPoolExecutor(max_workers=COUNT_WORKERS, thread_name_prefix="count") as pool:
            return list(pool.map(lambda bounds: self._count(table, bounds), ranges))

    def _count(self, table: str, bounds: PositionRange) -> int:
        policy = self._policies[table]
        query = _with_params(
            self._query(table, select=policy.key, count="exact", head=True),
            range_params(policy.list_order, bounds),
        )
        response = self._send(table, query)
        if response.count is None:
            raise SourceUnavailable(f"Supabase answered no count for {table}")
        return int(response.count)

    def positions_in_range(self, table: str, bounds: PositionRange, limit: int) -> list[Position]:
        policy = self._policies[table]
        order = policy.list_order
        columns = ",".join(dict.fromkeys([policy.key, order.column or policy.key]))
        query = _with_params(self._query(table, select=columns), range_params(order, bounds))
        query.request.params = query.request.params.set("order", order_param(order))
        rows = self._execute(table, query.limit(min(limit, self._max_rows)))
        return [order.position(row) for row in rows]

    def changed_since(
        self,
        table: str,
        column: str,
        since: str,
        before: str,
        after: ChangeMark | None,
        limit: int,
    ) -> list[ChangeMark]:
        key = self._policies[table].key
        query = _with_params(
            self._query(table, select=f"{key},{column}"),
            scan_params(key, column, since, before, after),
        )
        query.request.params = query.request.params.set("order", f"{column}.asc,{key}.asc")
        rows = self._execute(table, query.limit(min(limit, self._max_rows)))
        return [ChangeMark(changed=str(row[column]), key=row[key]) for row in rows]

    def fingerprint_ranges(
        self, table: str, ranges: Sequence[PositionRange], *, with_rows: bool = False
    ) -> list[RangePrint]:
        """``POST /rpc/waituntil_fingerprint`` per range (the migration's SQL function), with
        the policy's role: Row Level Security applies to it as to any read."""
        if len(ranges) <= 1:
            return [self._fingerprint(table, bounds, with_rows) for bounds in ranges]
        with ThreadPoolExecutor(max_workers=COUNT_WORKERS, thread_name_prefix="print") as pool:
            return list(pool.map(lambda b: self._fingerprint(table, b, with_rows), ranges))

    def _fingerprint(self, table: str, bounds: PositionRange, with_rows: bool) -> RangePrint:
        policy = self._policies[table]
        order = policy.list_order
        arguments = {
            "table_name": table,
            "key_column": policy.key,
            "columns": policy.fingerprint_columns,
            "order_column": order.column,
            "descending": order.descending,
            "lower_bound": list(bounds.lower) if bounds.lower is not None else None,
            "upper_bound": list(bounds.upper) if bounds.upper is not None else None,
            "with_rows": with_rows,
        }
        query = self._client(policy.role).rpc(FINGERPRINT_FUNCTION, arguments)
        try:
            answer = self._send(table, query).data
        except SourceUnavailable as error:
            cause = error.__cause__
            if isinstance(cause, APIError) and cause.code in NO_FUNCTION:
                raise FingerprintUnavailable(
                    f"{FINGERPRINT_FUNCTION} is not installed in the project "
                    "(supabase/migrations): counts only"
                ) from error
            raise
        rows = answer.get("rows")
        with self._counting:
            self.rows_read += len(rows or [])
        return RangePrint(
            count=int(answer["count"]),
            fingerprint=int(answer["fingerprint"]),
            rows={str(key): int(value) for key, value in rows} if rows is not None else None,
        )

    def _execute(self, table: str, query: Any) -> list[Row]:
        rows = cast(list[Row], self._send(table, query).data)
        with self._counting:
            self.rows_read += len(rows)
        return rows

    def _send(self, table: str, query: Any) -> Any:
        with self._counting:
            self.requests += 1
        try:
            return query.execute()
        except APIError as error:
            if error.code == UNDEFINED_COLUMN:
                raise ColumnMissing(f"{table}: {error.message}") from error
            raise SourceUnavailable(f"reading {table} from Supabase failed: {error}") from error
        except (httpx.HTTPError, ValueError) as error:
            raise SourceUnavailable(f"reading {table} from Supabase failed: {error}") from error


# Postgres's SQLSTATE for a column the table does not have.
UNDEFINED_COLUMN = "42703"
FINGERPRINT_FUNCTION = "waituntil_fingerprint"
# PostgREST's "function not found" (PGRST202), and Postgres's (42883) behind it.
NO_FUNCTION = ("PGRST202", "42883")


def _with_params(query: Any, params: Sequence[Param]) -> Any:
    for name, value in params:
        query.request.params = query.request.params.add(name, value)
    return query


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
