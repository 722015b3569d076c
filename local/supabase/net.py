"""pg_net's background worker for the local database: it sends what the webhook triggers queued.

As pg_net does: a request reaches ``net.http_request_queue`` inside the writing transaction
(rolled back: nothing to send); the worker wakes on commit (``pg_notify`` from ``net.http_post``),
takes up to 200 requests out of the queue, sends them concurrently (so in no particular order)
with each one's timeout, once, without retrying, and records every answer, failure or timeout in
``net._http_response``, where answers older than six hours are deleted.

Local knobs: ``max_jitter_s`` delays each request by a random time (arrival order shuffled
further); ``drop_rate`` fails that share of requests without sending them, recorded as a
connection failure (what the heal, a periodic resync, is for; ``make dev DROP_WEBHOOKS=0.1``).
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg

USER_AGENT = "pg_net/0.19.5"
BATCH_SIZE = 200  # pg_net.batch_size
TTL = "6 hours"  # pg_net.ttl
DROPPED = "Couldn't connect to server (dropped by the local stack's drop rate)"
_TAKE = """with rows as (select id from net.http_request_queue order by id limit %s)
           delete from net.http_request_queue q using rows where q.id = rows.id
           returning q.id, q.url, q.headers, q.body, q.timeout_milliseconds"""


@dataclass(frozen=True)
class WebhookDelivery:
    """One request as sent (a row of ``net._http_response``, plus what the tests check)."""

    id: int
    url: str
    body: str  # as PostgreSQL rendered it
    status_code: int | None
    error: str | None
    timed_out: bool
    elapsed_s: float

    @property
    def payload(self) -> Any:
        return json.loads(self.body)

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Dispatcher:
    """The worker for one database (``conninfo``: a superuser, as pg_net's worker runs)."""

    def __init__(
        self,
        conninfo: str,
        *,
        max_jitter_s: float = 0.0,
        drop_rate: float = 0.0,
        max_workers: int = 8,
    ) -> None:
        if not 0.0 <= drop_rate <= 1.0:
            raise ValueError("drop_rate is a share of deliveries: 0 to 1")
        self.max_jitter_s, self.drop_rate = max_jitter_s, drop_rate
        self._conninfo, self._max_workers = conninfo, max_workers
        self._lock = threading.Condition()
        self._log: list[WebhookDelivery] = []
        self._in_flight = 0
        self._stopping = threading.Event()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._listener = psycopg.connect(self._conninfo, autocommit=True)
        self._listener.execute("listen pg_net")
        self._admin = psycopg.connect(self._conninfo, autocommit=True)
        self._executor = ThreadPoolExecutor(self._max_workers, thread_name_prefix="pg_net")
        self._thread = threading.Thread(target=self._run, name="pg_net", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop taking requests (queued ones stay queued), finish those being sent."""
        if self._thread is None:
            return
        self._stopping.set()
        with self._lock:
            self._admin.execute("select pg_notify('pg_net', '')")  # wake the worker now
        self._thread.join(timeout=10)
        self._executor.shutdown(wait=True)
        self._listener.close()
        self._admin.close()
        self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with self._lock:
                    self._admin.execute(
                        "delete from net._http_response where created < now() - %s::interval", [TTL]
                    )
                    requests = self._admin.execute(_TAKE, [BATCH_SIZE]).fetchall()
                    self._in_flight += len(requests)
                for request in requests:
                    self._executor.submit(self._send, *request)
                if len(requests) < BATCH_SIZE:
                    for _ in self._listener.notifies(timeout=1.0, stop_after=1):
                        pass
            except psycopg.Error:
                if not self._stopping.is_set():
                    raise

    def _send(
        self, request_id: int, url: str, headers: dict[str, str], body: bytes, timeout_ms: int
    ) -> None:
        started = time.monotonic()
        status, error, timed_out, content, content_type = None, None, False, None, None
        if self.max_jitter_s:
            self._stopping.wait(random.uniform(0, self.max_jitter_s))
        if random.random() < self.drop_rate:
            error = DROPPED
        else:
            request = urllib.request.Request(  # noqa: S310 (the trigger's URL, http or https)
                url, data=body, method="POST", headers={**(headers or {}), "User-Agent": USER_AGENT}
            )
            try:
                with self._opener.open(request, timeout=timeout_ms / 1000) as response:
                    status, content_type = response.status, response.headers.get("Content-Type")
                    content = response.read().decode("utf-8", "replace")
            except urllib.error.HTTPError as failed:
                status, content_type = failed.code, failed.headers.get("Content-Type")
                content = failed.read().decode("utf-8", "replace")
            except TimeoutError:
                timed_out, error = True, f"Timeout of {timeout_ms} ms reached"
            except (OSError, ValueError) as failed:
                reason = getattr(failed, "reason", failed)
                refused = isinstance(reason, ConnectionRefusedError)
                timed_out = isinstance(reason, TimeoutError)
                error = (
                    "Couldn't connect to server"
                    if refused
                    else f"Timeout of {timeout_ms} ms reached"
                    if timed_out
                    else str(reason)
                )
        delivery = WebhookDelivery(
            request_id,
            url,
            bytes(body).decode(),
            status,
            error,
            timed_out,
            round(time.monotonic() - started, 6),
        )
        with self._lock:
            try:
                self._admin.execute(
                    "insert into net._http_response (id, status_code, content_type, content, timed_out,"
                    " error_msg) values (%s, %s, %s, %s, %s, %s)",
                    [request_id, status, content_type, content, timed_out, error],
                )
            finally:
                self._log.append(delivery)
                self._in_flight -= 1
                self._lock.notify_all()

    @property
    def log(self) -> list[WebhookDelivery]:
        """Every request sent (or dropped) so far, in the order they finished."""
        with self._lock:
            return list(self._log)

    def wait(self, timeout_s: float = 10.0) -> bool:
        """Until the queue is empty and nothing is being sent; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                queued = self._admin.execute(
                    "select exists (select from net.http_request_queue)"
                ).fetchone()
                if self._in_flight == 0 and queued is not None and not queued[0]:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.02))
