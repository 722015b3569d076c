"""The read API's two reads: one cached row (``read_item``), one page of a list (``read_page``).

Contract (``GET`` and ``HEAD``). ``HEAD`` is answered like ``GET``, body included: the HTTP
layer in front (API Gateway, the local gateway) sends the headers only, with the
``Content-Length`` of that body (RFC 9110 section 9.3.2), so a client learns a page's size
without downloading it. A body-less ``HEAD`` reply would announce ``Content-Length: 0``.

- ``/{table}/{id}``: one cached row, its body exactly as stored. One DynamoDB read.
  ``404`` when the row is not cached or was deleted (tombstones read as missing), or was
  cached under another table policy than the one in force (it may hold what the policy now
  hides; the consumer rewrites it).
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
  restart from the first page. Until then the old version is served as it was. A list built
  with another table policy than the one in force is never served: ``503`` (``Retry-After``)
  while it is rebuilt, ``410`` for a cursor pinning one of its versions.
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

This module holds the two reads; the pieces they are made of have a module each:
``read.request`` (the request and its checks), ``read.cursor`` (cursors and ``Link``),
``read.preconditions`` (validators and ``304``), ``read.response`` (headers, size) and the
errors in ``errors``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING

from waituntil.core.errors import BadReadRequest, NotCached, StaleCursor
from waituntil.read.cache_client import read_current_version
from waituntil.read.cursor import ListVersion, decode_cursor
from waituntil.read.preconditions import http_date, is_not_modified, quote_etag
from waituntil.read.request import ReadRequest, check_access, check_table, parse_id, parse_page
from waituntil.read.response import ReadResponse, cache_control, check_response_size, page_headers

if TYPE_CHECKING:
    from waituntil.cache.model import ListHead, ServingReads
    from waituntil.core.settings import ReaderSettings


def read_item(store: ServingReads, request: ReadRequest, settings: ReaderSettings) -> ReadResponse:
    check_access(request, settings)
    table = check_table(request.table, settings.cached_tables)
    key = parse_id(request.raw_id)
    found = store.get_row_body(table, key)
    if found is None or found[0].policy != settings.policy(table).fingerprint:
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
    policy = settings.policy(table).fingerprint
    page = parse_page(request.page)
    if request.cursor is not None:
        pinned, cursor_page = decode_cursor(request.cursor, table)
        page = _within(pinned, page or cursor_page)
        head = store.get_version(table, pinned.version)
        served = _page_of(store, head, page) if head is not None and head.policy == policy else None
        if served is None:
            raise StaleCursor(
                "the list changed and the version this cursor pins is no longer kept; "
                "restart from the first page (no cursor)",
                {"Link": f'<{request.base_url}?page=1>; rel="first"'},
            )
        etag, body = served
        headers = page_headers(pinned, page, etag, settings, request.base_url)
        return _conditional_or_full(request, headers, body)

    def serve(head: ListHead) -> ReadResponse | None:
        version = ListVersion.of(head)
        number = _within(version, page or 1)
        served = _page_of(store, head, number)
        if served is None:
            return None
        etag, body = served
        headers = page_headers(version, number, etag, settings, request.base_url)
        return _conditional_or_full(request, headers, body)

    response = read_current_version(store, table, serve, policy=policy)
    if response is None:
        raise NotCached(f"the list of {table} is not cached yet")
    return response


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
