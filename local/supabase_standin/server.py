"""``SupabaseStandIn``: an HTTP server speaking PostgREST at ``/rest/v1`` with Database Webhooks.

``/rest/v1/<table>`` takes the service key (every row) or the anon key (rows its table's
policy shows; see ``policies.py``). Besides it serves an admin API for other processes
(service key needed)::

    POST   /__standin/faults              {"status": 503, "delay_s": 0, "times": 1,
                                           "method": "GET", "table": null}
    GET    /__standin/faults              the faults still armed
    DELETE /__standin/faults              clear them
    GET    /__standin/requests            request log      (DELETE: reset it)
    GET    /__standin/webhooks            webhook log      (DELETE: reset it)
    POST   /__standin/webhooks/wait       {"timeout_s": 10} -> {"idle": true|false}
    GET    /__standin/tables/<t>/rows     rows ordered by primary key
    POST   /__standin/tables/<t>/rows     [rows...]: seed, no webhooks -> {"inserted": n}
    GET    /__standin/keys                {"anon": ..., "service_role": ...}
    GET    /__standin/anon-policies       {"articles": "published=eq.true", ...}
    PUT    /__standin/anon-policies       the same shape: replaces every anon policy
"""

from __future__ import annotations

import hmac
import json
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
    parse_json_body,
)
from local.supabase_standin.store import Change, Store
from local.supabase_standin.webhooks import WebhookConfig, WebhookDelivery, WebhookSender

REST_PREFIX = "/rest/v1"
ADMIN_PREFIX = "/__standin"
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

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for the admin API)."""
        return asdict(self)


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

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for the admin API)."""
        return asdict(self)


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
        if self.server.app.verbose:
            super().log_message(format, *args)


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
        verbose: bool = False,
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
        self.verbose = verbose
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
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

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

    @property
    def anon_policies(self) -> dict[str, str]:
        """The anon policy of each table that has one (tables absent: anon sees no row)."""
        return {table: policy.text for table, policy in self._api.anon_policies.items()}

    def set_anon_policies(self, policies: Mapping[str, str]) -> None:
        """Replace every anon policy (like ``DROP``/``CREATE POLICY``); reads after it use
        the new ones. A bad policy is a ValueError and changes nothing."""
        self._api.anon_policies = parse_anon_policies(policies, self.tables)

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
    ) -> None:
        """The next ``times`` matching ``/rest/v1`` requests (None: until cleared) wait
        ``delay_s`` then get ``status`` with a PostgREST-style JSON error; with
        ``status=None`` they wait and are then served normally. ``method``/``table`` None
        match any."""
        if status is not None and not 400 <= status <= 599:
            raise ValueError("status must be a 4xx/5xx code or None")
        if delay_s < 0:
            raise ValueError("delay_s must not be negative")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None)")
        fault = Fault(status, float(delay_s), times, method, table, code, message)
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

    def reset_webhook_log(self) -> None:
        """Forget logged deliveries."""
        if self._sender is not None:
            self._sender.reset_log()

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
            if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
                role, denied = self._authenticate(headers, parts.query)
                if denied is None and role != SERVICE_ROLE:
                    denied = error_response(
                        PostgrestError(
                            403, "42501", "the stand-in's admin API needs the service key"
                        )
                    )
                return denied or self._handle_admin(method, path, body)
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
                if fault.status is not None:
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
                response = error_response(
                    PostgrestError(
                        404,
                        "PGRST202",
                        f"Could not find the function {self.schema}.{resource[4:]} "
                        "in the schema cache",
                    )
                )
            elif not resource and method in ("GET", "HEAD"):
                response = json_response(
                    200, {"swagger": "2.0", "paths": {f"/{t}": {} for t in self.tables}}
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

    def _handle_admin(self, method: str, path: str, body: bytes) -> HttpResponse:
        route = path[len(ADMIN_PREFIX) :].strip("/")
        try:
            if route == "faults":
                if method == "POST":
                    spec = parse_json_body(body) if body.strip() else {}
                    if not isinstance(spec, dict):
                        raise PostgrestError(400, "PGRST102", "expected a JSON object")
                    allowed = {"status", "delay_s", "times", "method", "table", "code", "message"}
                    extra = set(spec) - allowed
                    if extra:
                        raise PostgrestError(400, "PGRST102", f"unknown keys: {sorted(extra)}")
                    self.inject_fault(**spec)
                    return json_response(201, [f.to_json() for f in self.faults])
                if method == "DELETE":
                    self.clear_faults()
                    return HttpResponse(204)
                if method == "GET":
                    return json_response(200, [f.to_json() for f in self.faults])
            elif route == "requests":
                if method == "GET":
                    return json_response(200, [r.to_json() for r in self.request_log])
                if method == "DELETE":
                    self.reset_request_log()
                    return HttpResponse(204)
            elif route == "webhooks":
                if method == "GET":
                    return json_response(200, [d.to_json() for d in self.webhook_log])
                if method == "DELETE":
                    self.reset_webhook_log()
                    return HttpResponse(204)
            elif route == "webhooks/wait" and method == "POST":
                spec = parse_json_body(body) if body.strip() else {}
                timeout_s = float(spec.get("timeout_s", 10.0)) if isinstance(spec, dict) else 10.0
                return json_response(200, {"idle": self.wait_for_webhooks(timeout_s)})
            elif route.startswith("tables/") and route.endswith("/rows"):
                table = unquote(route[len("tables/") : -len("/rows")])
                if table not in self.tables:
                    raise PostgrestError(404, "PGRST205", f"unknown table {table!r}")
                if method == "GET":
                    return json_response(200, self.rows(table))
                if method == "POST":
                    rows = parse_json_body(body)
                    if not isinstance(rows, list):
                        raise PostgrestError(400, "PGRST102", "expected a JSON array of rows")
                    return json_response(201, {"inserted": self.seed(table, rows)})
            elif route == "keys" and method == "GET":
                return json_response(200, {ANON: self.anon_key, SERVICE_ROLE: self.service_key})
            elif route == "anon-policies":
                if method == "GET":
                    return json_response(200, self.anon_policies)
                if method == "PUT":
                    policies = parse_json_body(body)
                    if not isinstance(policies, dict):
                        raise PostgrestError(400, "PGRST102", "expected a JSON object")
                    self.set_anon_policies(policies)
                    return json_response(200, self.anon_policies)
            else:
                raise PostgrestError(404, "PGRST125", f"unknown admin route {path}")
        except (TypeError, ValueError) as exc:
            return error_response(PostgrestError(400, "PGRST102", str(exc)))
        except PostgrestError as exc:
            return error_response(exc)
        return error_response(PostgrestError(405, "PGRST117", f"{method} not allowed on {path}"))


def dump_records(records: Iterable[RequestRecord | WebhookDelivery]) -> str:
    """The records as a JSON array (debugging aid)."""
    return json.dumps([r.to_json() for r in records], ensure_ascii=False, indent=2)
