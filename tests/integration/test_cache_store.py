"""CacheStore under moto DynamoDB (table from template.yaml): races, versions, retries."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from tests.conftest import EmulatedAws
from tests.faults import UnprocessedWrites
from waituntil.adapters.cache_store import CacheStore
from waituntil.cache.layout import fresh_rows
from waituntil.cache.list_patch import ListSizes
from waituntil.cache.model import PublishResult
from waituntil.core.errors import DependencyUnavailable
from waituntil.core.list_order import ListOrder
from waituntil.read.cache_client import get_item, get_list
from waituntil.sync.list_publish import publish_list


def _store(aws: EmulatedAws, client: Any = None, now: float = 1_800_000_000.0) -> CacheStore:
    return CacheStore(
        aws.stack.table_name,
        client or aws.dynamodb,
        sleep=lambda _: None,
        clock=lambda: now,
        grace_s=60,
        tombstone_ttl_s=60,
    )


ORDER = ListOrder("id")


def _sync(
    store: CacheStore,
    rows: list[dict[str, Any]],
    touched: list[int],
    read_at_ns: int,
    chunk_bytes: int = 4096,
) -> PublishResult:
    """A consumer's batch: write the touched rows as read at ``read_at_ns``, patch the list."""
    keys = [str(key) for key in touched]
    store.write_rows("articles", fresh_rows(keys, rows, ORDER), read_at_ns=read_at_ns, order=ORDER)
    return publish_list(
        store,
        "articles",
        keys,
        order=ORDER,
        sizes=ListSizes(chunk_bytes=chunk_bytes),
        clock_ns=lambda: read_at_ns,
        complete=True,  # as if filled: these tests are about patches, not fills
    )


def test_an_older_read_never_overwrites_a_newer_one(aws: EmulatedAws) -> None:
    # Given a consumer that read "v2" at t=200 and already wrote it
    store = _store(aws)
    _sync(store, [{"id": 1, "title": "v2"}], [1], read_at_ns=200)
    # When a slower consumer that read "v1" at t=100 writes afterwards
    _sync(store, [{"id": 1, "title": "v1"}], [1], read_at_ns=100)
    # Then the item and the list still hold the newer read
    assert get_item(store, "articles", 1) == {"id": 1, "title": "v2"}
    assert get_list(store, "articles") == [{"id": 1, "title": "v2"}]


def test_a_deleted_row_is_not_resurrected_by_an_older_read(aws: EmulatedAws) -> None:
    # Given the row was read as deleted at t=200
    store = _store(aws)
    _sync(store, [], [1], read_at_ns=200)
    # When an older read (t=100) that still saw the row arrives late
    _sync(store, [{"id": 1, "title": "old"}], [1], read_at_ns=100)
    # Then the row stays deleted, in the item and in the list
    assert get_item(store, "articles", 1) is None
    assert get_list(store, "articles") == []


def test_unchanged_content_writes_no_new_list_version(aws: EmulatedAws) -> None:
    # Given a published list
    store = _store(aws)
    rows = [{"id": index} for index in range(50)]
    first = _sync(store, rows, list(range(50)), 100)
    version = store.get_head("articles")
    # When the same content is read again later
    second = _sync(store, rows, list(range(50)), 200)
    # Then no list node is written and the version stays
    after = store.get_head("articles")
    assert (first.outcome, second.outcome, second.chunks_written) == ("created", "unchanged", 0)
    assert version is not None and after is not None
    assert after.version == version.version


def test_a_patch_rewrites_only_the_chunks_it_touches(aws: EmulatedAws) -> None:
    # Given a list of 200 rows in many chunks
    store = _store(aws)
    rows = [{"id": i, "x": "a" * 100} for i in range(200)]
    _sync(store, rows, list(range(200)), 100, chunk_bytes=2048)
    before = store.get_head("articles")
    assert before is not None and before.chunk_count > 8
    # When one row in the middle changes
    rows[100] = {"id": 100, "x": "changed"}
    result = _sync(store, rows, [100], 200, chunk_bytes=2048)
    # Then one chunk and its index page are written, and the list reads back whole
    assert (result.outcome, result.chunks_written, result.index_pages_written) == (
        "published",
        1,
        1,
    )
    assert get_list(store, "articles") == rows


def test_new_version_retires_the_old_chunks_after_a_grace_period(aws: EmulatedAws) -> None:
    # Given a list of several chunks, then a changed list
    store = _store(aws, now=1000.0)
    _sync(store, [{"id": i, "x": "a" * 100} for i in range(100)], list(range(100)), 100)
    old = store.get_head("articles")
    _sync(store, [{"id": i, "x": "b" * 100} for i in range(100)], list(range(100)), 200)
    assert old is not None and old.chunk_count > 1
    # When a reader still holding the old version reads within / after the grace period
    page = store.get_index_page(old.pages[0].key)
    assert page is not None
    within = store.get_served_chunk(page.chunks[0].key)
    later = _store(aws, now=1061.0).get_served_chunk(page.chunks[0].key)
    # Then it is served within the grace period and gone after it, and so is its version
    assert within is not None and '"a' in within.body
    assert later is None
    assert _store(aws, now=1061.0).get_version("articles", old.version) is None


def test_large_list_is_chunked_below_the_item_limit_and_read_back_whole(aws: EmulatedAws) -> None:
    # Given a list of about 1.5 MB (far over DynamoDB's 400 KB item limit)
    rows = [{"id": i, "body": f"{i} " + "lorem ipsum dolor sit amet " * 200} for i in range(250)]
    # When published / Then it spans several chunks and reads back exactly
    store = _store(aws)
    assert _sync(store, rows, list(range(250)), 100, chunk_bytes=64_000).chunks_written > 4
    head = store.get_head("articles")
    assert head is not None and head.list_bytes > 1_000_000
    assert get_list(store, "articles") == rows


class _Throttling:
    """Answers the first ``times`` calls of one operation with a throttling error.

    botocore lets every before-send handler run, moto's included; pointing a throttled request
    at an address moto does not serve keeps moto from also executing it.
    """

    def __init__(self, times: int) -> None:
        self.remaining = times
        self.calls = 0

    def __call__(self, request: Any, **_: Any) -> Any:
        self.calls += 1
        if self.remaining <= 0:
            return None
        self.remaining -= 1
        request.url = "https://throttled.invalid/"
        body = b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException"}'
        return AWSResponse(
            request.url,
            400,
            HTTPHeaders.from_pairs([("x-amzn-ErrorType", "ThrottlingException")]),
            _Raw(body),
        )


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body

    def read(self) -> bytes:
        return self._body


def test_dynamodb_throttling_is_retried_by_botocore(aws: EmulatedAws) -> None:
    # Given a client with the consumer's retry configuration whose first 3 PutItem calls throttle
    import boto3

    from waituntil.adapters.aws import PATIENT

    client = boto3.client("dynamodb", config=PATIENT)
    throttle = _Throttling(times=3)
    client.meta.events.register_first("before-send.dynamodb.UpdateItem", throttle)
    store = _store(aws, client=client)
    # When a row is written
    fresh = fresh_rows(["1"], [{"id": 1, "t": "kept"}], ORDER)
    writes = store.write_rows("articles", fresh, read_at_ns=100, order=ORDER)
    # Then botocore retried until it landed
    assert throttle.calls == 4
    assert writes.written == 1
    assert get_item(store, "articles", 1) == {"id": 1, "t": "kept"}


def test_unprocessed_items_are_resent(aws: EmulatedAws) -> None:
    # Given BatchWriteItem that leaves part of each call unprocessed twice
    flaky = UnprocessedWrites(aws.dynamodb, times=2)
    store = _store(aws, client=flaky)
    rows = [{"id": i, "x": "z" * 200} for i in range(80)]
    # When a list of more chunks than a head switch carries (written apart) is published
    _sync(store, rows, list(range(80)), 100, chunk_bytes=2048)
    # Then the leftovers were resent and the list reads back whole
    assert flaky.calls > 2
    assert get_list(_store(aws), "articles") == rows


def test_unprocessed_items_that_never_land_fail_loudly(aws: EmulatedAws) -> None:
    # Given BatchWriteItem that never processes the last request
    store = _store(aws, client=UnprocessedWrites(aws.dynamodb, times=1000))
    rows = [{"id": i, "x": "z" * 200} for i in range(40)]
    # When a list of more nodes than a head switch carries is published / Then the failure
    # surfaces (and the record will be retried)
    with pytest.raises(DependencyUnavailable):
        _sync(store, rows, list(range(40)), 100, chunk_bytes=1024)
    assert store.get_head("articles") is None


def test_a_row_write_answers_the_state_it_left_as_a_read_would(aws: EmulatedAws) -> None:
    # Given rows 1 and 2 cached, row 3 never seen
    store = _store(aws)
    rows = [{"id": 1, "t": "a"}, {"id": 2, "t": "b"}]
    store.write_rows("articles", fresh_rows(["1", "2"], rows, ORDER), read_at_ns=100, order=ORDER)
    # When row 1 changes, row 2 is deleted, row 3 is new, and a late, older read of row 1
    # comes after
    fresh = fresh_rows(["1", "2", "3"], [{"id": 1, "t": "a2"}, {"id": 3, "t": "c"}], ORDER)
    writes = store.write_rows("articles", fresh, read_at_ns=200, order=ORDER, policy="p")
    late = store.write_rows(
        "articles", fresh_rows(["1"], [{"id": 1, "t": "old"}], ORDER), read_at_ns=150, order=ORDER
    )
    # Then each landed write answers exactly the state a strongly consistent read gives (its
    # body, tombstone, position tags of both writes, policy), and the stale one answers none
    assert writes.states == store.get_rows("articles", ["1", "2", "3"])
    assert len(writes.states["1"].positions) == 2 and writes.states["2"].body is None
    assert late.skipped_stale == 1 and late.states == {}


def test_a_follow_ups_count_touches_only_its_attribute_beside_a_cycles_save(
    aws: EmulatedAws,
) -> None:
    # Given no heal state yet: a follow-up's count creates it
    store = _store(aws)
    store.add_healed("articles", 2)
    first = store.get_heal_state("articles")
    assert first is not None and first.healed_total == 2 and first.pending == ()
    # When a cycle, having read that state, saves its pending keys and scan position, and a
    # follow-up (no lease) adds its count right after
    store.put_heal_state(replace(first, pending=("8", "9"), scan_from="2026-12-01T00:00:00"))
    store.add_healed("articles", 3)
    # Then the cycle's save stands whole and the counts add up
    state = store.get_heal_state("articles")
    assert state is not None
    assert state.pending == ("8", "9") and state.scan_from == "2026-12-01T00:00:00"
    assert state.healed_total == 5


def test_nodes_are_read_in_one_batch_and_expiring_or_missing_ones_are_left_out(
    aws: EmulatedAws,
) -> None:
    # Given a list of several chunks, one of them retired by a later version, and a store that
    # keeps no node in memory (every node is read from the table)
    store = _store(aws)
    rows = [{"id": key, "pad": "x" * 600} for key in range(1, 41)]
    _sync(store, rows, list(range(1, 41)), read_at_ns=100, chunk_bytes=2048)
    head = store.get_head("articles")
    assert head is not None
    page = store.get_index_page(head.pages[0].key)
    assert page is not None and len(page.chunks) >= 3
    first = page.chunks[0].key
    _sync(store, [{"id": 1, "pad": "y"}, *rows[1:]], [1], read_at_ns=200, chunk_bytes=2048)
    now = store.get_head("articles")
    assert now is not None
    later = _store(aws, now=1_800_000_000.0 + 61)  # after the retired nodes' grace period

    # When the current index page, two chunks it carried over, the retired first chunk and a
    # key never written are asked for in one call begun beside the caller
    keys = [now.pages[0].key, page.chunks[1].key, page.chunks[2].key, first, "/articles#c/none"]
    nodes = later.start(lambda: later.get_nodes(keys))()

    # Then the live ones come back decoded as what they are, and nothing else
    assert set(nodes) == set(keys[:3])
    assert nodes[now.pages[0].key] == store.get_index_page(now.pages[0].key)
    assert nodes[page.chunks[1].key] == store.get_chunk(page.chunks[1].key)


def test_a_row_of_about_a_kilobyte_is_stored_in_an_item_billed_as_one(aws: EmulatedAws) -> None:
    from waituntil.cache.layout import item_bytes

    # Given a row of about 950 bytes of JSON made of words, as articles are
    words = [
        "the",
        "cache",
        "keeps",
        "rows",
        "of",
        "supabase",
        "tables",
        "fresh",
        "from",
        "webhooks",
        "and",
        "serves",
        "them",
    ]
    text = " ".join(words[(i * 7) % len(words)] for i in range(150))
    row = {"id": 1, "title": "a kilobyte", "body": text[:900]}
    store = _store(aws)
    # When it is written and listed
    _sync(store, [row], [1], read_at_ns=100)
    # Then its item, key, etag, position and read time included, is under the 1 KB a write
    # unit bills (its JSON alone is not), and it reads back whole, in the item and the list
    item = aws.dynamodb.get_item(TableName=aws.stack.table_name, Key={"pk": {"S": "/articles/1"}})
    assert len(json.dumps(row).encode()) > 900
    assert item_bytes(item["Item"]) < 1024
    assert get_item(store, "articles", 1) == row
    assert get_list(store, "articles") == [row]


def test_a_text_zlib_cannot_shrink_is_kept_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    import zlib

    from waituntil.cache import layout

    # Given two texts over the compression threshold, and a zlib that cannot shrink the first
    # (as with already compressed data), where the second compresses well
    stubborn, repetitive = "q" * 600, "abc" * 700
    real = zlib.compress
    monkeypatch.setattr(
        zlib,
        "compress",
        lambda raw, level: raw + b"!" if raw == stubborn.encode() else real(raw, level),
    )
    # When each is encoded for an item
    encoded = [layout.encode_text(text) for text in (stubborn, repetitive)]
    # Then the first stays plain text, the second is compressed, and both decode as given
    assert "body" in encoded[0] and "body_z" not in encoded[0]
    assert "body_z" in encoded[1] and "body" not in encoded[1]
    assert [layout.decode_text(item) for item in encoded] == [stubborn, repetitive]
