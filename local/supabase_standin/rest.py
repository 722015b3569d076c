"""The ``/rest/v1/<table>`` endpoint: PostgREST's behaviour for the calls supabase-py makes.

Independent of the HTTP server: ``RestApi.handle`` takes the method, table, raw query string,
headers, body and the caller's role (from its key), and returns status, headers and body bytes.
The anon role reads through Row Level Security (see ``policies.py``).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from local.http_server import HttpResponse
from local.supabase_standin.errors import PostgrestError
from local.supabase_standin.policies import (
    ANON,
    SERVICE_ROLE,
    AnonPolicy,
    Role,
    no_row,
    rls_insert_violation,
    visibility,
)
from local.supabase_standin.query import (
    ParsedQuery,
    Preferences,
    Row,
    check_columns,
    content_range,
    effective_range,
    matches,
    parse_prefer,
    parse_query,
    parse_range_header,
    project,
    range_status,
    select_columns,
    sort_rows,
)
from local.supabase_standin.store import Change, Resolution, Store, Validator

JSON_TYPE = "application/json; charset=utf-8"
OBJECT_TYPE = "application/vnd.pgrst.object+json; charset=utf-8"
_ARRAY_TYPES = ("application/json", "application/vnd.pgrst.array+json", "application/*", "*/*")


class Headers:
    """Case-insensitive, multi-valued request headers."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = [(name.lower(), value) for name, value in pairs]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``."""
        lowered = name.lower()
        for key, value in self._pairs:
            if key == lowered:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``."""
        lowered = name.lower()
        return [value for key, value in self._pairs if key == lowered]


def dump_json(value: Any) -> bytes:
    """UTF-8 JSON, non-ASCII kept as is (as PostgreSQL's json output)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


def json_response(
    status: int, value: Any, headers: Sequence[tuple[str, str]] = (), content_type: str = JSON_TYPE
) -> HttpResponse:
    """A JSON response."""
    return HttpResponse(status, [("Content-Type", content_type), *headers], dump_json(value))


def error_response(error: PostgrestError) -> HttpResponse:
    """The PostgREST error body ``{"code","details","hint","message"}``."""
    return json_response(error.status, error.to_json())


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_body(body: bytes) -> Any:
    """The request body as JSON; PGRST102 when empty or malformed."""
    try:
        if not body.strip():
            raise ValueError("empty body")
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PostgrestError(400, "PGRST102", "Empty or invalid json", str(exc)) from None


def negotiate(accept: str | None) -> tuple[bool, bool]:
    """(singular object wanted, nulls stripped) from ``Accept``; PGRST107 if none fits."""
    if not accept or not accept.strip():
        return False, False
    for media in accept.split(","):
        kind, *params = (part.strip().lower() for part in media.split(";"))
        stripped = "nulls=stripped" in params
        if kind == "application/vnd.pgrst.object+json":
            return True, stripped
        if kind in _ARRAY_TYPES:
            return False, stripped
    raise PostgrestError(
        406, "PGRST107", f"None of these media types are available: {accept.strip()}"
    )


def _strip_nulls(row: Row) -> Row:
    return {key: value for key, value in row.items() if value is not None}


class RestApi:
    """PostgREST for the tables of one Store."""

    def __init__(
        self,
        store: Callable[[], Store],
        *,
        max_rows: int | None = 1000,
        schema: str = "public",
        on_changes: Callable[[list[Change]], None] | None = None,
        anon_policies: Mapping[str, AnonPolicy] | None = None,
    ) -> None:
        self._store = store
        self.max_rows = max_rows
        self.schema = schema
        self._on_changes = on_changes
        # Replaced as a whole (never mutated) so a request reads one consistent set.
        self.anon_policies: Mapping[str, AnonPolicy] = dict(anon_policies or {})

    def handle(
        self,
        method: str,
        table: str,
        query_string: str,
        headers: Headers,
        body: bytes,
        *,
        role: Role = SERVICE_ROLE,
    ) -> HttpResponse:
        """Answer one table request; client mistakes become 4xx PostgREST errors."""
        try:
            return self._handle(method.upper(), table, query_string, headers, body, role)
        except PostgrestError as error:
            response = error_response(error)
            if error.status == 401:
                response.headers.append(("WWW-Authenticate", "Bearer"))  # as PostgREST does
            return response

    # -- dispatch ----------------------------------------------------------------------------

    def _handle(
        self,
        method: str,
        table: str,
        query_string: str,
        headers: Headers,
        body: bytes,
        role: Role,
    ) -> HttpResponse:
        profile_header = "accept-profile" if method in ("GET", "HEAD") else "content-profile"
        profile = headers.get(profile_header)
        if profile is not None and profile.strip() != self.schema:
            raise PostgrestError(
                406,
                "PGRST106",
                f"The schema must be one of the following: {self.schema}",
                None,
                None,
            )
        store = self._store()
        if not store.has_table(table):
            close = difflib.get_close_matches(table, list(store.tables), n=1)
            raise PostgrestError(
                404,
                "PGRST205",
                f"Could not find the table '{self.schema}.{table}' in the schema cache",
                None,
                f"Perhaps you meant the table '{self.schema}.{close[0]}'" if close else None,
            )
        params = parse_qsl(query_string, keep_blank_values=True)
        query = parse_query(params)
        singular, strip = negotiate(headers.get("accept"))
        prefs = parse_prefer(headers.get_all("prefer"))
        visible = visibility(role, table, self.anon_policies)
        # Anon has SELECT policies only: with no UPDATE/DELETE policy PostgreSQL's USING is
        # false, so its updates and deletes match no row (silently, as on Supabase).
        writable = no_row if role == ANON else None
        if method in ("GET", "HEAD"):
            return self._read(store, table, query, headers, prefs, singular, strip, method, visible)
        if method == "POST":
            return self._insert(store, table, query, body, prefs, singular, strip, role)
        if method == "PATCH":
            return self._update(store, table, query, body, prefs, singular, strip, writable)
        if method == "DELETE":
            return self._delete(store, table, query, prefs, singular, strip, writable)
        raise PostgrestError(405, "PGRST117", f"Unsupported HTTP method: {method}")

    # -- reads -------------------------------------------------------------------------------

    def _read(
        self,
        store: Store,
        table: str,
        query: ParsedQuery,
        headers: Headers,
        prefs: Preferences,
        singular: bool,
        strip: bool,
        method: str,
        visible: Callable[[Row], bool] | None,
    ) -> HttpResponse:
        rows, columns = store.snapshot(table)
        check_columns(table, query.referenced_columns(), columns)
        if visible is not None:
            # RLS: the policy joins the WHERE clause, so every count, range and page below
            # is computed over the visible rows only.
            rows = [row for row in rows if visible(row)]
        matched = [row for row in rows if matches(query.filters, row)]
        if query.order:
            matched = sort_rows(matched, query.order)
        requested = effective_range(
            parse_range_header(headers.get("range")), query.offset, query.limit, self.max_rows
        )
        lower = requested.lower
        end = None if requested.upper is None else max(requested.upper + 1, lower)
        page = matched[lower:end]
        total = len(matched) if prefs.count else None
        status = range_status(lower, len(page), total)
        if status == 416:
            raise PostgrestError(
                416,
                "PGRST103",
                "Requested range not satisfiable",
                f"An offset of {lower} was requested, but there are only {total} rows.",
            )
        out = [project(row, query.select, columns) for row in page]
        if strip:
            out = [_strip_nulls(row) for row in out]
        response_headers = [("Content-Range", content_range(lower, len(page), total))]
        if prefs.count:
            response_headers.append(("Preference-Applied", f"count={prefs.count}"))
        if singular:
            if len(out) != 1:
                raise PostgrestError(
                    406,
                    "PGRST116",
                    "Cannot coerce the result to a single JSON object",
                    f"The result contains {len(out)} rows",
                )
            response = json_response(status, out[0], response_headers, OBJECT_TYPE)
        else:
            response = json_response(status, out, response_headers)
        if method == "HEAD":
            response.body = b""
        return response

    # -- writes ------------------------------------------------------------------------------

    def _validator(self, prefs: Preferences, singular: bool) -> Validator:
        def validate(changes: list[Change]) -> None:
            if (
                prefs.handling_strict
                and prefs.max_affected is not None
                and len(changes) > prefs.max_affected
            ):
                raise PostgrestError(
                    400,
                    "PGRST124",
                    "Query result exceeds max-affected preference constraint",
                    f"The query affects {len(changes)} rows",
                )
            if singular and prefs.return_ == "representation" and len(changes) != 1:
                raise PostgrestError(
                    406,
                    "PGRST116",
                    "Cannot coerce the result to a single JSON object",
                    f"The result contains {len(changes)} rows",
                )

        return validate

    def _write_response(
        self,
        store: Store,
        table: str,
        query: ParsedQuery,
        prefs: Preferences,
        changes: list[Change],
        singular: bool,
        strip: bool,
        *,
        success: int,
    ) -> HttpResponse:
        if changes and self._on_changes is not None:
            self._on_changes(changes)
        headers = [
            ("Content-Range", f"*/{len(changes) if prefs.count else '*'}"),
        ]
        if prefs.applied:
            headers.append(("Preference-Applied", ",".join(prefs.applied)))
        if prefs.return_ != "representation":
            status = 201 if success == 201 else 204
            return HttpResponse(status, headers, b"")
        columns = store.columns(table)
        rows = [change.new if change.new is not None else change.old for change in changes]
        out = [project(row, query.select, columns) for row in rows if row is not None]
        if strip:
            out = [_strip_nulls(row) for row in out]
        if singular:
            return json_response(success, out[0], headers, OBJECT_TYPE)
        return json_response(success, out, headers)

    def _check_written_columns(
        self, store: Store, table: str, query: ParsedQuery, new_columns: Iterable[str]
    ) -> None:
        known = [*store.columns(table), *new_columns]
        check_columns(table, select_columns(query.select or []), known)
        filter_query = ParsedQuery(filters=query.filters, order=query.order)
        check_columns(table, filter_query.referenced_columns(), store.columns(table))

    def _insert(
        self,
        store: Store,
        table: str,
        query: ParsedQuery,
        body: bytes,
        prefs: Preferences,
        singular: bool,
        strip: bool,
        role: Role,
    ) -> HttpResponse:
        payload = parse_json_body(body)
        objects = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(obj, dict) for obj in objects):
            raise PostgrestError(
                400, "PGRST102", "Empty or invalid json", "Expected a JSON object or an array."
            )
        rows: list[Row]
        if query.columns is not None:
            wanted = query.columns
            rows = [self._shape(obj, wanted, prefs.missing_default) for obj in objects]
        elif isinstance(payload, dict):
            rows = [dict(payload)]
        else:
            keysets = {frozenset(obj) for obj in objects}
            if len(keysets) > 1:
                raise PostgrestError(400, "PGRST102", "All object keys must match")
            rows = [dict(obj) for obj in objects]
        pk = store.tables[table]
        if query.on_conflict is not None and query.on_conflict != [pk]:
            raise PostgrestError(
                400,
                "42P10",
                "there is no unique or exclusion constraint matching the ON CONFLICT specification",
            )
        resolution: Resolution = None
        if prefs.resolution == "merge-duplicates":
            resolution = "merge-duplicates"
        elif prefs.resolution == "ignore-duplicates":
            resolution = "ignore-duplicates"
        self._check_written_columns(store, table, query, {k for row in rows for k in row})
        if role == ANON and rows:
            # No INSERT policy for anon: PostgreSQL's WITH CHECK fails before any unique or
            # conflict check, so upserts fail the same way.
            raise rls_insert_violation(table)
        changes = store.insert(
            table,
            rows,
            resolution=resolution,
            validate=self._validator(prefs, singular),
        )
        return self._write_response(
            store, table, query, prefs, changes, singular, strip, success=201
        )

    @staticmethod
    def _shape(obj: Row, columns: Sequence[str], missing_default: bool) -> Row:
        """Keep only ``columns``; absent ones are NULL unless ``Prefer: missing=default``."""
        row: Row = {}
        for name in columns:
            if name in obj:
                row[name] = obj[name]
            elif not missing_default:
                row[name] = None
        return row

    def _require_filters(self, query: ParsedQuery, verb: str) -> None:
        # Supabase loads pg-safeupdate for the API role: no unfiltered UPDATE/DELETE.
        if not query.filters:
            raise PostgrestError(400, "21000", f"{verb} requires a WHERE clause")

    def _update(
        self,
        store: Store,
        table: str,
        query: ParsedQuery,
        body: bytes,
        prefs: Preferences,
        singular: bool,
        strip: bool,
        writable: Callable[[Row], bool] | None,
    ) -> HttpResponse:
        self._require_filters(query, "UPDATE")
        payload = parse_json_body(body)
        if not isinstance(payload, dict):
            raise PostgrestError(
                400, "PGRST102", "Empty or invalid json", "PATCH expects a JSON object."
            )
        patch = (
            {k: v for k, v in payload.items() if k in query.columns}
            if query.columns is not None
            else dict(payload)
        )
        self._check_written_columns(store, table, query, patch)
        filters = query.filters
        changes = store.update(
            table,
            lambda row: (writable is None or writable(row)) and matches(filters, row),
            patch,
            validate=self._validator(prefs, singular),
        )
        return self._write_response(
            store, table, query, prefs, changes, singular, strip, success=200
        )

    def _delete(
        self,
        store: Store,
        table: str,
        query: ParsedQuery,
        prefs: Preferences,
        singular: bool,
        strip: bool,
        writable: Callable[[Row], bool] | None,
    ) -> HttpResponse:
        self._require_filters(query, "DELETE")
        self._check_written_columns(store, table, query, ())
        filters = query.filters
        changes = store.delete(
            table,
            lambda row: (writable is None or writable(row)) and matches(filters, row),
            validate=self._validator(prefs, singular),
        )
        return self._write_response(
            store, table, query, prefs, changes, singular, strip, success=200
        )
