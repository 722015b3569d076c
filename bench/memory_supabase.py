"""A Supabase table answered in process: the benchmarks' stand-in for PostgREST.

The consumer's real ``SupabaseSource`` (postgrest-py over httpx) builds and sends
its requests and parses the answers; only the server is replaced, by an ``httpx`` transport
that answers the reads the consumer makes: ``select``, ``<key>=in.(...)``, ``<key>=gt.<n>``,
``<key>=eq.<n>``, ``order=<key>.asc``, ``limit`` and ``offset``. Anything else is answered
``400`` with PostgREST's error shape, so a read the benchmark does not understand fails the
run rather than being answered wrongly.

Why not the local Supabase (PostgreSQL behind ``local/supabase``): a million rows would have
to be inserted first (minutes), and PostgreSQL's CPU would share this machine's two cores with
the consumer being measured. Here the table is integer keys ``1..rows`` (minus deleted ones)
and rows are made from a key when read, so a million-row table costs no memory: a row is about
1 KB of JSON like ``bench.scale.article`` (title, revision, and a body of random words taken from a
pool of ``POOL_SIZE``, so that consecutive rows differ as real text does).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Mapping
from functools import partial
from typing import Any
from unittest import mock

import httpx

from waituntil.adapters.supabase_source import ApiKey, SupabaseSource
from waituntil.core.table_policy import TablePolicy

POOL_SIZE = 2048
_HttpxClient = httpx.Client


def _pool(size: int) -> list[str]:
    from bench.scale import article

    return [json.dumps(article(index)["body"]) for index in range(size)]


class SourceTable:
    """One table of integer keys ``1..rows``; ``commit`` changes rows as a transaction would."""

    def __init__(
        self, rows: int, name: str = "articles", key: str = "id", pool_size: int = POOL_SIZE
    ) -> None:
        self.name = name
        self.key = key
        self.rows = rows
        self._pool = _pool(pool_size)
        self._revisions: dict[int, int] = {}
        self._deleted: set[int] = set()
        self._lock = threading.Lock()
        self.requests = 0
        self.rows_served = 0

    def row_text(self, key: int) -> str:
        revision = self._revisions.get(key, 0)
        return (
            f'{{"{self.key}":{key},"title":"Article {key}","revision":{revision},'
            f'"body":{self._pool[key % len(self._pool)]}}}'
        )

    def row(self, key: int) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.row_text(key))
        return parsed

    def exists(self, key: int) -> bool:
        return 1 <= key <= self.rows and key not in self._deleted

    def update(self, key: int) -> dict[str, Any]:
        """A committed UPDATE of ``key`` (a new revision); the row as it is now."""
        with self._lock:
            self._revisions[key] = self._revisions.get(key, 0) + 1
        return self.row(key)

    def insert(self) -> dict[str, Any]:
        with self._lock:
            self.rows += 1
            key = self.rows
        return self.row(key)

    def delete(self, key: int) -> None:
        with self._lock:
            self._deleted.add(key)

    # ----- PostgREST -------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests += 1
        table = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if request.method != "GET" or table != self.name:
            return _error(404, f"{request.method} {request.url.path} is not served here")
        try:
            keys, columns = self._query(request.url.params)
        except ValueError as error:
            return _error(400, str(error))
        texts = [self._projected(key, columns) for key in keys]
        with self._lock:
            self.rows_served += len(texts)
        body = ("[" + ",".join(texts) + "]").encode()
        last = f"0-{len(texts) - 1}/*" if texts else "*/*"
        headers = {"Content-Type": "application/json; charset=utf-8", "Content-Range": last}
        return httpx.Response(200, headers=headers, content=body)

    def _query(self, params: httpx.QueryParams) -> tuple[list[int], list[str] | None]:
        select = params.get("select", "*")
        columns = None if select == "*" else [c.strip() for c in select.split(",")]
        limit = int(params.get("limit", "1000000000"))
        offset = int(params.get("offset", "0"))
        order = params.get("order", f"{self.key}.asc")
        if order not in (self.key, f"{self.key}.asc"):
            raise ValueError(f"order={order} is not supported here")
        known = {"select", "limit", "offset", "order", self.key}
        unknown = set(params.keys()) - known
        if unknown:
            raise ValueError(f"filters on {sorted(unknown)} are not supported here")
        candidates: list[int] | None = None
        after = 0
        for condition in params.get_list(self.key):
            operator, _, value = condition.partition(".")
            if operator == "in":
                inner = value.removeprefix("(").removesuffix(")")
                wanted = {int(part.strip().strip('"')) for part in inner.split(",") if part}
                candidates = sorted(wanted if candidates is None else wanted & set(candidates))
            elif operator == "eq":
                wanted = {int(value)}
                candidates = sorted(wanted if candidates is None else wanted & set(candidates))
            elif operator == "gt":
                after = max(after, int(value))
            else:
                raise ValueError(f"{self.key}={condition} is not supported here")
        with self._lock:
            if candidates is None:
                keys = self._range(after, offset + limit)
            else:
                keys = [key for key in candidates if key > after and self.exists(key)]
        return keys[offset : offset + limit], columns

    def _range(self, after: int, count: int) -> list[int]:
        keys: list[int] = []
        key = after + 1
        while len(keys) < count and key <= self.rows:
            if key not in self._deleted:
                keys.append(key)
            key += 1
        return keys

    def _projected(self, key: int, columns: list[str] | None) -> str:
        if columns is None:
            return self.row_text(key)
        row = self.row(key)
        return json.dumps({name: row.get(name) for name in columns}, separators=(",", ":"))


def _error(status: int, message: str) -> httpx.Response:
    body = {"code": "PGRST100", "message": message, "details": None, "hint": None}
    return httpx.Response(status, json=body)


class BenchSupabaseSource(SupabaseSource):
    """The consumer's ``SupabaseSource``, unchanged, whose httpx client sends through
    ``transport`` (the latency shim over the table above) instead of the network."""

    def __init__(
        self,
        transport: httpx.BaseTransport,
        policies: Mapping[str, TablePolicy],
        keys: Mapping[str, ApiKey] | None = None,
        **options: Any,
    ) -> None:
        """``keys``: the adapter's key getters (the consumer's, reading Secrets Manager);
        by default constant keys, JWTs with the role claim the consumer checks (unsigned: never
        sent anywhere)."""
        keys = keys or {"anon": _constant_key("anon"), "service": _constant_key("service_role")}
        super().__init__("http://supabase.bench", keys, policies, **options)
        self._transport = transport

    def _connect(self, key: str) -> Any:
        # Whatever client the adapter builds, it builds through httpx.Client (the module's,
        # which the adapter imports): give that one our transport, and leave the rest as is.
        client = partial(_HttpxClient, transport=self._transport)
        with _PATCHING, mock.patch.object(httpx, "Client", client):
            return super()._connect(key)


# The patch is of the httpx module itself: one connecting source at a time.
_PATCHING = threading.Lock()


def bench_key(role: str) -> str:
    """A key shaped as Supabase's legacy JWT keys, with the ``role`` claim the consumer checks;
    unsigned, as the memory table never verifies it."""
    claims = base64.urlsafe_b64encode(json.dumps({"role": role}).encode()).decode().rstrip("=")
    return f"e30.{claims}.bench"


def _constant_key(role: str) -> ApiKey:
    key = bench_key(role)

    def get(*, fresh: bool = False) -> str:
        return key

    return get
