"""Reads Supabase (the source of truth) over its REST API: touched keys, a table by pages, and
the reconciler's range counts, change scans and fingerprints.

With postgrest-py, the REST client inside supabase-py, used directly: the consumer reads
tables and nothing else, and ``import supabase`` also loads its auth, storage, realtime and
functions clients (cryptography, websockets...): about 0.1 s more of every consumer cold start
(docs/SCALE.md, "Cold start"). The requests are the ones ``supabase.create_client(url,
key).table(name)`` sends: ``<url>/rest/v1``, the key as ``apiKey`` and as the bearer token.
Imported by the consumer only: the receiver's and the reader's cold starts do not pay for it.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from operator import methodcaller
from typing import Any, Protocol, cast

import httpx

# postgrest-py, not ``supabase``: the layer installs the whole Supabase SDK (requirements/
# layer.in pins supabase and the postgrest it requires), but ``import supabase`` also loads its
# auth, storage, realtime and functions clients (cryptography, websockets...) that the consumer
# never calls: measured in docs/SCALE.md, "Cold start". Likewise boto3: in Lambda's runtime
# anyway and in requirements/dev.in for the tests and ops, but the layer makes botocore's
# clients itself (adapters/aws.py).
from postgrest import SyncPostgrestClient
from postgrest.exceptions import APIError

from waituntil.adapters.postgrest_ranges import (
    Param,
    order_param,
    range_params,
    scan_params,
)
from waituntil.cache.model import ChangeMark, PositionRange, RangePrint
from waituntil.core.contracts import Row
from waituntil.core.errors import (
    ColumnMissing,
    FingerprintUnavailable,
    SourceUnavailable,
    SupabaseKeyRefused,
    WrongKeyRole,
)
from waituntil.core.list_order import Position
from waituntil.core.settings import SUPABASE_MAX_ROWS
from waituntil.core.table_policy import TablePolicy
from waituntil.core.whole_reads import read_whole

# Range counts asked at once (the reconciler's bisection asks a level of the tree together).
COUNT_WORKERS = 8
# Characters of one ``in.(...)`` list: with the rest of the URL, far below the 8 KB that
# common proxies accept for a request line, even after percent-encoding.
MAX_KEYS_CHARS = 3000
# Supabase's newer keys are not JWTs: publishable keys succeed the anon key, secret keys the
# service_role key.
PUBLISHABLE_KEY_PREFIX = "sb_publishable_"
SECRET_KEY_PREFIX = "sb_secret_"  # noqa: S105 - a key's prefix, not a key


class ApiKey(Protocol):
    """The API key of one role, read by secret name (``adapters.secrets.SecretReader``):
    cached for ``SECRET_MAX_AGE_SECONDS``; ``fresh`` reads the secret again now."""

    def __call__(self, *, fresh: bool = False) -> str: ...


class SupabaseSource:
    """Keyset-paginated reads: Supabase silently truncates any single read at 1000 rows."""

    def __init__(
        self,
        url: str,
        keys: Mapping[str, ApiKey],
        policies: Mapping[str, TablePolicy],
        *,
        schema_name: str = "public",
        timeout_s: float = 8.0,
        retry: bool = True,
        max_rows: int = SUPABASE_MAX_ROWS,
    ) -> None:
        """``keys``: the API key of each role (``anon``, ``service``) a policy names; each
        table is read with the key of its policy's role. ``max_rows``: the most rows the
        project answers to one read (its max-rows setting, which the consumer's
        ``SUPABASE_PAGE_SIZE`` declares); no read here ever asks for more."""
        self._url = url
        self._keys = keys
        self._policies = policies
        self._schema = schema_name
        self._timeout_s = timeout_s
        self._retry = retry
        self._max_rows = max_rows
        self._clients: dict[str, _Connection] = {}
        self._refused: set[str] = set()  # roles whose key Supabase refused: read it fresh
        # The reconciler's range counts run on a few threads: clients are made under a lock.
        self._connecting = threading.Lock()
        # What this source has asked of Supabase (the reconciler's cost goals are in these
        # terms; the counters are shared by the threads that count ranges in parallel).
        self.rows_read = 0
        self.requests = 0
        self._counting = threading.Lock()

    def _query(self, table: str, select: str | None = None, **options: Any) -> Any:
        """A query on ``table`` as its policy says: whose key, which columns, which rows."""
        policy = self._policies[table]
        query = self._client(policy.role).from_(table).select(select or policy.select, **options)
        for column, condition in policy.filters():
            # filter() writes "column=operator.criteria": splitting the condition at its first
            # dot and letting it join them again passes it on exactly as written (or=(...) too).
            operator, _, criteria = condition.partition(".")
            query = query.filter(column, operator, criteria)
        return query

    def _client(self, role: str) -> SyncPostgrestClient:
        """The client of ``role``'s current key. The key is asked for on every read (the
        secret reader serves it from its cache until ``SECRET_MAX_AGE_SECONDS``), so a warm
        container follows a corrected or rotated secret; a new key gets a new client, after
        its role is checked. After Supabase refused the key, the secret is read again now."""
        with self._connecting:
            return self._client_of(role)

    def _client_of(self, role: str) -> SyncPostgrestClient:
        fresh = role in self._refused
        key = self._keys[role](fresh=fresh)
        self._refused.discard(role)
        connection = self._clients.get(role)
        if connection is not None and connection.key == key:
            return connection.client
        try:
            check_key_role(role, key)
        except WrongKeyRole:
            self._refused.add(role)  # read the secret again next time: it may be corrected
            raise
        if connection is not None:
            connection.http.close()
        self._clients[role] = self._connect(key)
        return self._clients[role].client

    def _connect(self, key: str) -> _Connection:
        # supabase-py's default HTTP timeout is 120 s, far beyond what a batch can wait: an
        # httpx client of our own keeps the timeout short and exact. postgrest-py itself
        # retries GETs that fail with 503/520 or a network error (3 times, 1-2-4 s apart).
        http = httpx.Client(
            timeout=httpx.Timeout(self._timeout_s), event_hooks={"response": [_refuse_401]}
        )
        client = SyncPostgrestClient(
            f"{self._url.rstrip('/')}/rest/v1",
            schema=self._schema,
            headers={"apiKey": key, "Authorization": f"Bearer {key}"},
            http_client=http,
            retry_enabled=self._retry,
        )
        return _Connection(key=key, client=client, http=http)

    def read_rows(self, table: str, keys: Sequence[str]) -> list[Row]:
        """The rows whose primary key is one of ``keys``: ``pk=in.(...)``, in groups that keep
        each URL short (PostgREST sits behind proxies that refuse long request lines). A key
        an answer left out is asked again (``core.whole_reads``): a read cut short by the
        project's max-rows never makes a live row look deleted."""
        return list(self._read_keys(table, keys).values())

    def existing_keys(self, table: str, keys: Sequence[str]) -> set[str]:
        """The ``keys`` Supabase still has (the key column only), made whole as above."""
        return set(self._read_keys(table, keys, select=self._policies[table].key))

    def _read_keys(
        self, table: str, keys: Sequence[str], select: str | None = None
    ) -> dict[str, Row]:
        key = self._policies[table].key

        def ask(missing: list[str]) -> dict[str, Row]:
            found: dict[str, Row] = {}
            for group in key_groups(missing, max_keys=self._max_rows):
                rows = self._execute(table, methodcaller("in_", key, group), select)
                found.update({str(row[key]): row for row in rows})
            return found

        return read_whole(ask, keys)

    def read_page(self, table: str, after: Any, limit: int) -> list[Row]:
        """Up to ``limit`` rows with key > ``after``, by key.

        Keyset pagination (``pk > last``) rather than offsets: rows inserted or deleted while
        we page cannot shift a page boundary and make us skip or repeat rows. ``limit`` must
        not exceed the project's max-rows setting (1000 by default), or pages are truncated.
        """
        key = self._policies[table].key

        def page(query: Any) -> Any:
            query = query.order(key).limit(limit)
            return query if after is None else query.gt(key, after)

        return self._execute(table, page)

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
        response = self._send(
            table,
            lambda: _with_params(
                self._query(table, select=policy.key, count="exact", head=True),
                range_params(policy.list_order, bounds),
            ),
        )
        if response.count is None:
            raise SourceUnavailable(f"Supabase answered no count for {table}")
        return int(response.count)

    def positions_in_range(self, table: str, bounds: PositionRange, limit: int) -> list[Position]:
        policy = self._policies[table]
        order = policy.list_order
        columns = ",".join(dict.fromkeys([policy.key, order.column or policy.key]))

        def in_range(query: Any) -> Any:
            query = _with_params(query, range_params(order, bounds))
            query.request.params = query.request.params.set("order", order_param(order))
            return query.limit(min(limit, self._max_rows))

        rows = self._execute(table, in_range, columns)
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
        policy = self._policies[table]
        key, order = policy.key, policy.list_order

        def scan(query: Any) -> Any:
            query = _with_params(query, scan_params(key, column, since, before, after))
            query.request.params = query.request.params.set("order", f"{column}.asc,{key}.asc")
            return query.limit(min(limit, self._max_rows))

        columns = ",".join(dict.fromkeys([key, column, order.column or key]))
        rows = self._execute(table, scan, columns)
        return [
            ChangeMark(changed=str(row[column]), key=row[key], position=order.position(row))
            for row in rows
        ]

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
        # postgrest-py sends ``params`` as the JSON body of the POST, whatever its values; its
        # annotation (``dict[str, str]``) only fits a GET's query string.
        params = cast(dict[str, str], arguments)
        try:
            answer = self._send(
                table, lambda: self._client(policy.role).rpc(FINGERPRINT_FUNCTION, params)
            ).data
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

    def _execute(
        self, table: str, shape: Callable[[Any], Any], select: str | None = None
    ) -> list[Row]:
        """The rows of ``shape`` applied to the table's query (its policy's columns, or
        ``select``)."""
        rows = cast(list[Row], self._send(table, lambda: shape(self._query(table, select))).data)
        with self._counting:
            self.rows_read += len(rows)
        return rows

    def _send(self, table: str, build: Callable[[], Any]) -> Any:
        """Send the request ``build`` makes. A 401 (the key revoked or rotated) reads the key's
        secret again and builds the request once more with a new client, before failing."""
        role = self._policies[table].role
        for attempt in (1, 2):
            with self._counting:
                self.requests += 1
            try:
                return build().execute()
            except _KeyRefused as error:
                with self._connecting:
                    self._refused.add(role)
                if attempt == 1:
                    continue
                raise SupabaseKeyRefused(
                    f"Supabase refused the {role} key reading {table} ({error}), also just "
                    "after reading its secret again"
                ) from error
            except APIError as error:
                if error.code == UNDEFINED_COLUMN:
                    raise ColumnMissing(f"{table}: {error.message}") from error
                raise SourceUnavailable(f"reading {table} from Supabase failed: {error}") from error
            except (httpx.HTTPError, ValueError) as error:
                raise SourceUnavailable(f"reading {table} from Supabase failed: {error}") from error
        raise AssertionError("unreachable: the second attempt returns or raises")


# Postgres's SQLSTATE for a column the table does not have.
UNDEFINED_COLUMN = "42703"
FINGERPRINT_FUNCTION = "waituntil_fingerprint"
# PostgREST's "function not found" (PGRST202), and Postgres's (42883) behind it.
NO_FUNCTION = ("PGRST202", "42883")


def _with_params(query: Any, params: Sequence[Param]) -> Any:
    for name, value in params:
        query.request.params = query.request.params.add(name, value)
    return query


def check_key_role(role: str, key: str) -> None:
    """Refuse a key for the ``anon`` role that is not an anon key, before any read with it.

    The anon role is the public's view: a service-role key put in its secret by mistake would
    read what Row Level Security hides and the cache would serve it to anyone. The claim is
    read, not verified: this guards against a mistake, and Supabase checks the signature.
    """
    if role != "anon":
        return
    claimed = key_role(key)
    if claimed != "anon":
        raise WrongKeyRole(
            "the anon role's secret holds "
            + (f"a {claimed} key" if claimed else "no anon key")
            + ": nothing is read with it, so nothing Row Level Security hides gets cached; "
            "store the project's anon (or publishable) key in SUPABASE_ANON_KEY_SECRET_NAME"
        )


def key_role(key: str) -> str | None:
    """The role a Supabase API key is for: the ``role`` claim of a legacy JWT key (unverified),
    or what the prefix of a newer key says (``sb_publishable_``: anon, ``sb_secret_``:
    service_role); None when it says nothing."""
    if key.startswith(PUBLISHABLE_KEY_PREFIX):
        return "anon"
    if key.startswith(SECRET_KEY_PREFIX):
        return "service_role"
    parts = key.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:  # binascii.Error and JSONDecodeError are ValueErrors
        return None
    role = claims.get("role") if isinstance(claims, dict) else None
    return role if isinstance(role, str) and role else None


@dataclass(frozen=True)
class _Connection:
    key: str
    client: SyncPostgrestClient
    http: httpx.Client


class _KeyRefused(Exception):
    """Supabase answered 401: the key is wrong, revoked or rotated (the answer's message)."""


def _refuse_401(response: httpx.Response) -> None:
    # httpx's response hook: a 401 ends the request before postgrest-py reads it as an
    # APIError whose code need not say 401 (the gateway's body carries none).
    if response.status_code == 401:
        response.read()
        try:
            answer = response.json()
        except ValueError:
            answer = None
        message = answer.get("message") if isinstance(answer, dict) else None
        raise _KeyRefused(str(message or "401"))


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
