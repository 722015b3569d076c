"""Read API logic without AWS: ids, pages, cursors, conditional requests, headers."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from waituntil.cache_model import (
    ChunkRef,
    IndexPage,
    IndexRef,
    ListHead,
    RowBody,
    RowState,
    ServedChunk,
)
from waituntil.errors import DependencyUnavailable
from waituntil.read_api import (
    MAX_ID_BYTES,
    BadReadRequest,
    ListVersion,
    NotCached,
    ReadForbidden,
    ReadRequest,
    ResponseTooLarge,
    StaleCursor,
    base_url,
    check_response_size,
    decode_cursor,
    encode_cursor,
    etag_matches,
    http_date,
    is_not_modified,
    link_header,
    not_modified_since,
    parse_id,
    parse_page,
    read_item,
    read_page,
)
from waituntil.settings import ReaderSettings

MODIFIED = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
VERSION = ListVersion(
    table="articles",
    version="1796000000000000000-0123456789ab",
    pages=3,
    row_count=25,
    etag="0123456789abcdef0123456789abcdef",
    modified_at=MODIFIED,
)


def _settings(**overrides: str) -> ReaderSettings:
    return ReaderSettings.model_validate(
        {"CACHE_TABLE_NAME": "cache", "CACHED_TABLES": "articles,authors", **overrides}
    )


def _manifest(version: str, chunks: int, etag: str = "e" * 32) -> ListHead:
    """A head of ``chunks`` one-row chunks in one index page (node keys derive from the
    version, so the fake store can serve them)."""
    return ListHead(
        table="articles",
        version=version,
        pages=(
            IndexRef(key=f"{version}#i", first=(1,), chunk_count=chunks, row_count=chunks, size=10),
        ),
        row_count=chunks,
        list_bytes=10,
        etag=etag,
        read_at_ns=1,
        modified_at_ns=1_795_867_200_000_000_000,  # 2026-11-28T12:00:00Z
    )


@dataclass
class FakeStore:
    """Serves heads in turn (one per get_head call), frozen versions, and whichever chunks
    exist ((version, index) -> served JSON)."""

    manifests: list[ListHead] = field(default_factory=list)
    chunks: dict[tuple[str, int], str] = field(default_factory=dict)
    rows: dict[str, tuple[RowState, str]] = field(default_factory=dict)
    versions: dict[str, ListHead] = field(default_factory=dict)
    reads: int = 0

    def get_row_body(self, table: str, key: str) -> tuple[RowState, str] | None:
        self.reads += 1
        return self.rows.get(key)

    def get_head(self, table: str) -> ListHead | None:
        self.reads += 1
        if not self.manifests:
            return None
        head = self.manifests.pop(0) if len(self.manifests) > 1 else self.manifests[0]
        self.versions.setdefault(head.version, head)
        return head

    def get_version(self, table: str, version: str) -> ListHead | None:
        self.reads += 1
        return self.versions.get(version)

    def get_index_page(self, key: str) -> IndexPage | None:
        self.reads += 1
        version = key.removesuffix("#i")
        head = self.versions.get(version)
        count = head.chunk_count if head else 0
        refs = tuple(
            ChunkRef(key=f"{version}#c{n}", etag=f"c{n}", first=(n,), row_count=1, size=3)
            for n in range(count)
        )
        return IndexPage(key=key, chunks=refs)

    def get_served_chunk(self, key: str) -> ServedChunk | None:
        self.reads += 1
        version, _, index = key.rpartition("#c")
        body = self.chunks.get((version, int(index)))
        return None if body is None else ServedChunk(key=key, body=body, row_count=1)


# ----- ids and pages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("42", "42"),
        ("3f2b8c1e-9d4a-4c6b-8f00-1a2b3c4d5e6f", "3f2b8c1e-9d4a-4c6b-8f00-1a2b3c4d5e6f"),
        ("hello%20world", "hello world"),
        ("caf%C3%A9", "café"),
        ("naïve", "naïve"),
        ("a%2Fb", "a/b"),
        ("x" * MAX_ID_BYTES, "x" * MAX_ID_BYTES),
    ],
)
def test_ids_are_percent_decoded_once(raw: str, key: str) -> None:
    # Given an id as API Gateway passes it / When parsed / Then it is the cache key
    assert parse_id(raw) == key


@pytest.mark.parametrize(
    "raw",
    [None, "", "%0A", "bad%00id", "tab%09", "del%7F", "c1%C2%85", "%FF", "%ED%A0%80", "x" * 1025],
)
def test_malformed_ids_are_refused(raw: str | None) -> None:
    # Given an empty, control-character, non-UTF-8 or too long id / When parsed / Then 400
    with pytest.raises(BadReadRequest):
        parse_id(raw)


@pytest.mark.parametrize(("raw", "page"), [(None, None), ("1", 1), ("27", 27)])
def test_pages_are_positive_integers(raw: str | None, page: int | None) -> None:
    assert parse_page(raw) == page


@pytest.mark.parametrize("raw", ["0", "-1", "01", "1.5", "two", "", " 1", "1e3", "9" * 10])
def test_bad_pages_are_refused(raw: str) -> None:
    with pytest.raises(BadReadRequest):
        parse_page(raw)


# ----- cursors --------------------------------------------------------------------------------


def test_a_cursor_round_trips_its_version_and_page() -> None:
    # Given a cursor for page 2 of a version
    token = encode_cursor(VERSION, 2)
    # When decoded for the same table
    version, page = decode_cursor(token, "articles")
    # Then it pins that version (counts, etag, time) and page, and is URL-safe as it stands
    assert (version, page) == (VERSION, 2)
    assert token.replace("-", "").replace("_", "").isalnum()


def _forge(**fields: object) -> str:
    payload = json.loads(base64.urlsafe_b64decode(encode_cursor(VERSION, 1) + "=="))
    payload.update(fields)
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "not-a-cursor",
        "",
        "!!!!",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "A" * 2000,
        _forge(p=4),  # past its own page count
        _forge(p=0),
        _forge(n=True),
        _forge(v="../other"),
        _forge(e='"injected'),
        _forge(m="yesterday"),
        _forge(c=-1),
    ],
)
def test_malformed_cursors_are_refused(token: str) -> None:
    with pytest.raises(BadReadRequest, match="malformed cursor"):
        decode_cursor(token, "articles")


def test_a_cursor_of_another_table_is_refused() -> None:
    with pytest.raises(BadReadRequest, match="another list"):
        decode_cursor(encode_cursor(VERSION, 1), "authors")


# ----- Link headers ---------------------------------------------------------------------------


def _relations(header: str, base: str = "") -> dict[str, int]:
    result: dict[str, int] = {}
    for part in header.split(", "):
        target, relation = part.split("; ")
        assert target.startswith(f"<{base}?cursor=")
        token = target.removeprefix(f"<{base}?cursor=").removesuffix(">")
        version, page = decode_cursor(token, "articles")
        assert version == VERSION  # every link pins the same version
        result[relation.removeprefix('rel="').removesuffix('"')] = page
    return result


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (1, {"next": 2, "first": 1, "last": 3}),
        (2, {"next": 3, "prev": 1, "first": 1, "last": 3}),
        (3, {"prev": 2, "first": 1, "last": 3}),
    ],
)
def test_links_name_the_neighbours_within_one_version(page: int, expected: dict[str, int]) -> None:
    assert _relations(link_header(VERSION, page)) == expected


def test_link_targets_are_absolute_when_the_request_url_is_known() -> None:
    # Given the URL a client requested, stage included
    base = "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/articles"
    # When the links of page 2 are built / Then every target is that URL with a cursor
    assert _relations(link_header(VERSION, 2, base), base) == {
        "next": 3,
        "prev": 1,
        "first": 1,
        "last": 3,
    }


@pytest.mark.parametrize(
    ("domain", "path", "scheme", "expected"),
    [
        (
            "abc.execute-api.eu-west-1.amazonaws.com",
            "/v1/articles",
            None,
            "https://abc.execute-api.eu-west-1.amazonaws.com/v1/articles",
        ),
        ("127.0.0.1:3000", "/v1/articles", "http", "http://127.0.0.1:3000/v1/articles"),
        ("API.example.com", "/base/articles", "HTTPS", "https://api.example.com/base/articles"),
        ("h.example", "/v1/a b", "https", "https://h.example/v1/a%20b"),  # encoded once
        ("h.example", "/v1/a%20b", "https", "https://h.example/v1/a%20b"),
        (None, "/v1/articles", "https", ""),  # no host: relative links
        ("h.example", None, "https", ""),
        ("h.example", "articles", "https", ""),
        ("evil.example/x?", "/v1/articles", "https", ""),  # not a host name
        ("user@evil.example", "/v1/articles", "https", ""),
        ("h.example", "/v1/articles", "javascript", ""),  # neither http nor https
    ],
)
def test_base_url_trusts_only_a_host_name_a_path_and_http_or_https(
    domain: str | None, path: str | None, scheme: str | None, expected: str
) -> None:
    assert base_url(domain, path, scheme) == expected


# ----- conditional requests -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_none_match", "matches"),
    [
        ('"abc"', True),
        ('W/"abc"', True),  # weak comparison
        ('"x", W/"abc" , "y"', True),
        ("*", True),
        ("abc", True),  # unquoted, accepted leniently
        ('"abd"', False),
        ('"x", "y"', False),
        ("", False),
    ],
)
def test_if_none_match_uses_weak_comparison(if_none_match: str, matches: bool) -> None:
    assert etag_matches(if_none_match, '"abc"') is matches


@pytest.mark.parametrize(
    ("since", "not_modified"),
    [
        ("Sat, 28 Nov 2026 12:00:00 GMT", True),
        ("Sat, 28 Nov 2026 13:00:00 GMT", True),
        ("Sat, 28 Nov 2026 11:59:59 GMT", False),
        ("yesterday", False),
        ("", False),
    ],
)
def test_if_modified_since_compares_http_dates(since: str, not_modified: bool) -> None:
    assert not_modified_since(since, http_date(MODIFIED)) is not_modified


def test_if_none_match_takes_precedence_over_if_modified_since() -> None:
    # Given a stale etag but a recent If-Modified-Since / When evaluated / Then the etag decides
    request = ReadRequest(
        method="GET",
        table="articles",
        if_none_match='"old"',
        if_modified_since="Sun, 29 Nov 2026 00:00:00 GMT",
    )
    headers = {"ETag": '"new"', "Last-Modified": http_date(MODIFIED)}
    assert is_not_modified(request, headers) is False


# ----- reads against a fake store -------------------------------------------------------------


def test_an_item_read_is_one_read_and_serves_the_stored_text() -> None:
    # Given a stored row whose text is not what json.dumps would produce
    stored = '{"id": 1,  "title":"caf\\u00e9"}'
    state = RowState(
        key="1",
        body=RowBody(text=stored, etag="abc"),
        read_at_ns=1_795_867_200_000_000_000,
        position=(1,),
    )
    store = FakeStore(rows={"1": (state, stored)})
    # When read
    response = read_item(
        store, ReadRequest(method="GET", table="articles", raw_id="1"), _settings()
    )
    # Then the body is the stored text byte for byte, after a single read
    assert (response.status, response.body, store.reads) == (200, stored, 1)
    assert response.headers["ETag"] == '"abc"'
    assert response.headers["Last-Modified"] == "Sat, 28 Nov 2026 12:00:00 GMT"


def test_an_unknown_table_is_404_without_reading() -> None:
    store = FakeStore()
    with pytest.raises(NotCached):
        read_item(store, ReadRequest(method="GET", table="secrets", raw_id="1"), _settings())
    assert store.reads == 0


def test_iam_reads_refuse_unsigned_requests_and_are_private() -> None:
    # Given reads that need IAM
    settings = _settings(READ_ACCESS="iam")
    store = FakeStore(manifests=[_manifest("v1", 1)], chunks={("v1", 0): "[]"})
    # When a request arrives without an IAM caller / Then 403
    with pytest.raises(ReadForbidden):
        read_page(store, ReadRequest(method="GET", table="articles"), settings)
    # When a signed one arrives / Then it is served, and shared caches are told to keep out
    signed = ReadRequest(method="GET", table="articles", caller_arn="arn:aws:iam::1:user/a")
    response = read_page(store, signed, settings)
    assert response.status == 200
    assert response.headers["Cache-Control"].startswith("private, ")


def test_a_page_read_rereads_the_manifest_if_its_version_was_retired_meanwhile() -> None:
    # Given the manifest names v1, but v1 is retired (and gone) before its chunk is read
    store = FakeStore(
        manifests=[_manifest("v1", 2), _manifest("v2", 1, etag="f" * 32)],
        chunks={("v2", 0): '[{"id":2}]'},
    )
    # When page 1 is read without a cursor
    response = read_page(store, ReadRequest(method="GET", table="articles"), _settings())
    # Then it comes whole from v2, with v2's headers (the page's tag is its chunk's hash)
    assert (response.status, response.body) == (200, '[{"id":2}]')
    assert response.headers["ETag"] == '"c0-p1"'
    assert response.headers["X-Page-Count"] == "1"


def test_a_list_that_keeps_changing_is_503_not_a_mix() -> None:
    store = FakeStore(manifests=[_manifest("v1", 1)])  # the chunk never exists
    with pytest.raises(DependencyUnavailable):
        read_page(store, ReadRequest(method="GET", table="articles"), _settings())


def test_a_pinned_page_needs_three_reads_and_a_retired_one_is_gone() -> None:
    # Given a cursor on page 2 of VERSION, whose chunk is still kept
    store = FakeStore(
        chunks={(VERSION.version, 1): "[2]"},
        versions={VERSION.version: _manifest(VERSION.version, 3)},
    )
    request = ReadRequest(method="GET", table="articles", cursor=encode_cursor(VERSION, 2))
    # When read / Then three reads (the frozen version, its index page, the chunk), and the
    # headers of the pinned version
    response = read_page(store, request, _settings())
    assert (response.body, store.reads) == ("[2]", 3)
    assert response.headers["X-Total-Count"] == "25"
    # When page 3 of the same version is asked for, and that chunk is gone / Then 410
    with pytest.raises(StaleCursor):
        read_page(
            store,
            ReadRequest(method="GET", table="articles", cursor=request.cursor, page="3"),
            _settings(),
        )


def test_a_page_past_the_end_is_400() -> None:
    store = FakeStore(manifests=[_manifest("v1", 2)])
    with pytest.raises(BadReadRequest, match="past the last page"):
        read_page(store, ReadRequest(method="GET", table="articles", page="3"), _settings())


def test_a_body_too_large_for_lambda_is_refused_before_lambda_fails() -> None:
    # Given a body that JSON-escapes past 6 MB (every quote doubles) / Then it is refused
    with pytest.raises(ResponseTooLarge):
        check_response_size('"' * 3_100_000)
    check_response_size("x" * 500_000)  # ordinary pages pass without being measured
