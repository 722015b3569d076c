"""A list's chunks fit what serves and stores them: a page within one Lambda response, a chunk
within one DynamoDB item, whatever the rows' sizes (under moto: DynamoDB refuses items over
405,000 bytes; S3 for the rows kept out of line)."""

from __future__ import annotations

import base64
import random
from typing import Any

from tests.conftest import EmulatedAws
from waituntil.adapters.blob_store import S3BlobStore
from waituntil.adapters.cache_store import CacheStore
from waituntil.cache.layout import MAX_STORED_BODY_BYTES, encode_text, fresh_rows
from waituntil.cache.list_patch import ListSizes
from waituntil.core.list_order import ListOrder
from waituntil.read.response import check_response_size
from waituntil.sync.list_publish import publish_list

ORDER = ListOrder("id")


def _store(aws: EmulatedAws) -> CacheStore:
    blobs = S3BlobStore(aws.stack.bucket_names["BlobBucket"], aws.s3)
    return CacheStore(aws.stack.table_name, aws.dynamodb, blobs=blobs, sleep=lambda _: None)


def _noise(size: int, seed: int) -> str:
    """Text that compresses no better than base64 does (about 3/4)."""
    generator = random.Random(seed)
    return base64.b64encode(generator.randbytes(size * 3 // 4 + 3)).decode()[:size]


def _publish(store: CacheStore, rows: list[dict[str, Any]], chunk_bytes: int = 64_000) -> None:
    keys = [str(row["id"]) for row in rows]
    store.write_rows("articles", fresh_rows(keys, rows, ORDER), read_at_ns=100, order=ORDER)
    publish_list(
        store,
        "articles",
        keys,
        order=ORDER,
        sizes=ListSizes(chunk_bytes=chunk_bytes),
        clock_ns=lambda: 100,
        complete=True,
    )


def _pages(store: CacheStore) -> list[str]:
    """Every page of the current version, as the reader loads and checks it."""
    head = store.get_head("articles")
    assert head is not None
    pages = []
    for ref in head.pages:
        index = store.get_index_page(ref.key)
        assert index is not None
        for chunk_ref in index.chunks:
            chunk = store.get_served_chunk(chunk_ref.key)
            assert chunk is not None
            check_response_size(chunk.body)  # what the reader refuses with a 500
            pages.append(chunk.body)
    return pages


def test_thirty_rows_of_one_and_a_half_megabytes_are_served_page_by_page(
    aws: EmulatedAws,
) -> None:
    # Given 30 rows of 1.5 MB each, kept in S3 (too large for an item)
    store = _store(aws)
    rows = [{"id": key, "body": _noise(1_500_000, key)} for key in range(1, 31)]
    # When they are listed
    _publish(store, rows)
    # Then every page fits one Lambda response, and together they are the list
    pages = _pages(store)
    assert len(pages) >= 10
    assert [row["id"] for page in pages for row in _ids(page)] == list(range(1, 31))


def test_twelve_rows_of_600_kilobytes_never_make_an_unservable_page(aws: EmulatedAws) -> None:
    # Given 12 rows of 600 KB (in S3) next to small rows, as anyone allowed to write a few
    # large public rows could make them
    store = _store(aws)
    rows = [{"id": key, "title": f"small {key}"} for key in range(1, 41)]
    rows += [{"id": key, "body": _noise(600_000, key)} for key in range(41, 53)]
    # When listed / Then every page is served, small rows included
    _publish(store, rows)
    pages = _pages(store)
    assert sum(len(_ids(page)) for page in pages) == 52


def test_a_row_just_under_the_inline_limit_never_shares_an_oversized_chunk(
    aws: EmulatedAws,
) -> None:
    # Given a row whose compressed body is just under what an item holds inline, between rows
    # of about 12 KB (a deployment with 128 KB chunks, whose small tails merge up to 64 KB)
    store = _store(aws)
    big = _noise(495_000, 7)
    stored = encode_text(big)["body_z"]["B"]
    assert MAX_STORED_BODY_BYTES - 10_000 < len(stored) < MAX_STORED_BODY_BYTES
    rows: list[dict[str, Any]] = [{"id": key, "text": _noise(12_000, key)} for key in range(1, 11)]
    rows[4] = {"id": 5, "text": big}
    # When listed / Then the publish succeeds (every chunk item is under DynamoDB's limit)
    _publish(store, rows, chunk_bytes=128_000)
    assert sum(len(_ids(page)) for page in _pages(store)) == 10


def _ids(page: str) -> list[dict[str, Any]]:
    import json

    rows: list[dict[str, Any]] = json.loads(page)
    return rows
