"""Database Webhooks as Supabase sends them (``supabase_functions.http_request`` + pg_net).

Supabase's trigger runs AFTER INSERT/UPDATE/DELETE FOR EACH ROW and calls ``net.http_post``,
which only queues the request: pg_net's background worker sends it after the transaction
commits, concurrently with other requests, once, without retrying, and records the outcome in
``net._http_response``. This module does the same: one POST per changed row, sent from a small
thread pool after the write committed, no retry, outcome kept in a log.

Payload (``jsonb_build_object`` in the trigger)::

    {"type": "INSERT"|"UPDATE"|"DELETE", "table": ..., "schema": "public",
     "record": <new row or null>, "old_record": <old row or null>}

Being jsonb, its object keys come out ordered by length then bytes; so are they here.
"""

from __future__ import annotations

import functools
import http.client
import itertools
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from local.supabase_standin.store import Change

USER_AGENT = "pg_net/0.14.0"
DEFAULT_EVENTS = frozenset({"INSERT", "UPDATE", "DELETE"})
_RESPONSE_BODY_LIMIT = 64 * 1024


@dataclass
class WebhookConfig:
    """Where and how to send Database Webhooks (one hook for every configured table).

    ``timeout_s`` is the dashboard's "Timeout" (5000 ms by default there). ``max_jitter_s``
    delays each delivery by a random time in [0, max_jitter_s] to shuffle arrival order in
    tests (pg_net gives no ordering guarantee). ``tables``/``events`` restrict which changes
    fire (None: every table). ``drop_share`` (0-1) of deliveries are lost on purpose, as pg_net
    loses them (a timeout, a 5xx, a restart): logged as "dropped", never sent. Settable while
    running (``make dev DROP_WEBHOOKS=0.1``, the demo's one lost webhook).
    """

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 5.0
    max_jitter_s: float = 0.0
    max_workers: int = 4
    tables: frozenset[str] | None = None
    events: frozenset[str] = DEFAULT_EVENTS
    drop_share: float = 0.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s): {self.url!r}")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.max_jitter_s < 0:
            raise ValueError("max_jitter_s must not be negative")
        if self.max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if not 0 <= self.drop_share <= 1:
            raise ValueError("drop_share must be between 0 and 1")

    def wants(self, table: str, change_type: str) -> bool:
        """Whether a change of this type on this table fires the hook."""
        return change_type in self.events and (self.tables is None or table in self.tables)


@dataclass(frozen=True)
class WebhookDelivery:
    """One delivery attempt, like a row of pg_net's ``net._http_response``.

    ``status_code`` is None when no HTTP answer came; ``error`` then says why: ``"timeout"``,
    ``"connection refused"``, ``"cancelled"`` (the stand-in stopped first) or another text.
    """

    id: int
    type: str
    table: str
    schema: str
    url: str
    status_code: int | None
    error: str | None
    elapsed_s: float
    payload: dict[str, Any]
    response_body: str
    queued_at: float
    finished_at: float

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status_code is not None and 200 <= self.status_code < 300


def jsonb_order(value: Any) -> Any:
    """Reorder object keys as PostgreSQL's jsonb stores them: shorter keys first, then bytes."""
    if isinstance(value, dict):
        return {
            key: jsonb_order(value[key])
            for key in sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        }
    if isinstance(value, list):
        return [jsonb_order(item) for item in value]
    return value


def build_payload(change: Change, schema: str = "public") -> dict[str, Any]:
    """The body ``supabase_functions.http_request()`` posts for one row change."""
    payload = {
        "type": change.type,
        "table": change.table,
        "schema": schema,
        "record": change.new,
        "old_record": change.old,
    }
    ordered: dict[str, Any] = jsonb_order(payload)
    return ordered


def describe_error(exc: BaseException) -> str:
    """A short, stable text for a failed delivery."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        return describe_error(exc.reason)
    return f"{type(exc).__name__}: {exc}"


class WebhookSender:
    """Queues deliveries on a thread pool and logs every outcome."""

    def __init__(self, config: WebhookConfig, schema: str = "public") -> None:
        self.config = config
        self.schema = schema
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._log: list[WebhookDelivery] = []
        self._ids = itertools.count(1)
        self._executor: ThreadPoolExecutor | None = None
        self._futures: set[Future[None]] = set()
        self._stopping = threading.Event()
        self._open = False
        # No proxies: a webhook to 127.0.0.1 must not go through $http_proxy.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Start accepting deliveries (called by the stand-in's start())."""
        with self._lock:
            if self._open:
                return
            self._stopping.clear()
            self._executor = ThreadPoolExecutor(
                max_workers=self.config.max_workers, thread_name_prefix="standin-webhook"
            )
            self._open = True

    def close(self) -> None:
        """Cancel queued deliveries (logged as "cancelled"), wait for those in flight."""
        with self._lock:
            if not self._open:
                return
            self._open = False
            self._stopping.set()
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    # -- sending -----------------------------------------------------------------------------

    def submit(self, changes: Sequence[Change]) -> int:
        """Queue one delivery per change the hook wants; returns how many were queued."""
        queued = 0
        for change in changes:
            if not self.config.wants(change.table, change.type):
                continue
            payload = build_payload(change, self.schema)
            delivery_id = next(self._ids)
            queued_at = time.time()
            with self._lock:
                if not self._open or self._executor is None:
                    self._record(delivery_id, payload, None, "cancelled", 0.0, "", queued_at)
                    continue
                if random.random() < self.config.drop_share:
                    self._record(delivery_id, payload, None, "dropped", 0.0, "", queued_at)
                    continue
                self._pending += 1
                future = self._executor.submit(self._deliver, delivery_id, payload, queued_at)
                self._futures.add(future)
            future.add_done_callback(
                functools.partial(
                    self._done, delivery_id=delivery_id, payload=payload, queued_at=queued_at
                )
            )
            queued += 1
        return queued

    def _done(
        self, future: Future[None], delivery_id: int, payload: dict[str, Any], queued_at: float
    ) -> None:
        with self._lock:
            self._futures.discard(future)
            if future.cancelled():
                self._record(delivery_id, payload, None, "cancelled", 0.0, "", queued_at)
            self._pending -= 1
            if self._pending == 0:
                self._idle.notify_all()

    def _deliver(self, delivery_id: int, payload: dict[str, Any], queued_at: float) -> None:
        config = self.config
        if config.max_jitter_s > 0 and self._stopping.wait(random.uniform(0, config.max_jitter_s)):
            with self._lock:
                self._record(delivery_id, payload, None, "cancelled", 0.0, "", queued_at)
            return
        body = json.dumps(payload, ensure_ascii=False, separators=(", ", ": ")).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        headers.update(config.headers)
        request = urllib.request.Request(config.url, data=body, headers=headers, method="POST")  # noqa: S310 (scheme checked in WebhookConfig)
        status: int | None = None
        error: str | None = None
        text = ""
        started = time.monotonic()
        try:
            with self._opener.open(request, timeout=config.timeout_s) as response:
                status = int(response.status)
                text = response.read(_RESPONSE_BODY_LIMIT).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                text = exc.read(_RESPONSE_BODY_LIMIT).decode("utf-8", "replace")
            except (OSError, http.client.HTTPException):
                text = ""
        except (OSError, http.client.HTTPException) as exc:
            error = describe_error(exc)
        elapsed = time.monotonic() - started
        with self._lock:
            self._record(delivery_id, payload, status, error, elapsed, text, queued_at)

    def _record(
        self,
        delivery_id: int,
        payload: dict[str, Any],
        status: int | None,
        error: str | None,
        elapsed: float,
        text: str,
        queued_at: float,
    ) -> None:
        """Append to the log (caller holds the lock)."""
        self._log.append(
            WebhookDelivery(
                id=delivery_id,
                type=str(payload["type"]),
                table=str(payload["table"]),
                schema=str(payload["schema"]),
                url=self.config.url,
                status_code=status,
                error=error,
                elapsed_s=round(elapsed, 6),
                payload=payload,
                response_body=text,
                queued_at=queued_at,
                finished_at=time.time(),
            )
        )

    # -- observing ---------------------------------------------------------------------------

    @property
    def log(self) -> list[WebhookDelivery]:
        """Every finished delivery attempt, in finishing order (a copy)."""
        with self._lock:
            return list(self._log)

    @property
    def pending(self) -> int:
        """Deliveries queued or in flight."""
        with self._lock:
            return self._pending

    def wait(self, timeout_s: float = 10.0) -> bool:
        """Block until nothing is queued or in flight; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True
