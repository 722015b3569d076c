"""Row bodies kept in S3 (moto), under racing consumers: a body an item points to is never
tagged for expiry, and a body no item points to always is (``superseded`` or ``unclaimed``,
both expired by the bucket's lifecycle rules)."""

from __future__ import annotations

import base64
import itertools
import os
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from tests.conftest import EmulatedAws
from tests.fakes import MemoryQueue, MemorySource
from waituntil.adapters.aws import PATIENT
from waituntil.adapters.blob_store import S3BlobStore
from waituntil.adapters.cache_store import CacheStore
from waituntil.cache.layout import fresh_rows, row_item_key
from waituntil.cache.model import RowFailureReason
from waituntil.core.contracts import SyncProgress
from waituntil.core.errors import DependencyUnavailable, RowWritesFailed
from waituntil.core.list_order import ListOrder
from waituntil.core.settings import ConsumerSettings
from waituntil.read.cache_client import get_item, get_list
from waituntil.sync.full_sync import full_sync
from waituntil.sync.ports import ConsumerPorts

ORDER = ListOrder("id")


def _big(version: str) -> dict[str, Any]:
    """A row of about 600 KB that does not compress: its body goes to the blob store."""
    return {"id": 1, "version": version, "blob": base64.b64encode(os.urandom(450_000)).decode()}


def _store(aws: EmulatedAws, blobs: Any) -> CacheStore:
    return CacheStore(aws.stack.table_name, aws.dynamodb, blobs=blobs, sleep=lambda _: None)


def _write(store: CacheStore, row: dict[str, Any], read_at_ns: int) -> Any:
    fresh = fresh_rows(["1"], [row], ORDER)
    return store.write_rows("articles", fresh, read_at_ns=read_at_ns, order=ORDER)


class PausedTagging:
    """A consumer paused just before it tags the body its write replaced."""

    def __init__(self, blobs: Any) -> None:
        self._blobs = blobs
        self.waiting: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blobs, name)

    def mark_superseded(self, key: str) -> None:
        self.waiting.append(key)

    def resume(self) -> None:
        for key in self.waiting:
            self._blobs.mark_superseded(key)


class FailingClaim:
    """S3 failing the first ``times`` claims (after the item already points to the body)."""

    def __init__(self, blobs: Any, times: int) -> None:
        self._blobs = blobs
        self.times = times

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blobs, name)

    def claim(self, key: str) -> None:
        if self.times > 0:
            self.times -= 1
            raise DependencyUnavailable(f"S3 tagging of {key} failed")
        self._blobs.claim(key)


def _expiring(tags: list[dict[str, str]]) -> bool:
    """Whether a lifecycle rule of the bucket (template.yaml) will expire an object so tagged."""
    return any(tag["Value"] == "true" for tag in tags if tag["Key"] in ("superseded", "unclaimed"))


def _assert_every_body_kept_or_expiring(aws: EmulatedAws) -> None:
    item = aws.dynamodb.get_item(
        TableName=aws.stack.table_name, Key={"pk": {"S": row_item_key("articles", "1")}}
    ).get("Item", {})
    live = item.get("blob", {}).get("S")
    bucket = aws.stack.blob_bucket
    objects = [obj["Key"] for obj in aws.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert objects, "no body was stored"
    for key in objects:
        tags = aws.s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
        if key == live:
            assert not _expiring(tags), f"the live row's body {key} is tagged {tags}"
        else:
            assert _expiring(tags), f"{key}, which no row uses, never expires ({tags})"


def test_a_row_going_x_y_x_under_two_consumers_keeps_its_body(aws: EmulatedAws) -> None:
    # Given a large row X cached, and two consumers: A read it as Y (older read), B as X again
    blobs = S3BlobStore(aws.stack.blob_bucket, aws.s3)
    consumer_a = PausedTagging(blobs)
    x, y = _big("x"), _big("y")
    _write(_store(aws, blobs), x, read_at_ns=100)
    # When A writes Y and pauses before tagging the body it replaced (X's)
    assert _write(_store(aws, consumer_a), y, read_at_ns=200).written == 1
    # And B, with the newer read, points the row back at X and tags Y's body
    assert _write(_store(aws, blobs), x, read_at_ns=300).written == 1
    # And A resumes and tags what it replaced
    consumer_a.resume()
    # Then the row is X, and its body is not tagged for expiry: the lifecycle never takes it
    assert get_item(_store(aws, blobs), "articles", 1) == x
    _assert_every_body_kept_or_expiring(aws)


def test_a_stale_write_leaves_no_body_that_never_expires(aws: EmulatedAws) -> None:
    # Given a consumer that read the row newer and wrote it first
    blobs = S3BlobStore(aws.stack.blob_bucket, aws.s3)
    _write(_store(aws, blobs), _big("new"), read_at_ns=300)
    # When a consumer with an older read puts its body, and its item write is refused
    writes = _write(_store(aws, blobs), _big("old"), read_at_ns=200)
    # Then its body, which no item points to, expires; the live one does not
    assert writes.skipped_stale == 1
    _assert_every_body_kept_or_expiring(aws)
    assert get_item(_store(aws, blobs), "articles", 1)["version"] == "new"  # type: ignore[index]


def test_a_claim_that_fails_fails_the_row_and_its_retry_settles_the_body(
    aws: EmulatedAws,
) -> None:
    # Given S3 failing the tag change that claims a body, after the item points to it
    blobs = FailingClaim(S3BlobStore(aws.stack.blob_bucket, aws.s3), times=1)
    store = _store(aws, blobs)
    x = _big("x")
    # When the row is written
    writes = _write(store, x, read_at_ns=100)
    # Then the row fails (its record is retried), typed as a dependency failure, and its item
    # says the body may still be unclaimed
    assert writes.failures["1"].reason is RowFailureReason.DEPENDENCY_FAILED
    assert store.get_rows("articles", ["1"])["1"].blob_unclaimed
    # And the retry stores a new body, claims it, and lets the first one expire
    assert _write(store, x, read_at_ns=200).written == 1
    assert not store.get_rows("articles", ["1"])["1"].blob_unclaimed
    assert get_item(store, "articles", 1) == x
    _assert_every_body_kept_or_expiring(aws)


def test_a_full_sync_rewrites_a_row_whose_body_was_left_unclaimed(aws: EmulatedAws) -> None:
    # Given a large row in Supabase, and S3 failing the first claim of a full sync
    source = MemorySource()
    source.put(_big("x"))
    blobs = FailingClaim(S3BlobStore(aws.stack.blob_bucket, aws.s3), times=1)
    settings = ConsumerSettings.model_validate(
        {**aws.environment("ConsumerFunction"), "SUPABASE_URL": "http://supabase.invalid"}
    )
    clock = itertools.count(1000)
    ports = ConsumerPorts(
        settings, source, _store(aws, blobs), MemoryQueue(), clock_ns=lambda: next(clock)
    )
    # When the sync runs: its page fails, and SQS's redelivery resumes it
    with pytest.raises(RowWritesFailed):
        full_sync("articles", SyncProgress(sync_id="s"), ports, lambda: 10**9)
    assert full_sync("articles", SyncProgress(sync_id="s"), ports, lambda: 10**9) is None
    # Then the row, unchanged in Supabase, was rewritten all the same: its body is claimed
    assert not ports.store.get_rows("articles", ["1"])["1"].blob_unclaimed
    assert get_list(ports.store, "articles") == source.rows(ORDER)
    _assert_every_body_kept_or_expiring(aws)


class AnswerLost:
    """The first ``times`` calls of one operation are applied (moto runs them) but answered
    with a 500, as when DynamoDB's answer is lost after it wrote: botocore sends them again.
    Registered first, this handler's answer is the one botocore reads."""

    def __init__(self, times: int) -> None:
        self.remaining = times

    def __call__(self, request: Any, **_: Any) -> Any:
        if self.remaining <= 0:
            return None
        self.remaining -= 1
        body = b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError"}'
        headers = HTTPHeaders.from_pairs([("x-amzn-ErrorType", "InternalServerError")])
        return AWSResponse(request.url, 500, headers, _Raw(body))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body

    def read(self) -> bytes:
        return self._body


def test_a_row_write_whose_answer_was_lost_still_claims_its_body(aws: EmulatedAws) -> None:
    # Given DynamoDB applying a large row's item write but losing its answer, so that
    # botocore sends it again and the resend fails its own condition (the read is stored)
    client = boto3.client("dynamodb", config=PATIENT)
    client.meta.events.register_first("before-send.dynamodb.UpdateItem", AnswerLost(times=1))
    store = CacheStore(
        aws.stack.table_name,
        client,
        blobs=S3BlobStore(aws.stack.blob_bucket, aws.s3),
        sleep=lambda _: None,
    )
    x = _big("x")
    # When the row is written
    writes = _write(store, x, read_at_ns=100)
    # Then it counts as written, not as a stale write, and its body is claimed: kept
    assert (writes.written, writes.skipped_stale, writes.failures) == (1, 0, {})
    assert not store.get_rows("articles", ["1"])["1"].blob_unclaimed
    assert get_item(store, "articles", 1) == x
    _assert_every_body_kept_or_expiring(aws)
