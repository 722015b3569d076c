"""The read API's logic: ids, pages and cursors, conditional requests, response headers.

Contract (``GET`` and ``HEAD``). ``HEAD`` is answered like ``GET``, body included: the HTTP
layer in front (API Gateway, the local gateway) sends the headers only, with the
``Content-Length`` of that body (RFC 9110 section 9.3.2), so a client learns a page's size
without downloading it. A body-less ``HEAD`` reply would announce ``Content-Length: 0``.

- ``/{table}/{id}``: one cached row, its body exactly as stored. One DynamoDB read.
  ``404`` when the row is not cached or was deleted (tombstones read as missing).
- ``/{table}``: the aggregate list, one page per stored chunk of one list version, so a page
  never mixes two versions and stays far below Lambda's 6 MB response limit.
  ``?page=N`` (1-based) picks a page of the current version; ``?cursor=C`` pins a version
  (and a page; a ``page`` next to a cursor picks another page of that pinned version).
  Every page links the others of its version (``Link``: ``next``, ``prev``, ``first``,
  ``last``), each link a cursor pinning that version. Link targets are absolute URLs, stage
  included, as GitHub's API gives them (``<https://<api>/v1/articles?cursor=...>``): many
  clients (``requests``' ``r.links["next"]["url"]``) hand the raw target to the next request
  without resolving it. The URL is the one the client requested (``ReadRequest.base_url``,
  from API Gateway's ``domainName`` and ``requestContext.path``, which holds the stage or a
  custom domain's base path). Without one (an event lacking them) the targets fall back to
  query-only relative references (``<?cursor=...>``, RFC 3986 section 5.2).
  ``X-Total-Count`` is the list's row count, ``X-Page`` / ``X-Page-Count`` the position.
  A cursor whose version was retired (its chunks expired after the grace period) is ``410``:
  restart from the first page. Until then the old version is served as it was.
- ``ETag``: a row's is its content hash; a page's is ``"<list etag>-p<page>"``, the list
  version's content hash and the page number (same list content, same chunking, same page).
  ``If-None-Match`` (a list of tags, ``W/`` tags compared weakly, or ``*``) answers ``304``
  without a body; without ``If-None-Match``, ``If-Modified-Since`` is honoured.
- ``Last-Modified``: when the consumer read Supabase (``read_at`` of the row, ``modified_at``
  of the list version). ``Cache-Control``: ``public`` (``private`` when reads need IAM),
  ``max-age`` and ``stale-while-revalidate`` from the settings; errors are ``no-store``.
- Errors are JSON: ``400`` malformed id, page or cursor; ``403`` unsigned request when IAM
  is required; ``404`` unknown table, row or list; ``405`` other methods; ``410`` stale cursor.
  DynamoDB failing is ``503`` with ``Retry-After``; a client's mistake is never a ``5xx``.
- Compression is API Gateway's: the REST API has ``MinimumCompressionSize: 1024``, so bodies
  of 1 KiB or more are gzip/deflate-compressed for clients sending ``Accept-Encoding``. The
  function always answers uncompressed text (no double compression); the 6 MB Lambda limit
  applies before compression, hence the pages.

Cursors are base64url JSON carrying the version's page count, row count, ETag and time, so a
pinned page costs a single read and still answers the headers of its own version. They are
not signed: a client that edits one only changes the headers it gets back for that URL.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, unquote

from waituntil.errors import ClientError, DependencyUnavailable, ListFilling, WaitUntilError

if TYPE_CHECKING:
    from waituntil.cache_model import ListHead, ServingReads
    from waituntil.settings import ReaderSettings

READ_METHODS = ("GET", "HEAD")
ALLOW = ", ".join(READ_METHODS)
# DynamoDB allows 2048 bytes of partition key; "/<table>/" takes a few of them.
MAX_ID_BYTES = 1024
MAX_CURSOR_CHARS = 1024
MAX_PAGE = 999_999_999
# Lambda caps a synchronous response at 6 MB of JSON, in which the body is a JSON string (every
# quote escaped, non-ASCII as \\uXXXX). Headroom is left for the headers and the envelope.
MAX_RESPONSE_BYTES = 6_000_000
# An unpinned page read races with the consumer retiring the version it just read from the
# manifest only if the grace period is shorter than the read; re-reading the manifest fixes it.
PAGE_READ_ATTEMPTS = 3

_PAGE = re.compile(r"[1-9][0-9]{0,8}")
_VERSION = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_ETAG_VALUE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_QUOTED_TAG = re.compile(r'(?:W/)?"([^"]*)"')
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})(?::[0-9]{1,5})?")
_PATH_SAFE = "/%-._~!$&'()*+,;=:@"
_FORBIDDEN_ID_CATEGORIES = frozenset({"Cc", "Cs"})  # control characters, lone surrogates


# ----- errors: one HTTP status each, mapped to a response in the handler ---------------------


class ReadRefused(ClientError):
    """A request the client has to change. ``headers`` go on the error response."""

    status_code = HTTPStatus.BAD_REQUEST
    default_headers: ClassVar[Mapping[str, str]] = {}

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers: Mapping[str, str] = {**self.default_headers, **(headers or {})}


class BadReadRequest(ReadRefused):
    status_code = HTTPStatus.BAD_REQUEST


class ReadForbidden(ReadRefused):
    status_code = HTTPStatus.FORBIDDEN


class NotCached(ReadRefused):
    """Unknown table, or a row or list the cache does not hold."""

    status_code = HTTPStatus.NOT_FOUND


class MethodNotAllowed(ReadRefused):
    status_code = HTTPStatus.METHOD_NOT_ALLOWED
    default_headers: ClassVar[Mapping[str, str]] = {"Allow": ALLOW}


class StaleCursor(ReadRefused):
    """The cursor's list version was retired: the client restarts from the first page,
    which the ``Link`` header (``rel="first"``) names."""

    status_code = HTTPStatus.GONE


class ResponseTooLarge(WaitUntilError):
    """A stored body too large for one Lambda response (a huge, very compressible row)."""


# ----- ports and shapes ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadRequest:
    """What a read needs from the HTTP request, as API Gateway delivered it."""

    method: str
    table: str
    raw_id: str | None = None  # still percent-encoded, as REST APIs deliver path parameters
    page: str | None = None
    cursor: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    caller_arn: str | None = None  # requestContext.identity.userArn, set by IAM authorization
    # The requested URL without its query (scheme, host, stage and path), for absolute Link
    # targets; empty: query-only relative targets.
    base_url: str = ""


@dataclass(frozen=True)
class ReadResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""  # empty for 304


@dataclass(frozen=True)
class ListVersion:
    """One published version of a table's list: what a cursor pins."""

    table: str
    version: str
    pages: int
    row_count: int
    etag: str
    modified_at: datetime

    @classmethod
    def of(cls, head: ListHead) -> ListVersion:
        return cls(
            table=head.table,
            version=head.version,
            # An empty list still has one (empty) page.
            pages=max(head.chunk_count, 1),
            row_count=head.row_count,
            etag=head.etag,
            modified_at=datetime.fromtimestamp(head.modified_at_ns // 1_000_000_000, tz=UTC),
        )


# ----- the two reads ---------------------------------------------------------------------------


def read_item(store: ServingReads, request: ReadRequest, settings: ReaderSettings) -> ReadResponse:
    check_access(request, settings)
    table = check_table(request.table, settings.cached_tables)
    key = parse_id(request.raw_id)
    found = store.get_row_body(table, key)
    if found is None:
        raise NotCached(f"no row {key!r} in {table}")
    state, body = found
    headers = {
        "ETag": quote_etag(state.body.etag if state.body else ""),
        "Last-Modified": http_date(datetime.fromtimestamp(state.read_at_ns // 10**9, tz=UTC)),
        "Cache-Control": cache_control(settings),
    }
    return _conditional_or_full(request, headers, body)


def read_page(store: ServingReads, request: ReadRequest, settings: ReaderSettings) -> ReadResponse:
    check_access(request, settings)
    table = check_table(request.table, settings.cached_tables)
    page = parse_page(request.page)
    if request.cursor is not None:
        pinned, cursor_page = decode_cursor(request.cursor, table)
        page = _within(pinned, page or cursor_page)
        head = store.get_version(table, pinned.version)
        served = _page_of(store, head, page) if head is not None else None
        if served is None:
            raise StaleCursor(
                "the list changed and the version this cursor pins is no longer kept; "
                "restart from the first page (no cursor)",
                {"Link": f'<{request.base_url}?page=1>; rel="first"'},
            )
        etag, body = served
        headers = page_headers(pinned, page, etag, settings, request.base_url)
        return _conditional_or_full(request, headers, body)
    for _ in range(PAGE_READ_ATTEMPTS):
        head = store.get_head(table)
        if head is None:
            raise NotCached(f"the list of {table} is not cached yet")
        if not head.complete:
            raise ListFilling(
                f"the list of {table} is still filling ({head.row_count} rows so far); "
                "rows are served one by one meanwhile"
            )
        version = ListVersion.of(head)
        page = _within(version, page or 1)
        served = _page_of(store, head, page)
        if served is not None:
            etag, body = served
            headers = page_headers(version, page, etag, settings, request.base_url)
            return _conditional_or_full(request, headers, body)
    raise DependencyUnavailable(f"the list of {table} kept changing while being read")


def _page_of(store: ServingReads, head: ListHead, page: int) -> tuple[str, str] | None:
    """Page ``page`` (1-based) of a version: its chunk's etag and JSON array; None once the
    version's nodes have expired."""
    if head.chunk_count == 0:
        return f"{head.etag}-empty", "[]"
    offset = page - 1
    for ref in head.pages:
        if offset < ref.chunk_count:
            index = store.get_index_page(ref.key)
            if index is None:
                return None
            chunk_ref = index.chunks[offset]
            chunk = store.get_served_chunk(chunk_ref.key)
            return None if chunk is None else (chunk_ref.etag, chunk.body)
        offset -= ref.chunk_count
    return None


def _within(version: ListVersion, page: int) -> int:
    if page > version.pages:
        raise BadReadRequest(f"page {page} is past the last page ({version.pages})")
    return page


def _conditional_or_full(request: ReadRequest, headers: dict[str, str], body: str) -> ReadResponse:
    if is_not_modified(request, headers):
        return ReadResponse(HTTPStatus.NOT_MODIFIED, headers)
    check_response_size(body)
    full = {"Content-Type": "application/json", **headers}
    # HEAD too carries the body: the gateway drops it and keeps its Content-Length.
    return ReadResponse(HTTPStatus.OK, full, body)


# ----- request parsing -------------------------------------------------------------------------


def check_access(request: ReadRequest, settings: ReaderSettings) -> None:
    """With IAM reads, API Gateway has already refused unsigned requests; this is the backstop."""
    if settings.read_access == "iam" and not request.caller_arn:
        raise ReadForbidden("reads need IAM (SigV4) authorization")


def check_table(table: str, cached_tables: tuple[str, ...]) -> str:
    if table not in cached_tables:
        raise NotCached(f"no cached table named {table[:100]!r}")
    return table


def parse_id(raw: str | None) -> str:
    """The row key from the path: percent-decoded once, non-empty, bounded, printable."""
    if not raw:
        raise BadReadRequest("the id is empty")
    try:
        key = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadReadRequest("the id is not percent-encoded UTF-8") from None
    if not key:
        raise BadReadRequest("the id is empty")
    if any(unicodedata.category(char) in _FORBIDDEN_ID_CATEGORIES for char in key):
        raise BadReadRequest("the id contains control characters")
    if len(key.encode()) > MAX_ID_BYTES:
        raise BadReadRequest(f"the id is longer than {MAX_ID_BYTES} bytes")
    return key


def base_url(domain: str | None, path: str | None, scheme: str | None) -> str:
    """The requested URL without its query, or "" when the request does not say enough.

    ``domain`` is API Gateway's ``requestContext.domainName`` (or the Host header), ``path`` its
    ``requestContext.path`` (the stage, or a custom domain's base path, in front), ``scheme``
    the ``X-Forwarded-Proto`` header. Anything unexpected gives "" (relative links) rather
    than a link to a host or scheme a client slipped into its headers.
    """
    if not domain or not path or not _DOMAIN.fullmatch(domain) or not path.startswith("/"):
        return ""
    scheme = (scheme or "https").strip().lower()
    if scheme not in ("http", "https"):
        return ""
    # Already percent-encoded characters stay as they are; anything else unsafe is encoded.
    return f"{scheme}://{domain.lower()}{quote(path, safe=_PATH_SAFE)}"


def parse_page(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not _PAGE.fullmatch(raw):
        raise BadReadRequest(f"page must be an integer from 1 to {MAX_PAGE}")
    return int(raw)


# ----- cursors ---------------------------------------------------------------------------------


def encode_cursor(version: ListVersion, page: int) -> str:
    payload = {
        "t": version.table,
        "v": version.version,
        "p": page,
        "n": version.pages,
        "c": version.row_count,
        "e": version.etag,
        "m": int(version.modified_at.timestamp()),
    }
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, table: str) -> tuple[ListVersion, int]:
    """The version and page a cursor pins; ``BadReadRequest`` for anything we did not issue."""
    if not token or len(token) > MAX_CURSOR_CHARS:
        raise BadReadRequest("malformed cursor")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError):
        raise BadReadRequest("malformed cursor") from None
    if not isinstance(payload, dict) or not _valid_cursor(payload):
        raise BadReadRequest("malformed cursor")
    if payload["t"] != table:
        raise BadReadRequest("this cursor belongs to another list")
    version = ListVersion(
        table=table,
        version=payload["v"],
        pages=payload["n"],
        row_count=payload["c"],
        etag=payload["e"],
        modified_at=datetime.fromtimestamp(payload["m"], tz=UTC),
    )
    return version, payload["p"]


def _valid_cursor(payload: dict[str, Any]) -> bool:
    def count(name: str, low: int) -> bool:
        value = payload.get(name)
        # bool is an int in Python; a cursor never holds one.
        return type(value) is int and low <= value <= MAX_PAGE

    def text(name: str, pattern: re.Pattern[str]) -> bool:
        value = payload.get(name)
        return isinstance(value, str) and pattern.fullmatch(value) is not None

    return (
        isinstance(payload.get("t"), str)
        and text("v", _VERSION)
        and text("e", _ETAG_VALUE)
        and count("n", 1)
        and count("p", 1)
        and payload["p"] <= payload["n"]
        and count("c", 0)
        and type(payload.get("m")) is int
        and 0 <= payload["m"] < 2**37  # within datetime's range
    )


# ----- response headers ------------------------------------------------------------------------


def page_headers(
    version: ListVersion,
    page: int,
    chunk_etag: str,
    settings: ReaderSettings,
    list_url: str = "",
) -> dict[str, str]:
    return {
        # The page's content hash: the same rows give the same tag in any list version.
        "ETag": quote_etag(f"{chunk_etag}-p{page}"),
        "Last-Modified": http_date(version.modified_at),
        "Cache-Control": cache_control(settings),
        "Link": link_header(version, page, list_url),
        "X-Total-Count": str(version.row_count),
        "X-Page": str(page),
        "X-Page-Count": str(version.pages),
    }


def link_header(version: ListVersion, page: int, list_url: str = "") -> str:
    """``next``/``prev``/``first``/``last`` of this version; targets are ``list_url`` (the
    requested URL, see ``base_url``) with a cursor, or only the query when it is empty."""
    relations: list[tuple[str, int]] = []
    if page < version.pages:
        relations.append(("next", page + 1))
    if page > 1:
        relations.append(("prev", page - 1))
    relations += [("first", 1), ("last", version.pages)]
    # base64url needs no percent-encoding in a query.
    return ", ".join(
        f'<{list_url}?cursor={encode_cursor(version, target)}>; rel="{relation}"'
        for relation, target in relations
    )


def cache_control(settings: ReaderSettings) -> str:
    # Responses to signed requests must not land in shared caches unless marked public.
    visibility = "private" if settings.read_access == "iam" else "public"
    return (
        f"{visibility}, max-age={settings.cache_max_age_s}, "
        f"stale-while-revalidate={settings.stale_while_revalidate_s}"
    )


def quote_etag(value: str) -> str:
    return f'"{value}"'


def http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def parse_timestamp(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ----- conditional requests (RFC 9110 section 13) ----------------------------------------------


def is_not_modified(request: ReadRequest, headers: Mapping[str, str]) -> bool:
    """Whether a GET/HEAD with these preconditions gets ``304`` for a response with ``headers``."""
    if request.if_none_match is not None:
        return etag_matches(request.if_none_match, headers["ETag"])
    if request.if_modified_since is not None:
        return not_modified_since(request.if_modified_since, headers["Last-Modified"])
    return False


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison: ``W/"x"`` matches ``"x"``; ``*`` matches any current representation."""
    value = if_none_match.strip()
    if value == "*":
        return True
    tags = _QUOTED_TAG.findall(value)
    if not tags:
        # Lenient: some clients send tags unquoted.
        tags = [part.strip().removeprefix("W/") for part in value.split(",")]
    return _opaque(etag) in tags


def not_modified_since(if_modified_since: str, last_modified: str) -> bool:
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False  # an invalid date is ignored (RFC 9110 section 13.1.3)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return parsedate_to_datetime(last_modified) <= since


def _opaque(etag: str) -> str:
    return etag.removeprefix("W/").strip('"')


def check_response_size(body: str) -> None:
    # Exact size only when it could matter: one character escapes to at most 12 bytes.
    if len(body) * 12 > MAX_RESPONSE_BYTES and len(json.dumps(body)) > MAX_RESPONSE_BYTES:
        raise ResponseTooLarge(
            f"the stored body ({len(body)} characters) exceeds what one Lambda response carries"
        )
