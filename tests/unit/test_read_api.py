"""The two reads against a fake store: the reads they cost, retries, refusals, headers."""

from __future__ import annotations

import pytest

from tests.read_fakes import POLICY, VERSION, FakeStore, manifest
from waituntil.cache.model import RowBody, RowState
from waituntil.core.errors import (
    BadReadRequest,
    DependencyUnavailable,
    NotCached,
    ReadForbidden,
    StaleCursor,
)
from waituntil.core.settings import ReaderSettings
from waituntil.read.api import read_item, read_page
from waituntil.read.cursor import encode_cursor
from waituntil.read.request import ReadRequest


def _settings(**overrides: str) -> ReaderSettings:
    return ReaderSettings.model_validate(
        {"CACHE_TABLE_NAME": "cache", "CACHED_TABLES": "articles,authors", **overrides}
    )


def test_an_item_read_is_one_read_and_serves_the_stored_text() -> None:
    # Given a stored row whose text is not what json.dumps would produce
    stored = '{"id": 1,  "title":"caf\\u00e9"}'
    state = RowState(
        key="1",
        body=RowBody(text=stored, etag="abc"),
        read_at_ns=1_795_867_200_000_000_000,
        position=(1,),
        policy=POLICY,
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
    store = FakeStore(manifests=[manifest("v1", 1)], chunks={("v1", 0): "[]"})
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
        manifests=[manifest("v1", 2), manifest("v2", 1, etag="f" * 32)],
        chunks={("v2", 0): '[{"id":2}]'},
    )
    # When page 1 is read without a cursor
    response = read_page(store, ReadRequest(method="GET", table="articles"), _settings())
    # Then it comes whole from v2, with v2's headers (the page's tag is its chunk's hash)
    assert (response.status, response.body) == (200, '[{"id":2}]')
    assert response.headers["ETag"] == '"c0-p1"'
    assert response.headers["X-Page-Count"] == "1"


def test_a_list_that_keeps_changing_is_503_not_a_mix() -> None:
    store = FakeStore(manifests=[manifest("v1", 1)])  # the chunk never exists
    with pytest.raises(DependencyUnavailable):
        read_page(store, ReadRequest(method="GET", table="articles"), _settings())


def test_a_pinned_page_needs_three_reads_and_a_retired_one_is_gone() -> None:
    # Given a cursor on page 2 of VERSION, whose chunk is still kept
    store = FakeStore(
        chunks={(VERSION.version, 1): "[2]"},
        versions={VERSION.version: manifest(VERSION.version, 3)},
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
    store = FakeStore(manifests=[manifest("v1", 2)])
    with pytest.raises(BadReadRequest, match="past the last page"):
        read_page(store, ReadRequest(method="GET", table="articles", page="3"), _settings())
