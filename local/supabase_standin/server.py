"""``SupabaseStandIn``: an HTTP server speaking PostgREST at ``/rest/v1`` with Database Webhooks.

``/rest/v1/<table>`` takes the service key (every row) or the anon key (rows its table's
policy shows; see ``policies.py``). Everything else is driven in-process, by the local stack
and the tests: rows (``seed``, ``rows``), faults (``inject_fault``), the request and webhook
logs and the waits for them.

Its PostgREST coverage is what supabase-py sends (``rest.py``, ``query.py``): the consumer's
reads, the demo's and the tests' writes, and whatever a developer's own supabase-py code does
against ``make dev`` (its banner prints the URL and key to use).
"""

from __future__ import annotations

import hmac
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.http_server import ConnectionTrackingServer, HttpResponse, RequestHandler, base_url
from local.supabase_standin.errors import PostgrestError
from local.supabase_standin.keys import make_anon_key, make_service_key
from local.supabase_standin.policies import ANON, SERVICE_ROLE, Role, parse_anon_policies
from local.supabase_standin.query import Row
from local.supabase_standin.rest import (
    Headers,
    RestApi,
    error_response,
    json_response,
)
from local.supabase_standin.store import Change, Store
from local.supabase_standin.webhooks import WebhookConfig, WebhookDelivery, WebhookSender

REST_PREFIX = "/rest/v1"
_LOGGED_HEADERS = ("prefer", "range", "range-unit", "accept", "x-retry-count", "content-type")
_DEFAULT_FAULT_ERRORS = {
    503: ("PGRST001", "Database client error. Retrying the connection."),
    500: ("XX000", "internal error (fault injected by the supabase stand-in)"),
    502: ("502", "An invalid response was received from the upstream server"),
    504: ("504", "The upstream server is timing out"),
    429: ("429", "Too many requests"),
}


@dataclass(frozen=True)
class RequestRecord:
    """One ``/rest/v1`` request as the stand-in answered it."""

    method: str
    path: str
    table: str | None
    query: str
    status: int
    elapsed_s: float
    fault: bool
    headers: dict[str, str]
    at: float
    role: Role | None = None  # whose key was used; None when it was refused


@dataclass
class Fault:
    """An armed fault: the next ``remaining`` matching requests (None: until cleared)."""

    status: int | None
    delay_s: float
    remaining: int | None
    method: str | None
    table: str | None
    code: str | None = None
    message: str | None = None
    dropped: bool = False  # close the connection without answering

    def matches(self, method: str, table: str | None) -> bool:
        """Whether a request is hit by this fault."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.table is None or self.table == table

    def error(self) -> PostgrestError:
        """The PostgREST-style error answered when the fault has a status."""
        assert self.status is not None
        code, message = _DEFAULT_FAULT_ERRORS.get(
            self.status, (str(self.status), f"HTTP {self.status} (fault injected)")
        )
        return PostgrestError(
            self.status,
            self.code if self.code is not None else code,
            self.message if self.message is not None else message,
            "Injected by the supabase stand-in",
        )


class _Server(ConnectionTrackingServer):
    """The stand-in's HTTP server: handler threads are daemons, stop() ends idle connections."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: SupabaseStandIn) -> None:
        self.app = app
        super().__init__(address, _Handler)


class _Handler(RequestHandler):
    server: _Server
    server_version = "supabase-standin"
    timeout = 120  # idle keep-alive connections
    no_length_statuses = frozenset({204, 304})

    def respond(self, body: bytes) -> HttpResponse:
        return self.server.app.handle_http(
            self.command, self.path, Headers(self.headers.items()), body
        )

    def refuse_body(self, too_large: bool) -> HttpResponse:
        return error_response(PostgrestError(400, "PGRST102", "Unreadable request body"))

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: ``request_log`` records every REST request."""


class SupabaseStandIn:
    """A local Supabase: PostgREST subset over SQLite, plus Database Webhooks.

    ``tables`` maps table name to primary-key column. ``columns`` optionally declares further
    columns up front (otherwise a column exists once a row has carried it). ``anon_key``
    (default: a new one) reads under Row Level Security: ``anon_policies`` maps a table to
    the filter its rows must pass (``"published=eq.true"``, or ``"true"`` for all), and a
    table without a policy shows anon no row (see ``policies.py``).
    """

    def __init__(
        self,
        tables: Mapping[str, str],
        data_dir: str | Path | None = None,
        service_key: str | None = None,
        max_rows: int | None = 1000,
        webhook: WebhookConfig | None = None,
        *,
        columns: Mapping[str, Sequence[str]] | None = None,
        schema: str = "public",
        anon_key: str | None = None,
        anon_policies: Mapping[str, str] | None = None,
    ) -> None:
        if not tables:
            raise ValueError("at least one table is needed")
        if max_rows is not None and max_rows < 1:
            raise ValueError("max_rows must be positive (or None for no cap)")
        self.tables = dict(tables)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.max_rows = max_rows
        self.webhook = webhook
        self.schema = schema
        self._declared = {t: list(c) for t, c in (columns or {}).items()}
        unknown = set(self._declared) - set(self.tables)
        if unknown:
            raise ValueError(f"columns given for unknown tables: {sorted(unknown)}")
        self._service_key = service_key or make_service_key()
        self._anon_key = anon_key or make_anon_key()
        if hmac.compare_digest(self._anon_key, self._service_key):
            raise ValueError("the anon key and the service key must differ")
        parsed_policies = parse_anon_policies(anon_policies, self.tables)
        self._store_obj: Store | None = None
        self._store_lock = threading.Lock()
        self._sender = WebhookSender(webhook, schema) if webhook is not None else None
        self._api = RestApi(
            self._store,
            max_rows=max_rows,
            schema=schema,
            on_changes=self._publish,
            anon_policies=parsed_policies,
        )
        self._faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._requests_lock = threading.Lock()
        # REST requests still being answered: a client that timed out has gone, but its request
        # is logged only when the server finishes it (after an injected delay, say).
        self._in_flight = 0
        self._in_flight_done = threading.Condition(self._requests_lock)
        self._lifecycle = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._url: str | None = None
        self._port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def _store(self) -> Store:
        with self._store_lock:
            if self._store_obj is None or self._store_obj.closed:
                store = Store(self.tables, self.data_dir)
                for table, names in self._declared.items():
                    store.declare_columns(table, names)
                self._store_obj = store
            return self._store_obj

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: any free port) in background threads; returns the URL."""
        with self._lifecycle:
            if self._server is not None:
                raise RuntimeError("the stand-in is already running")
            self._store()
            self._stopping.clear()
            server = _Server((host, port), self)
            self._server = server
            self._port = int(server.server_address[1])
            self._url = base_url(host, self._port)
            if self._sender is not None:
                self._sender.open()
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"supabase-standin:{self._port}",
                daemon=True,
            )
            self._thread.start()
            return self._url

    def stop(self) -> None:
        """Stop serving, close connections, finish webhooks in flight (queued ones are
        cancelled), close SQLite. Idempotent; ``start()`` may be called again afterwards."""
        with self._lifecycle:
            server, self._server = self._server, None
            thread, self._thread = self._thread, None
            self._stopping.set()
            if server is not None:
                server.shutdown()
                server.server_close()
                server.close_connections()
            if thread is not None:
                thread.join(timeout=5)
            if self._sender is not None:
                self._sender.close()
            if self.data_dir is not None:
                with self._store_lock:
                    if self._store_obj is not None:
                        self._store_obj.close()
                        self._store_obj = None

    def __enter__(self) -> SupabaseStandIn:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL (``SUPABASE_URL``); supabase-py calls ``{url}/rest/v1/<table>``."""
        if self._url is None:
            raise RuntimeError("the stand-in was never started")
        return self._url

    @property
    def port(self) -> int:
        """The TCP port served."""
        if self._port is None:
            raise RuntimeError("the stand-in was never started")
        return self._port

    @property
    def service_key(self) -> str:
        """The ``service_role`` key: bypasses RLS (``apikey`` and/or ``Authorization: Bearer``)."""
        return self._service_key

    @property
    def anon_key(self) -> str:
        """The public ``anon`` key: reads see only what ``anon_policies`` show."""
        return self._anon_key

    def rotate_keys(self) -> None:
        """New anon and service keys, as rotating a project's JWT secret gives: from now on
        the old keys are refused (401), as a revoked key is."""
        self._service_key = make_service_key()
        self._anon_key = make_anon_key()

    @property
    def anon_policies(self) -> dict[str, str]:
        """The anon policy of each table that has one (tables absent: anon sees no row)."""
        return {table: policy.text for table, policy in self._api.anon_policies.items()}

    # -- data --------------------------------------------------------------------------------

    def _known_table(self, table: str) -> None:
        if table not in self.tables:
            raise KeyError(f"unknown table {table!r}; served: {sorted(self.tables)}")

    def seed(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Bulk insert without webhooks (like a migration); returns the number inserted."""
        self._known_table(table)
        return self._store().seed(table, rows)

    def rows(self, table: str) -> list[Row]:
        """Current rows, every column, ordered by primary key (copies)."""
        self._known_table(table)
        return self._store().sorted_rows(table)

    # -- faults ------------------------------------------------------------------------------

    def inject_fault(
        self,
        status: int | None = 503,
        delay_s: float = 0.0,
        times: int | None = 1,
        method: str | None = "GET",
        table: str | None = None,
        *,
        code: str | None = None,
        message: str | None = None,
        dropped: bool = False,
    ) -> None:
        """The next ``times`` matching ``/rest/v1`` requests (None: until cleared) wait
        ``delay_s`` then get ``status`` with a PostgREST-style JSON error; with
        ``status=None`` they wait and are then served normally; ``dropped`` closes the
        connection without an answer instead (as a proxy or a restarting server may).
        ``method``/``table`` None match any."""
        if status is not None and not 400 <= status <= 599:
            raise ValueError("status must be a 4xx/5xx code or None")
        if delay_s < 0:
            raise ValueError("delay_s must not be negative")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None)")
        fault = Fault(status, float(delay_s), times, method, table, code, message, dropped)
        with self._faults_lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Disarm every fault."""
        with self._faults_lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        """Faults still armed (copies)."""
        with self._faults_lock:
            return [Fault(**asdict(f)) for f in self._faults]

    def _take_fault(self, method: str, table: str | None) -> Fault | None:
        with self._faults_lock:
            for fault in self._faults:
                if fault.matches(method, table):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    # -- logs --------------------------------------------------------------------------------

    @property
    def request_log(self) -> list[RequestRecord]:
        """Every ``/rest/v1`` request answered so far (a copy)."""
        with self._requests_lock:
            return list(self._requests)

    def reset_request_log(self) -> None:
        """Forget logged requests."""
        with self._requests_lock:
            self._requests.clear()

    def wait_for_requests(self, timeout_s: float = 10.0) -> bool:
        """Block until no REST request is being answered; False on timeout.

        A request whose client gave up (its own timeout) is still answered and logged later:
        wait for it before reading the log, or it lands after requests made since.
        """
        with self._in_flight_done:
            return self._in_flight_done.wait_for(lambda: self._in_flight == 0, timeout_s)

    @property
    def webhook_log(self) -> list[WebhookDelivery]:
        """Every finished webhook delivery attempt (empty without a webhook config)."""
        return self._sender.log if self._sender is not None else []

    def wait_for_webhooks(self, timeout_s: float = 10.0) -> bool:
        """Block until every queued delivery has finished; False on timeout."""
        return self._sender.wait(timeout_s) if self._sender is not None else True

    def _publish(self, changes: list[Change]) -> None:
        if self._sender is not None:
            self._sender.submit(changes)

    # -- HTTP --------------------------------------------------------------------------------

    def handle_http(
        self, method: str, raw_path: str, headers: Headers, body: bytes
    ) -> HttpResponse:
        """Route one HTTP request (called by the server's handler threads)."""
        parts = urlsplit(raw_path)
        path = parts.path
        try:
            if path == REST_PREFIX or path.startswith(REST_PREFIX + "/"):
                with self._in_flight_done:
                    self._in_flight += 1
                try:
                    return self._handle_rest(method, path, parts.query, headers, body)
                finally:
                    with self._in_flight_done:
                        self._in_flight -= 1
                        self._in_flight_done.notify_all()
        except Exception as exc:  # a bug here must not kill the connection silently
            traceback.print_exc(file=sys.stderr)
            return json_response(
                500,
                {"code": "XX000", "details": repr(exc), "hint": None, "message": "stand-in error"},
            )
        return json_response(
            404,
            {
                "code": None,
                "details": None,
                "hint": None,
                "message": "no Route matched with those values",
            },
        )

    def _role_of(self, key: str) -> Role | None:
        if hmac.compare_digest(key, self._service_key):
            return SERVICE_ROLE
        if hmac.compare_digest(key, self._anon_key):
            return ANON
        return None

    def _authenticate(
        self, headers: Headers, query: str
    ) -> tuple[Role | None, HttpResponse | None]:
        """Kong's key check, then PostgREST's JWT check: (role, None), or (None, a 401).

        Both keys must be one of the project's two; the role is the Bearer token's (PostgREST
        switches to the JWT's role), else the apikey's (Supabase's gateway forwards it).
        """
        apikey = headers.get("apikey")
        if apikey is None:
            apikey = dict(parse_qsl(query)).get("apikey")
        authorization = headers.get("authorization") or ""
        bearer = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
        if apikey is None and bearer is None:
            return None, json_response(
                401,
                {
                    "code": None,
                    "details": None,
                    "hint": "No `apikey` request header or url param was found.",
                    "message": "No API key found in request",
                },
            )
        if apikey is not None and self._role_of(apikey) is None:
            return None, json_response(
                401,
                {
                    "code": None,
                    "details": None,
                    "hint": "Double check your Supabase `anon` or `service_role` API key.",
                    "message": "Invalid API key",
                },
            )
        if bearer is not None and self._role_of(bearer) is None:
            return None, error_response(
                PostgrestError(401, "PGRST301", "JWSError JWSInvalidSignature", None, None)
            )
        token = bearer if bearer is not None else apikey
        assert token is not None
        return self._role_of(token), None

    def _handle_rest(
        self, method: str, path: str, query: str, headers: Headers, body: bytes
    ) -> HttpResponse:
        started = time.monotonic()
        resource = unquote(path[len(REST_PREFIX) :].strip("/"))
        table = resource if resource and "/" not in resource else None
        faulted = False
        role, response = self._authenticate(headers, query)
        if response is None:
            fault = self._take_fault(method, table)
            if fault is not None:
                faulted = True
                if fault.delay_s > 0:
                    self._stopping.wait(fault.delay_s)
                if fault.dropped:
                    response = HttpResponse(0, dropped=True)
                elif fault.status is not None:
                    response = error_response(fault.error())
        if response is None:
            if self._stopping.is_set():
                response = error_response(
                    PostgrestError(503, "PGRST001", "The stand-in is stopping.")
                )
            elif table is not None:
                assert role is not None  # _authenticate names the role of every request it admits
                response = self._api.handle(method, table, query, headers, body, role=role)
            elif resource.startswith("rpc/"):
                # A developer's client.rpc(...) gets what a project without that function says.
                response = error_response(
                    PostgrestError(
                        404,
                        "PGRST202",
                        f"Could not find the function {self.schema}.{resource[4:]} "
                        "in the schema cache",
                    )
                )
            else:
                response = error_response(
                    PostgrestError(
                        404, "PGRST125", f"Invalid path specified in request URL: {path}"
                    )
                )
        record = RequestRecord(
            method=method,
            path=path,
            table=table,
            query=query,
            status=response.status,
            elapsed_s=round(time.monotonic() - started, 6),
            fault=faulted,
            headers={
                name: value for name in _LOGGED_HEADERS if (value := headers.get(name)) is not None
            },
            at=time.time(),
            role=role,
        )
        with self._requests_lock:
            self._requests.append(record)
        return response
