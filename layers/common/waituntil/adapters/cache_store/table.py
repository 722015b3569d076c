"""The cache table's shared I/O: one client, its conditions, retries and thread pool.

Every part of the store (``rows``, ``lists``, ``records``) is a ``CacheTable``: they share the
client, the conditional-write error mapping (``StaleWrite``), the batch loops that resend what
DynamoDB left unprocessed, and the pool that runs per-item conditional writes in parallel.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from waituntil.core.errors import DependencyUnavailable
from waituntil.core.settings import SQS_MAX_RETENTION_S, TOMBSTONE_MARGIN_S

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100
UNPROCESSED_RETRIES = 8
# Threads for per-item conditional writes; adapters/aws sizes the connection pool above this.
WRITE_WORKERS = 16
# List nodes a warm consumer keeps (``lists.NodeCache``): a publish patches the chunk and index
# page the last one wrote, or read, without reading them again. 16 MB: 256 full chunks.
NODE_CACHE_BYTES = 16 * 2**20

T = TypeVar("T")
R = TypeVar("R")


class BlobStore(Protocol):
    """Where row bodies too large for a DynamoDB item live (S3 in a deployment).

    Every object is born tagged "unclaimed" and the bucket's lifecycle expires such objects;
    only the write whose item now points to the object clears the tag (``claim``). So a body
    put by a write that lost its race, or by a consumer that died before its item write,
    expires by itself; nothing has to remember it.
    """

    def put(self, key: str, text: str) -> None:
        """Store ``text`` under a new ``key``, tagged unclaimed."""
        ...

    def claim(self, key: str) -> None:
        """An item points to ``key`` now: clear the unclaimed tag, so the body is kept."""
        ...

    def get(self, key: str) -> str: ...

    def mark_superseded(self, key: str) -> None:
        """No row uses this body any more: let the bucket's lifecycle rule expire it."""
        ...


class CacheTable:
    """One DynamoDB table and what every item kind's I/O shares."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient,
        *,
        blobs: BlobStore | None = None,
        tombstone_ttl_s: int = SQS_MAX_RETENTION_S + TOMBSTONE_MARGIN_S,
        grace_s: int = 900,
        workers: int = WRITE_WORKERS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        node_cache_bytes: int = 0,
    ) -> None:
        self._table = table_name
        self._client = client
        self._blobs = blobs
        self._tombstone_ttl_s = tombstone_ttl_s
        self._grace_s = grace_s
        self._workers = workers
        self._sleep = sleep
        self._clock = clock
        self._node_cache_bytes = node_cache_bytes

    @cached_property
    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="cache-write")

    def start(self, work: Callable[[], R]) -> Callable[[], R]:
        """``work`` begun now on the pool, answered (or raised) by calling the result. With
        one worker, done now in the caller's thread (as ``_parallel``): its error is raised
        by the answer all the same."""
        if self._workers > 1:
            return self._pool.submit(work).result
        done: Future[R] = Future()
        try:
            done.set_result(work())
        except Exception as error:  # raised by the answer, as a pool's would be
            done.set_exception(error)
        return done.result

    def _parallel(self, work: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if len(items) <= 1 or self._workers <= 1:
            return [work(item) for item in items]
        return list(self._pool.map(work, items))

    # ----- internals ----------------------------------------------------------------------

    def _blob(self, key: str) -> str:
        if self._blobs is None:
            raise DependencyUnavailable(f"row body {key} is in the blob store, which is not set")
        return self._blobs.get(key)

    def _delete(self, pks: Sequence[str]) -> None:
        self._batch_write([{"DeleteRequest": {"Key": {"pk": {"S": pk}}}} for pk in pks])

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        """BatchWriteItem in groups of 25, resending UnprocessedItems with backoff.

        botocore retries throttled calls, but a 200 answer with UnprocessedItems is not an
        error to it: that part needs this loop.
        """
        for group in in_groups(requests, BATCH_WRITE_LIMIT):
            pending: dict[str, Any] = {self._table: group}
            for attempt in range(UNPROCESSED_RETRIES + 1):
                response = self._call(self._client.batch_write_item, RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break
                if attempt < UNPROCESSED_RETRIES:
                    self._sleep(min(0.05 * 2**attempt, 2.0))
            if pending:
                raise DependencyUnavailable("DynamoDB left items unprocessed after retries")

    def _batch_get(
        self, pks: Sequence[str], *, consistent: bool = True
    ) -> dict[str, dict[str, Any]]:
        """BatchGetItem in groups of 100, resending UnprocessedKeys with backoff; the items
        found, by key. Strongly consistent unless ``consistent`` is False (half the units)."""
        items: dict[str, dict[str, Any]] = {}
        for group in in_groups(list(pks), BATCH_GET_LIMIT):
            keys = [{"pk": {"S": pk}} for pk in group]
            pending: Any = {self._table: {"Keys": keys, "ConsistentRead": consistent}}
            for attempt in range(UNPROCESSED_RETRIES + 1):
                response = self._call(self._client.batch_get_item, RequestItems=pending)
                for item in response.get("Responses", {}).get(self._table, []):
                    items[item["pk"]["S"]] = item
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                if attempt < UNPROCESSED_RETRIES:
                    self._sleep(min(0.05 * 2**attempt, 2.0))
            if pending:
                raise DependencyUnavailable("DynamoDB left keys unprocessed after retries")
        return items

    def _get(self, pk: str) -> dict[str, Any] | None:
        response = self._call(
            self._client.get_item, TableName=self._table, Key={"pk": {"S": pk}}, ConsistentRead=True
        )
        item: dict[str, Any] | None = response.get("Item")
        return item

    @staticmethod
    def _call(operation: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return operation(**kwargs)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise StaleWrite from error
            if _too_large(error):
                raise ItemTooLarge(f"DynamoDB {operation.__name__}: item too large") from error
            raise DependencyUnavailable(f"DynamoDB {operation.__name__} failed") from error
        except BotoCoreError as error:
            raise DependencyUnavailable(f"DynamoDB {operation.__name__} failed") from error


class StaleWrite(Exception):
    """A conditional write lost to a newer one: expected under races, never an error."""


class ItemTooLarge(DependencyUnavailable):
    """An update would make its item larger than DynamoDB's 400 KB: it did not apply."""


def _too_large(error: ClientError) -> bool:
    details = error.response["Error"]
    return details["Code"] == "ValidationException" and "size" in details.get("Message", "")


def is_expired(item: dict[str, Any], now: float) -> bool:
    # DynamoDB deletes expired items lazily (up to days later): check the time ourselves.
    return "expires_at" in item and int(item["expires_at"]["N"]) <= now


def in_groups(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def iso_time(epoch_ns: int) -> str:
    return datetime.fromtimestamp(epoch_ns / 1e9, tz=UTC).isoformat(timespec="milliseconds")
