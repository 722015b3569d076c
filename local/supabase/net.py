"""pg_net's background worker for the local database, with pg_net's semantics: a trigger's
request enters ``net.http_request_queue`` in the writing transaction (rolled back: nothing to
send); the worker wakes on commit, takes up to 200, sends them concurrently (no set order), each
once with its timeout and no retry, and records every outcome in ``net._http_response`` (kept 6
hours). Knobs: ``max_jitter_s`` (random delay), ``drop_rate`` (that share fails unsent, as lost
webhooks do; ``make dev DROP_WEBHOOKS=0.1``).
"""

from __future__ import annotations

import json
import logging
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
BATCH_SIZE, TTL = 200, "6 hours"  # pg_net.batch_size, pg_net.ttl
DROPPED = "Couldn't connect to server (dropped by the local stack's drop rate)"
_TAKE = """with rows as (select id from net.http_request_queue order by id limit %s)
           delete from net.http_request_queue q using rows where q.id = rows.id
           returning q.id, q.url, q.headers, q.body, q.timeout_milliseconds"""
_EXPIRE = "delete from net._http_response where created < now() - %s::interval"
_RECORD = """insert into net._http_response (id, status_code, content_type, content, timed_out,
             error_msg) values (%s, %s, %s, %s, %s, %s)"""
log = logging.getLogger("local.supabase.net")


@dataclass(frozen=True)
class WebhookDelivery:
    """One request as sent: its row of ``net._http_response``, and its body."""

    id: int
    body: str  # as PostgreSQL rendered it
    status_code: int | None
    error: str | None
    timed_out: bool
    elapsed_s: float

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


class Dispatcher:
    """The worker of one database (``conninfo``: its owner, as pg_net's worker connects)."""

    def __init__(self, conninfo: str, *, max_jitter_s: float = 0.0, drop_rate: float = 0.0) -> None:
        if not 0.0 <= drop_rate <= 1.0:
            raise ValueError("drop_rate is a share of deliveries: 0 to 1")
        self.conninfo, self.max_jitter_s, self.drop_rate = conninfo, max_jitter_s, drop_rate
        self._lock = threading.Condition()
        self._log: list[WebhookDelivery] = []
        self._in_flight = 0
        self._stopping = threading.Event()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._listener = psycopg.connect(self.conninfo, autocommit=True)
        self._listener.execute("listen pg_net")
        self._db = psycopg.connect(self.conninfo, autocommit=True)
        self._senders = ThreadPoolExecutor(8, thread_name_prefix="pg_net")
        self._thread = threading.Thread(target=self._run, name="pg_net", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop taking requests (queued ones stay queued); finish those being sent."""
        if self._thread is None:
            return
        self._stopping.set()
        with self._lock:
            self._db.execute("select pg_notify('pg_net', '')")  # wake the worker now
        self._thread.join(timeout=10)
        self._senders.shutdown(wait=True)
        self._listener.close()
        self._db.close()
        self._thread = None

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                with self._lock:
                    self._db.execute(_EXPIRE, [TTL])
                    requests = self._db.execute(_TAKE, [BATCH_SIZE]).fetchall()
                    self._in_flight += len(requests)
                for request in requests:
                    self._senders.submit(self._send, *request)
                if len(requests) < BATCH_SIZE:  # else more are queued: take them at once
                    for _ in self._listener.notifies(timeout=1.0, stop_after=1):
                        pass
        except psycopg.Error:
            if not self._stopping.is_set():
                log.exception("the pg_net worker stopped")

    def _send(self, request_id: int, url: str, headers: Any, body: bytes, timeout_ms: int) -> None:
        started = time.monotonic()
        status, error, content, content_type = None, None, None, None
        self._stopping.wait(random.uniform(0, self.max_jitter_s))
        timeout = f"Timeout of {timeout_ms} ms reached"
        if random.random() < self.drop_rate:
            error = DROPPED
        else:
            headers = {**(headers or {}), "User-Agent": USER_AGENT}
            request = urllib.request.Request(url, bytes(body), headers, method="POST")  # noqa: S310
            try:
                with self._opener.open(request, timeout=timeout_ms / 1000) as response:
                    status, content_type = response.status, response.headers["Content-Type"]
                    content = response.read().decode("utf-8", "replace")
            except urllib.error.HTTPError as failed:
                status, content_type = failed.code, failed.headers["Content-Type"]
                content = failed.read().decode("utf-8", "replace")
            except (OSError, ValueError) as failed:  # as curl words them, for these two
                reason = getattr(failed, "reason", failed)
                refused = isinstance(reason, ConnectionRefusedError)
                error = "Couldn't connect to server" if refused else str(reason)
                error = timeout if isinstance(reason, TimeoutError) else error
        timed_out = error == timeout
        elapsed = round(time.monotonic() - started, 6)
        delivery = WebhookDelivery(
            request_id, bytes(body).decode(), status, error, timed_out, elapsed
        )
        with self._lock:
            try:
                self._db.execute(
                    _RECORD, [request_id, status, content_type, content, timed_out, error]
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
        with self._lock:
            while True:
                queued = self._db.execute("select exists (select from net.http_request_queue)")
                if self._in_flight == 0 and queued.fetchone() != (True,):
                    return True
                if time.monotonic() > deadline:
                    return False
                self._lock.wait(0.02)
