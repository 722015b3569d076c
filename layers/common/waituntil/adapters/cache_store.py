"""The DynamoDB cache: conditional writes that let only newer reads win, and consistent reads.

Layout: see ``waituntil.cache_layout``. Every write carries ``read_at_ns``, the time the
consumer started reading Supabase; a write only lands if the stored item is older, so two
consumers racing cannot let an older read overwrite a newer one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from waituntil.cache_layout import (
    KIND_CHUNK,
    KIND_LIST,
    KIND_ROW,
    KIND_TOMBSTONE,
    MAX_STORED_BODY_BYTES,
    chunk_item_key,
    decode_body,
    encode_body,
    list_item_key,
    row_item_key,
    stored_body_bytes,
)
from waituntil.contracts import Row
from waituntil.errors import DependencyUnavailable, RowTooLarge
from waituntil.snapshot import RowEntry, Snapshot

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

NEWER_READ_ONLY = "attribute_not_exists(pk) OR read_at_ns < :read_at_ns"
BATCH_WRITE_LIMIT = 25
UNPROCESSED_RETRIES = 8


@dataclass(frozen=True)
class CachedRow:
    key: str
    body: str
    etag: str
    read_at: str


@dataclass(frozen=True)
class ListManifest:
    table: str
    version: str
    chunk_count: int
    chunk_rows: tuple[int, ...]
    row_count: int
    list_bytes: int
    etag: str
    read_at: str
    read_at_ns: int
    modified_at: str


@dataclass(frozen=True)
class ListChunk:
    body: str
    row_count: int


@dataclass(frozen=True)
class RowWrites:
    written: int
    deleted: int
    skipped_stale: int


@dataclass(frozen=True)
class ListWrite:
    outcome: str  # "published" | "unchanged" | "stale"
    chunks_written: int
    stored_bytes: int


class CacheStore:
    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table_name
        self._client = client
        self._sleep = sleep
        self._clock = clock

    # ----- rows ---------------------------------------------------------------------------

    def write_rows(
        self,
        table: str,
        puts: dict[str, RowEntry],
        deletes: Sequence[str],
        *,
        read_at_ns: int,
        tombstone_ttl_s: int,
    ) -> RowWrites:
        written = deleted = stale = 0
        read_at = _iso(read_at_ns)
        for key, entry in puts.items():
            body = encode_body(entry.body)
            if stored_body_bytes(body) > MAX_STORED_BODY_BYTES:
                raise RowTooLarge(f"row {key} of {table} exceeds DynamoDB's item limit")
            item = {
                "pk": {"S": row_item_key(table, key)},
                "kind": {"S": KIND_ROW},
                **body,
                "etag": {"S": entry.etag},
                "read_at": {"S": read_at},
                "read_at_ns": {"N": str(read_at_ns)},
            }
            if self._put_if_newer(item, read_at_ns):
                written += 1
            else:
                stale += 1
        # A tombstone rather than a delete: an older read arriving later must not resurrect
        # the row, and it can only be refused if something newer is still there to compare.
        expires_at = int(self._clock()) + tombstone_ttl_s
        for key in deletes:
            item = {
                "pk": {"S": row_item_key(table, key)},
                "kind": {"S": KIND_TOMBSTONE},
                "read_at": {"S": read_at},
                "read_at_ns": {"N": str(read_at_ns)},
                "expires_at": {"N": str(expires_at)},
            }
            if self._put_if_newer(item, read_at_ns):
                deleted += 1
            else:
                stale += 1
        return RowWrites(written=written, deleted=deleted, skipped_stale=stale)

    def get_row(self, table: str, key: str) -> CachedRow | None:
        item = self._get(row_item_key(table, key))
        if item is None or item["kind"]["S"] != KIND_ROW:
            return None
        return CachedRow(
            key=key, body=decode_body(item), etag=item["etag"]["S"], read_at=item["read_at"]["S"]
        )

    # ----- the aggregate list -------------------------------------------------------------

    def publish_list(
        self, snapshot: Snapshot, current: ListManifest | None, *, old_list_grace_s: int
    ) -> ListWrite:
        """Make ``snapshot`` the current list unless the cache already has it or newer.

        ``current`` is the manifest as the caller last read it; the flip itself is conditional,
        so a newer manifest written meanwhile still wins.
        """
        if current is not None and current.read_at_ns >= snapshot.read_at_ns:
            return ListWrite(outcome="stale", chunks_written=0, stored_bytes=0)
        if current is not None and current.etag == snapshot.etag:
            return self._confirm_unchanged(snapshot)
        version = f"{snapshot.read_at_ns}-{snapshot.etag[:12]}"
        stored_bytes = self._write_chunks(snapshot, version)
        try:
            previous = self._flip_manifest(snapshot, version, current)
        except _StaleWrite:
            # Someone published a newer read meanwhile: our chunks are orphans.
            self._delete_chunks(snapshot.table, version, len(snapshot.chunks))
            return ListWrite(outcome="stale", chunks_written=0, stored_bytes=0)
        if previous is not None:
            self._expire_chunks(previous, old_list_grace_s)
        return ListWrite(
            outcome="published", chunks_written=len(snapshot.chunks), stored_bytes=stored_bytes
        )

    def get_manifest(self, table: str) -> ListManifest | None:
        item = self._get(list_item_key(table))
        return None if item is None else _manifest_from_item(table, item)

    def read_list(self, manifest: ListManifest) -> list[Row] | None:
        """All rows of one list version, or None if that version was retired meanwhile."""
        rows: list[Row] = []
        for index in range(manifest.chunk_count):
            chunk = self.get_chunk(manifest.table, manifest.version, index)
            if chunk is None:
                return None
            rows.extend(json.loads(chunk.body))
        return rows

    def get_chunk(self, table: str, version: str, index: int) -> ListChunk | None:
        """A chunk of one list version, or None once that version has been retired."""
        item = self._get(chunk_item_key(table, version, index))
        if item is None or _expired(item, self._clock()):
            return None
        return ListChunk(body=decode_body(item), row_count=int(item["row_count"]["N"]))

    # ----- internals ----------------------------------------------------------------------

    def _confirm_unchanged(self, snapshot: Snapshot) -> ListWrite:
        # Same content: advance the read time only, so a slower consumer holding an older
        # read with different content is still refused.
        try:
            self._call(
                self._client.update_item,
                TableName=self._table,
                Key={"pk": {"S": list_item_key(snapshot.table)}},
                UpdateExpression="SET read_at_ns = :read_at_ns, read_at = :read_at",
                ConditionExpression="read_at_ns < :read_at_ns AND etag = :etag",
                ExpressionAttributeValues={
                    ":read_at_ns": {"N": str(snapshot.read_at_ns)},
                    ":read_at": {"S": _iso(snapshot.read_at_ns)},
                    ":etag": {"S": snapshot.etag},
                },
            )
        except _StaleWrite:
            return ListWrite(outcome="stale", chunks_written=0, stored_bytes=0)
        return ListWrite(outcome="unchanged", chunks_written=0, stored_bytes=0)

    def _write_chunks(self, snapshot: Snapshot, version: str) -> int:
        requests = []
        stored = 0
        for index, chunk in enumerate(snapshot.chunks):
            body = encode_body(chunk.body)
            size = stored_body_bytes(body)
            if size > MAX_STORED_BODY_BYTES:
                raise RowTooLarge(f"a row of {snapshot.table} exceeds DynamoDB's item limit")
            stored += size
            item = {
                "pk": {"S": chunk_item_key(snapshot.table, version, index)},
                "kind": {"S": KIND_CHUNK},
                **body,
                "row_count": {"N": str(chunk.row_count)},
            }
            requests.append({"PutRequest": {"Item": item}})
        self._batch_write(requests)
        return stored

    def _flip_manifest(
        self, snapshot: Snapshot, version: str, current: ListManifest | None
    ) -> ListManifest | None:
        read_at = _iso(snapshot.read_at_ns)
        item = {
            "pk": {"S": list_item_key(snapshot.table)},
            "kind": {"S": KIND_LIST},
            "version": {"S": version},
            "chunk_count": {"N": str(len(snapshot.chunks))},
            "chunk_rows": {"L": [{"N": str(chunk.row_count)} for chunk in snapshot.chunks]},
            "row_count": {"N": str(snapshot.row_count)},
            "list_bytes": {"N": str(snapshot.list_bytes)},
            "etag": {"S": snapshot.etag},
            "read_at": {"S": read_at},
            "read_at_ns": {"N": str(snapshot.read_at_ns)},
            "modified_at": {"S": read_at},
        }
        response = self._call(
            self._client.put_item,
            TableName=self._table,
            Item=item,
            ConditionExpression=NEWER_READ_ONLY,
            ExpressionAttributeValues={":read_at_ns": {"N": str(snapshot.read_at_ns)}},
            ReturnValues="ALL_OLD",
        )
        old = response.get("Attributes")
        return _manifest_from_item(snapshot.table, old) if old else None

    def _expire_chunks(self, manifest: ListManifest, grace_s: int) -> None:
        """Retire an old version: readers mid-way through it get ``grace_s`` to finish."""
        expires_at = str(int(self._clock()) + grace_s)
        for index in range(manifest.chunk_count):
            try:
                self._call(
                    self._client.update_item,
                    TableName=self._table,
                    Key={"pk": {"S": chunk_item_key(manifest.table, manifest.version, index)}},
                    UpdateExpression="SET expires_at = :expires_at",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":expires_at": {"N": expires_at}},
                )
            except _StaleWrite:
                continue  # already gone

    def _delete_chunks(self, table: str, version: str, count: int) -> None:
        self._batch_write(
            [
                {"DeleteRequest": {"Key": {"pk": {"S": chunk_item_key(table, version, index)}}}}
                for index in range(count)
            ]
        )

    def _put_if_newer(self, item: dict[str, Any], read_at_ns: int) -> bool:
        try:
            self._call(
                self._client.put_item,
                TableName=self._table,
                Item=item,
                ConditionExpression=NEWER_READ_ONLY,
                ExpressionAttributeValues={":read_at_ns": {"N": str(read_at_ns)}},
            )
        except _StaleWrite:
            return False
        return True

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        """BatchWriteItem in groups of 25, resending UnprocessedItems with backoff.

        botocore retries throttled calls, but a 200 answer with UnprocessedItems is not an
        error to it: that part needs this loop.
        """
        for group in _groups(requests, BATCH_WRITE_LIMIT):
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
                raise _StaleWrite from error
            raise DependencyUnavailable(f"DynamoDB {operation.__name__} failed") from error
        except BotoCoreError as error:
            raise DependencyUnavailable(f"DynamoDB {operation.__name__} failed") from error


class _StaleWrite(Exception):
    """A conditional write lost to a newer one: expected under races, never an error."""


def _manifest_from_item(table: str, item: dict[str, Any]) -> ListManifest:
    return ListManifest(
        table=table,
        version=item["version"]["S"],
        chunk_count=int(item["chunk_count"]["N"]),
        chunk_rows=tuple(int(value["N"]) for value in item["chunk_rows"]["L"]),
        row_count=int(item["row_count"]["N"]),
        list_bytes=int(item["list_bytes"]["N"]),
        etag=item["etag"]["S"],
        read_at=item["read_at"]["S"],
        read_at_ns=int(item["read_at_ns"]["N"]),
        modified_at=item["modified_at"]["S"],
    )


def _expired(item: dict[str, Any], now: float) -> bool:
    # DynamoDB deletes expired items lazily (up to days later): check the time ourselves.
    return "expires_at" in item and int(item["expires_at"]["N"]) <= now


def _groups(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _iso(epoch_ns: int) -> str:
    return datetime.fromtimestamp(epoch_ns / 1e9, tz=UTC).isoformat(timespec="milliseconds")
