"""PostgREST's ``/rest/v1`` over the real database: the HTTP layer of the local Supabase.

It works as PostgREST does. The key is a JWT; once its HS256 signature checks out against the
JWT secret, its ``role`` claim is the PostgreSQL role of a one-transaction request (``role`` and
``request.jwt.claims`` set local to it), so grants and Row Level Security are PostgreSQL's own.
The table comes from the catalog, identifiers are quoted, values are parameters (``query.py``),
the JSON is PostgreSQL's (``json_agg``), errors keep PostgREST's shape, statuses and codes.
Faults for tests (a status, a delay, a dropped connection) strike before the database does.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
import psycopg
from psycopg import sql

from local.http_server import ConnectionTrackingServer, HttpResponse, RequestHandler, base_url
from local.supabase.query import (
    SQL,
    Builder,
    Ident,
    PostgrestError,
    Preferences,
    ReadQuery,
    content_range,
    parse_prefer,
    parse_query,
    row_range,
)

Conn = psycopg.Connection[Any]
# The Supabase CLI's published default: `supabase start` signs its local keys with it.
DEFAULT_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"  # noqa: S105
JSON, OBJECT = "application/json; charset=utf-8", "application/vnd.pgrst.object+json"
PREFIX = "/rest/v1"
_LOGGED = ("prefer", "range", "accept", "content-type")
_BY_CODE = {"23503": 409, "23505": 409, "25006": 405, "42P01": 404, "42883": 404, "P0001": 400}
_BY_CODE |= {"42P17": 500, "53400": 500, "57P01": 503}
_BY_CLASS = {"08": 503, "53": 503, "0L": 403, "0P": 403, "28": 403} | dict.fromkeys(
    ("09", "25", "2D", "38", "39", "3B", "40", "54", "55", "57", "58", "F0", "HV", "P0", "XX"), 500
)
_SETUP = """select set_config('role', %s, true), set_config('request.jwt.claims', %s, true),
                   set_config('search_path', %s, true)"""
_RELATION = """select array(select attname::text from pg_attribute where attrelid = c.oid
                            and attnum > 0 and not attisdropped order by attnum),
                      array(select a.attname::text from pg_index i join pg_attribute a on
                            a.attrelid = i.indrelid and a.attnum = any(i.indkey)
                            where i.indrelid = c.oid and i.indisprimary)
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
               where n.nspname = %s and c.relname = %s and c.relkind in ('r','v','m','f','p')"""
_FUNCTIONS = """select p.proretset, p.prorettype = 'void'::regtype, p.pronargdefaults,
                       coalesce(p.proargnames[1:p.pronargs], '{}')::text[],
                       array(select format_type(t, null) from unnest(p.proargtypes) t)
                from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                where n.nspname = %s and p.proname = %s and p.proargmodes is null"""
_TABLES = "select tablename::text from pg_tables where schemaname = %s"
_READ = "SELECT {} FROM {}{}{} LIMIT {} OFFSET {}"
_INSERT = "INSERT INTO {} ({}) SELECT {} FROM json_populate_recordset(NULL::{}, {}::json)"
_UPDATE = "UPDATE {} SET {} FROM json_populate_record(NULL::{}, {}::json) _b{} RETURNING {}.*"
_AGGREGATE = SQL("coalesce(json_agg(_t), '[]')::text, count(*), (json_agg(_t) -> 0)::text")


def make_key(role: str, secret: str = DEFAULT_JWT_SECRET) -> str:
    """An API key as the Supabase CLI makes them: HS256, a ``role`` claim, valid until 2032."""
    return jwt.encode({"iss": "supabase-demo", "role": role, "exp": 1983812996}, secret, "HS256")


@dataclass(frozen=True)
class RequestRecord:
    """One ``/rest/v1`` request as answered (``role``: None when its key was refused)."""

    method: str
    path: str
    table: str | None
    query: str
    status: int
    elapsed_s: float
    fault: bool
    headers: dict[str, str]
    role: str | None


@dataclass
class Fault:
    """``remaining`` matching requests (None: until cleared) wait ``delay_s``, then get
    ``status`` (None: served) or lose their connection unanswered (``dropped``)."""

    status: int | None
    delay_s: float
    remaining: int | None
    method: str | None
    table: str | None
    dropped: bool


def error_response(error: PostgrestError) -> HttpResponse:
    challenge = f'Bearer error="invalid_token", error_description="{error}"'
    headers = [("Content-Type", JSON)] + [("WWW-Authenticate", challenge)] * (error.status == 401)
    return HttpResponse(error.status, headers, json.dumps(error.body()).encode())


def database_error(error: psycopg.Error, role: str) -> PostgrestError:
    """PostgreSQL's error as PostgREST answers it (its SQLSTATE-to-status table)."""
    code, diag = error.sqlstate, error.diag
    if code is None:  # no answer from the server: the connection failed
        return PostgrestError(503, "PGRST000", "Database connection error.")
    message = diag.message_primary or str(error)
    status = _BY_CODE.get(code) or _BY_CLASS.get(code[:2], 400)
    if code == "42501":  # insufficient privilege
        status = 401 if role == "anon" else 403
    if code == "21000" and not message.endswith("requires a WHERE clause"):
        status = 500
    return PostgrestError(status, code, message, diag.message_detail, diag.message_hint)


class _Pool:
    """Open connections as ``authenticator``, reused across requests."""

    def __init__(self, conninfo: str, size: int = 8) -> None:
        self._conninfo, self._size, self._idle = conninfo, size, list[Conn]()
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[Conn]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        # No prepared statements: a test's ALTER TABLE would invalidate a cached plan.
        conn = conn or psycopg.connect(self._conninfo, autocommit=True, prepare_threshold=None)
        try:
            yield conn
        finally:
            with self._lock:
                keep = not conn.closed and not conn.broken and len(self._idle) < self._size
                self._idle.append(conn) if keep else conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _Handler(RequestHandler):
    server_version = "postgrest-local"
    no_length_statuses = frozenset({204})

    def respond(self, body: bytes) -> HttpResponse:
        app: RestServer = self.server.app  # type: ignore[attr-defined]
        return app.handle_http(self.command, self.path, self.headers, body)

    def refuse_body(self, too_large: bool) -> HttpResponse:
        return error_response(PostgrestError(400, "PGRST102", "Empty or invalid json"))

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: ``request_log`` has every request."""


@dataclass
class Call:
    """One request, authenticated and parsed."""

    method: str
    resource: str
    params: list[tuple[str, str]]
    headers: Message
    body: bytes
    role: str
    claims: dict[str, Any]
    prefs: Preferences
    singular: bool  # Accept: application/vnd.pgrst.object+json


class RestServer:
    """``/rest/v1`` for one database; at most ``max_rows`` rows a read (Supabase: 1,000)."""

    def __init__(self, conninfo: str, *, jwt_secret: str, max_rows: int = 1000) -> None:
        self.schema, self.max_rows, self._secret = "public", max_rows, jwt_secret
        self.service_key = make_key("service_role", jwt_secret)
        self.anon_key = make_key("anon", jwt_secret)
        self._pool = _Pool(conninfo)
        self._faults: list[Fault] = []
        self._requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ConnectionTrackingServer | None = None
        self.url = ""

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in background threads (port 0: any free port); the URL."""
        self._stopping.clear()
        server = self._server = ConnectionTrackingServer((host, port), _Handler)
        server.daemon_threads, server.app = True, self  # type: ignore[attr-defined]
        self.url = base_url(host, int(server.server_address[1]))
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self.url

    def close(self) -> None:
        """Stop serving, close every connection; idempotent."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        self._pool.close()

    def rotate_jwt_secret(self, secret: str) -> None:
        """Sign keys with a new JWT secret, as rotating a project's gives: from now on the old
        keys are refused (401), as revoked keys are."""
        self._secret = secret
        self.service_key = make_key("service_role", secret)
        self.anon_key = make_key("anon", secret)

    def inject_fault(
        self, status: int | None = 503, delay_s: float = 0.0, times: int | None = 1,
        method: str | None = "GET", table: str | None = None, *, dropped: bool = False,
    ) -> None:  # fmt: skip
        """The next ``times`` matching requests (None: until cleared; ``method``/``table``
        None: any) wait ``delay_s``, then get ``status`` (None: served), or are ``dropped``."""
        if status is not None and not 400 <= status <= 599:
            raise ValueError("status must be a 4xx/5xx code or None")
        with self._lock:
            self._faults.append(Fault(status, delay_s, times, method, table, dropped))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def request_log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def reset_request_log(self) -> None:
        with self._lock:
            self._requests.clear()

    def _take_fault(self, method: str, table: str | None) -> Fault | None:
        with self._lock:
            hit = (
                f for f in self._faults if f.method in (None, method) and f.table in (None, table)
            )
            fault = next(hit, None)
            if fault is not None and fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
            return fault

    def handle_http(self, method: str, path: str, headers: Message, body: bytes) -> HttpResponse:
        started, parts = time.monotonic(), urlsplit(path)
        resource = unquote(parts.path.removeprefix(PREFIX).strip("/"))
        table = resource if resource and "/" not in resource else None
        role, fault = None, None
        try:
            role, claims = self._authenticate(headers, parts.query)
            fault = self._take_fault(method, table)
            if fault is not None:
                self._stopping.wait(fault.delay_s)
            if fault is not None and fault.dropped:
                response = HttpResponse(0, dropped=True)
            elif fault is not None and fault.status is not None:
                code = "PGRST001" if fault.status == 503 else str(fault.status)
                raise PostgrestError(fault.status, code, "Injected by the local stack")
            elif not parts.path.startswith(PREFIX + "/") or not resource:
                raise PostgrestError(404, "PGRST125", "Invalid path specified in request URL")
            else:
                prefs = parse_prefer(headers.get_all("prefer") or [])
                singular = OBJECT in (headers.get("accept") or "")
                params = parse_qsl(parts.query, keep_blank_values=True)
                call = Call(method, resource, params, headers, body, role, claims, prefs, singular)
                response = self._serve(call)
        except PostgrestError as error:
            response = error_response(error)
        except Exception as error:  # a bug must answer, not close the connection unexplained
            traceback.print_exc()
            response = error_response(PostgrestError(500, "XX000", "bug", repr(error)))
        logged = {name: value for name in _LOGGED if (value := headers.get(name)) is not None}
        answer = (response.status, round(time.monotonic() - started, 6), fault is not None)
        record = RequestRecord(method, parts.path, table, parts.query, *answer, logged, role)
        with self._lock:
            self._requests.append(record)
        return response

    def _authenticate(self, headers: Message, query: str) -> tuple[str, dict[str, Any]]:
        """The gateway wants a key; PostgREST takes the role from the bearer JWT (else the
        key), once its signature checks out against the project's secret."""
        authorization = headers.get("authorization") or ""
        bearer = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
        token = bearer or headers.get("apikey") or dict(parse_qsl(query)).get("apikey")
        if token is None:
            hint = "No `apikey` request header or url param was found."
            raise PostgrestError(401, None, "No API key found in request", None, hint)
        try:
            claims: dict[str, Any] = jwt.decode(token, self._secret, algorithms=["HS256"])
        except jwt.ExpiredSignatureError:
            raise PostgrestError(401, "PGRST303", "JWT expired") from None
        except jwt.InvalidTokenError:
            raise PostgrestError(401, "PGRST301", "JWT cryptographic operation failed") from None
        if not isinstance(claims.get("role"), str):
            raise PostgrestError(401, "PGRST303", "The JWT has no 'role' claim")
        return claims["role"], claims

    def _serve(self, call: Call) -> HttpResponse:
        reading = call.method in ("GET", "HEAD")
        profile = call.headers.get("accept-profile" if reading else "content-profile")
        if profile not in (None, self.schema):
            hint = f"Only the following schemas are exposed: {self.schema}"
            raise PostgrestError(406, "PGRST106", f"Invalid schema: {profile}", None, hint)
        try:
            with self._pool.connection() as conn, conn.transaction():
                try:
                    conn.execute(_SETUP, [call.role, json.dumps(call.claims), self.schema])
                except psycopg.errors.InvalidParameterValue:
                    message = f'role "{call.role}" does not exist'
                    raise PostgrestError(401, "22023", message) from None
                if call.resource.startswith("rpc/") and call.method == "POST":
                    return self._rpc(conn, call.resource[4:], call.body)
                if "/" in call.resource:
                    raise PostgrestError(404, "PGRST125", "Invalid path specified in request URL")
                columns, key = self._relation(conn, call.resource)
                b = Builder(lambda name: _resolve_type(conn, name))
                query = parse_query(call.params, b, Ident(self.schema, call.resource))
                if reading:
                    response = self._read(conn, call, query, b)
                elif call.method in ("POST", "PATCH", "DELETE"):
                    response = self._write(conn, call, query, b, columns, key)
                else:
                    raise PostgrestError(405, "PGRST117", f"Unsupported HTTP method: {call.method}")
        except psycopg.Error as error:
            raise database_error(error, call.role) from error
        if call.prefs.applied:
            response.headers.append(("Preference-Applied", ", ".join(call.prefs.applied)))
        return response

    def _relation(self, conn: Conn, table: str) -> tuple[list[str], list[str]]:
        """The table's columns and primary key, from the catalog (PostgREST's schema cache)."""
        found = conn.execute(_RELATION, [self.schema, table]).fetchone()
        if found is None:
            names = conn.execute(_TABLES, [self.schema]).fetchall()
            close = difflib.get_close_matches(table, [name for (name,) in names], n=1)
            message = f"Could not find the table '{self.schema}.{table}' in the schema cache"
            hint = f"Perhaps you meant the table '{self.schema}.{close[0]}'" if close else None
            raise PostgrestError(404, "PGRST205", message, None, hint)
        return list(found[0]), list(found[1])

    def _read(self, conn: Conn, call: Call, q: ReadQuery, b: Builder) -> HttpResponse:
        table = Ident(self.schema, call.resource)
        lower, upper = row_range(call.headers.get("range"), q.offset, q.limit, self.max_rows)
        where = SQL(" WHERE {}").format(SQL(" AND ").join(q.where)) if q.where else SQL("")
        order = SQL(" ORDER BY {}").format(q.order) if q.order else SQL("")
        total = SQL(", (SELECT count(*) FROM {}{})").format(table, where)
        limit, offset = sql.Literal(max(upper - lower + 1, 0)), sql.Literal(lower)
        page = SQL(_READ).format(q.select, table, where, order, limit, offset)
        statement = SQL("SELECT {}{} FROM ({}) _t")
        counted = total if call.prefs.count else SQL("")
        row = conn.execute(statement.format(_AGGREGATE, counted, page), b.params).fetchone()
        assert row is not None
        status, range_header = content_range(lower, row[1], row[3] if call.prefs.count else None)
        if status == 416:
            details = f"An offset of {lower} was requested, but there are only {row[3]} rows."
            raise PostgrestError(416, "PGRST103", "Requested range not satisfiable", details)
        return _json_response(status, call.singular, row, [("Content-Range", range_header)])

    def _write(
        self, conn: Conn, call: Call, q: ReadQuery, b: Builder, columns: list[str], key: list[str]
    ) -> HttpResponse:
        table = Ident(self.schema, call.resource)
        where = SQL(" WHERE {}").format(SQL(" AND ").join(q.where))
        if call.method != "POST" and not q.where:  # Supabase runs pg-safeupdate
            verb = "UPDATE" if call.method == "PATCH" else "DELETE"
            raise PostgrestError(400, "21000", f"{verb} requires a WHERE clause")
        change: sql.Composable = SQL("DELETE FROM {}{} RETURNING {}.*").format(table, where, table)
        if call.method != "DELETE":
            payload, written = _payload(call.body, q.columns, many=call.method == "POST")
            missing = next((c for c in written if c not in columns), None)
            if missing is not None:
                message = f"Could not find the '{missing}' column of '{call.resource}'"
                raise PostgrestError(400, "PGRST204", message + " in the schema cache")
            names, body = SQL(", ").join(map(Ident, written)), b.value(payload)
            if call.method == "PATCH":
                sets = SQL(", ").join(SQL("{0} = _b.{0}").format(Ident(c)) for c in written)
                change = SQL(_UPDATE).format(table, sets, table, body, where, table)
                if not written:  # nothing to set: answered as if no row matched
                    change = SQL("SELECT * FROM {} WHERE false").format(table)
            else:
                change = SQL(_INSERT).format(table, names, names, table, body)
                if call.prefs.resolution:
                    target = SQL(", ").join(map(Ident, q.on_conflict or key))
                    updates = SQL(", ").join(
                        SQL("{0} = EXCLUDED.{0}").format(Ident(c)) for c in written
                    )
                    ignore = call.prefs.resolution == "ignore-duplicates" or not written
                    action = SQL("NOTHING") if ignore else SQL("UPDATE SET {}").format(updates)
                    change = SQL("{} ON CONFLICT ({}) DO {}").format(change, target, action)
                change = SQL("{} RETURNING {}.*").format(change, table)
        statement = SQL("WITH _w AS ({}) SELECT {} FROM (SELECT {} FROM _w) _t")
        row = conn.execute(statement.format(change, _AGGREGATE, q.select), b.params).fetchone()
        assert row is not None
        headers = [("Content-Range", f"*/{row[1] if call.prefs.count else '*'}")]
        if call.singular and row[1] != 1:  # raised inside the transaction: nothing is written
            _one(None, row[1])
        if not call.prefs.representation:
            return HttpResponse(201 if call.method == "POST" else 204, headers)
        return _json_response(201 if call.method == "POST" else 200, call.singular, row, headers)

    def _rpc(self, conn: Conn, function: str, body: bytes) -> HttpResponse:
        """``POST /rpc/<function>`` with named arguments: a set as an array, else its value."""
        payload, given = _payload(body or b"{}", None, many=False)
        candidates = conn.execute(_FUNCTIONS, [self.schema, function]).fetchall()
        # The overload that takes every argument given and needs none that is not.
        fits = [
            f for f in candidates if {*given} <= {*f[3]} and {*f[3][: len(f[3]) - f[2]]} <= {*given}
        ]
        if not fits:
            listed = f"({', '.join(sorted(given))})" if given else " without parameters"
            message = f"Could not find the function {self.schema}.{function}{listed}"
            raise PostgrestError(404, "PGRST202", message + " in the schema cache")
        returns_set, returns_void, _, names, types = fits[0]
        passed = [(name, kind) for name, kind in zip(names, types, strict=True) if name in given]
        b = Builder(str)
        arguments = SQL(", ").join(SQL("{0} := _a.{0}").format(Ident(n)) for n, _ in passed)
        source = SQL("LATERAL {}({}) _t").format(Ident(self.schema, function), arguments)
        if passed:
            record = SQL(", ").join(SQL("{} {}").format(Ident(n), SQL(kind)) for n, kind in passed)
            source = SQL("json_to_record({}::json) _a({}), {}").format(
                b.value(payload), record, source
            )
        if returns_void:
            conn.execute(SQL("SELECT FROM {}").format(source), b.params)
            return HttpResponse(204)
        row = conn.execute(SQL("SELECT {} FROM {}").format(_AGGREGATE, source), b.params).fetchone()
        assert row is not None
        text = row[0] if returns_set else (row[2] or "null")
        return HttpResponse(200, [("Content-Type", JSON)], text.encode())


def _json_response(status: int, singular: bool, row: Any, headers: list[Any]) -> HttpResponse:
    """The rows PostgreSQL rendered: an array, or the one object a singular request wants."""
    text, kind = (_one(row[2], row[1]), OBJECT + "; charset=utf-8") if singular else (row[0], JSON)
    return HttpResponse(status, [("Content-Type", kind), *headers], text.encode())


def _one(text: str | None, count: int) -> str:
    if count != 1 or text is None:
        message = "Cannot coerce the result to a single JSON object"
        raise PostgrestError(406, "PGRST116", message, f"The result contains {count} rows")
    return text


def _resolve_type(conn: Conn, name: str) -> str:
    """A ``::cast``'s type as the catalog names it: only a real type name reaches the SQL."""
    found = None
    with contextlib.suppress(psycopg.Error), conn.transaction():  # a savepoint: bad names fail
        found = conn.execute("select to_regtype(%s)::text", [name]).fetchone()
    if found is None or found[0] is None:
        raise PostgrestError(400, "42704", f'type "{name}" does not exist')
    return str(found[0])


def _payload(body: bytes, columns: list[str] | None, *, many: bool) -> tuple[str, list[str]]:
    """The body as PostgreSQL will read it (its own text: numbers keep every digit), and the
    columns written: ``columns=`` when given, else the keys, the same in every row."""
    try:
        value = json.loads(body)
    except ValueError as error:
        raise PostgrestError(400, "PGRST102", "Empty or invalid json", str(error)) from None
    rows = value if isinstance(value, list) and many else [value]
    if not all(isinstance(row, dict) for row in rows):
        raise PostgrestError(400, "PGRST102", "Empty or invalid json", "Expected JSON objects.")
    if columns is None:
        if any(set(row) != set(rows[0]) for row in rows):
            raise PostgrestError(400, "PGRST102", "All object keys must match")
        columns = list(rows[0]) if rows else []
    text = body.decode("utf-8")
    return (f"[{text}]" if many and not isinstance(value, list) else text), columns
