"""The DynamoDB cache: I/O, conditions and retries only (layout: ``waituntil.cache.layout``).

Over 300 lines on purpose: one adapter for one DynamoDB table; every item kind shares its
client, conditions, retries and thread pool (the item codecs are ``cache.items``).

Every row write carries ``read_at_ns``, the time the consumer read Supabase; it lands only if
the stored item is older, so two consumers racing cannot let an older read win. Row writes are
conditional per item, so they run in parallel on a thread pool (the boto3 client's connection
pool is sized to match in ``adapters/aws``). List nodes have unique keys and are written
unconditionally; the head switches conditionally on the version the publisher started from.

Every write here is safe to apply twice, because botocore resends a request whose answer was
lost (a 500, a reset connection, a read timeout) although the first one may have applied: node
puts and checkpoints write the same item again, retiring keeps an expiry already set, sets
(position tags, publishes in flight) add or delete the same element, a row write that already
applied fails its own condition and reads as stale. The head switch is a transaction carrying
its version as ``ClientRequestToken`` (DynamoDB answers a resend within 10 minutes as the first
one), and should a resend still fail its condition, its own frozen version item, which only
that transaction writes, proves that it applied (``_switch``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from waituntil.cache.items import (
    attempt_to_text,
    attempts_from_item,
    checkpoint_from_item,
    checkpoint_to_item,
    chunk_from_item,
    chunk_to_item,
    head_from_item,
    head_to_attributes,
    index_page_from_item,
    index_page_to_item,
    retiring_to_attributes,
    row_state_from_item,
    served_body_of_chunk_item,
)
from waituntil.cache.layout import (
    BLOB_UNCLAIMED,
    KIND_ATTEMPTS,
    KIND_ROW,
    KIND_TOMBSTONE,
    MAX_STORED_BODY_BYTES,
    Item,
    attempts_item_key,
    blob_bytes,
    blob_object_key,
    dump_json,
    encode_text,
    list_item_key,
    next_head_key,
    row_item_key,
    sync_item_key,
    version_item_key,
)
from waituntil.cache.model import (
    FreshRow,
    IndexPage,
    ListChunk,
    ListHead,
    PublishAttempt,
    RowFailure,
    RowFailureReason,
    RowState,
    RowWrites,
    ServedChunk,
    SyncCheckpoint,
    position_tag,
)
from waituntil.core.errors import DependencyUnavailable
from waituntil.core.list_order import ListOrder
from waituntil.core.observability import logger
from waituntil.core.settings import SQS_MAX_RETENTION_S, TOMBSTONE_MARGIN_S

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100
UNPROCESSED_RETRIES = 8
# Threads for per-item conditional writes; adapters/aws sizes the connection pool above this.
WRITE_WORKERS = 16

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


class CacheStore:
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
    ) -> None:
        self._table = table_name
        self._client = client
        self._blobs = blobs
        self._tombstone_ttl_s = tombstone_ttl_s
        self._grace_s = grace_s
        self._workers = workers
        self._sleep = sleep
        self._clock = clock

    @cached_property
    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="cache-write")

    def _parallel(self, work: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if len(items) <= 1 or self._workers <= 1:
            return [work(item) for item in items]
        return list(self._pool.map(work, items))

    # ----- rows ---------------------------------------------------------------------------

    def write_rows(
        self,
        table: str,
        fresh: Sequence[FreshRow],
        *,
        read_at_ns: int,
        order: ListOrder,
        policy: str = "",
    ) -> RowWrites:
        """Store each row as read (a tombstone if gone), unless a newer read is stored; each
        item records ``policy``, the fingerprint of the table policy it was read with."""
        results = self._parallel(lambda row: self._write_row(table, row, read_at_ns, policy), fresh)
        failures = {
            row.key: failure
            for row, (_, failure) in zip(fresh, results, strict=True)
            if failure is not None
        }
        outcomes = [outcome for outcome, failure in results if failure is None]
        return RowWrites(
            written=outcomes.count("written") + outcomes.count("written-blob"),
            deleted=outcomes.count("deleted"),
            skipped_stale=outcomes.count("stale"),
            stored_out_of_line=outcomes.count("written-blob"),
            failures=failures,
        )

    def _write_row(
        self, table: str, row: FreshRow, read_at_ns: int, policy: str = ""
    ) -> tuple[str, RowFailure | None]:
        values: Item = {
            ":read_at_ns": {"N": str(read_at_ns)},
            ":read_at": {"S": _iso(read_at_ns)},
            ":policy": {"S": policy},
        }
        blob: str | None = None
        adds: list[str] = []
        if row.body is None or row.position is None:
            outcome = "deleted"
            values[":kind"] = {"S": KIND_TOMBSTONE}
            values[":expires_at"] = {"N": str(int(self._clock()) + self._tombstone_ttl_s)}
            sets = ["kind", "read_at", "read_at_ns", "expires_at", "policy"]
            removes = ["body", "body_z", "blob", "blob_bytes", BLOB_UNCLAIMED, "etag", "position"]
            if row.listed_at is not None:
                # Where a list holds the row: its publish finds it there even if this item
                # was created just now (the old one expired, or never existed).
                values[":positions"] = {"SS": [position_tag(*row.listed_at)]}
                adds.append("positions")
        else:
            stored = encode_text(row.body.text)
            outcome = "written"
            if _stored_bytes(stored) > MAX_STORED_BODY_BYTES:
                if self._blobs is None:
                    return "failed", RowFailure(
                        RowFailureReason.TOO_LARGE,
                        f"row {row.key} of {table} is too large for an item, and no blob store",
                    )
                blob = blob_object_key(table, row.body.etag, secrets.token_hex(8))
                try:
                    self._blobs.put(blob, row.body.text)
                except DependencyUnavailable as error:  # one row's failure fails that row only
                    return "failed", _dependency_failed(table, row.key, error)
                stored = {
                    "blob": {"S": blob},
                    BLOB_UNCLAIMED: {"BOOL": True},
                    "blob_bytes": {"N": str(blob_bytes(row.body.text))},
                }
                outcome = "written-blob"
            values.update({f":{name}": value for name, value in stored.items()})
            values[":kind"] = {"S": KIND_ROW}
            values[":etag"] = {"S": row.body.etag}
            values[":position"] = {"S": dump_json(list(row.position))}
            values[":positions"] = {"SS": [position_tag(read_at_ns, row.position)]}
            sets = ["kind", *stored, "etag", "position", "read_at", "read_at_ns", "policy"]
            dropped = ("body", "body_z", "blob", BLOB_UNCLAIMED, "blob_bytes")
            removes = ["expires_at", *(n for n in dropped if n not in stored)]
            adds = ["positions"]
        expression = "SET " + ", ".join(f"#{name} = :{name}" for name in sets)
        if adds:
            expression += " ADD " + ", ".join(f"#{name} :{name}" for name in adds)
        expression += " REMOVE " + ", ".join(f"#{name}" for name in removes)
        # Every name aliased: several (position, blob, ...) are DynamoDB reserved words.
        names = {f"#{name}": name for name in [*sets, *adds, *removes]}
        pk = row_item_key(table, row.key)
        try:
            response = self._call(
                self._client.update_item,
                TableName=self._table,
                Key={"pk": {"S": pk}},
                UpdateExpression=expression,
                ConditionExpression="attribute_not_exists(pk) OR #read_at_ns < :read_at_ns",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_OLD",
            )
        except _StaleWrite:
            if blob is None or not self._points_to(pk, blob):
                return "stale", None  # a body it put stays unclaimed: the lifecycle expires it
            # The write landed but its answer was lost, and botocore's resend found its own
            # read already stored: the body is ours to claim (the one it replaced goes
            # untagged, which costs storage only).
            response = {}
        except DependencyUnavailable as error:
            return "failed", _dependency_failed(table, row.key, error)
        failure = self._claim(table, row.key, blob) if blob is not None else None
        old_blob = response.get("Attributes", {}).get("blob", {}).get("S")
        if old_blob and old_blob != blob:
            self._supersede(old_blob)
        return (outcome, None) if failure is None else ("failed", failure)

    def _claim(self, table: str, key: str, blob: str) -> RowFailure | None:
        """Keep the body the item now points to: clear its unclaimed tag, then the item's
        mark of it, unless a newer write has replaced it meanwhile.

        Tags are never conditional in S3, so the order carries the safety: a newer write that
        replaced ``blob`` may have tagged it superseded before this claim cleared the tag; the
        item's mark then no longer matches, and the body is tagged superseded again here.
        A failure leaves the mark, so the record's retry (or the next full sync, which
        rewrites a marked row) replaces the body and supersedes this one.
        """
        assert self._blobs is not None
        try:
            self._blobs.claim(blob)
            self._call(
                self._client.update_item,
                TableName=self._table,
                Key={"pk": {"S": row_item_key(table, key)}},
                UpdateExpression="REMOVE #unclaimed",
                ConditionExpression="#blob = :blob",
                ExpressionAttributeNames={"#unclaimed": BLOB_UNCLAIMED, "#blob": "blob"},
                ExpressionAttributeValues={":blob": {"S": blob}},
            )
        except _StaleWrite:
            self._supersede(blob)
        except DependencyUnavailable as error:
            return _dependency_failed(table, key, error)
        return None

    def _points_to(self, pk: str, blob: str) -> bool:
        item = self._get(pk)
        return item is not None and item.get("blob", {}).get("S") == blob

    def _supersede(self, blob: str) -> None:
        assert self._blobs is not None
        try:
            self._blobs.mark_superseded(blob)
        except DependencyUnavailable:
            # The row is already right; an untagged body only costs storage.
            logger.warning("could not tag a superseded row body", extra={"key": blob})

    def get_rows(self, table: str, keys: Sequence[str]) -> dict[str, RowState]:
        """The stored state of each key that has an item (strongly consistent)."""
        by_pk = {row_item_key(table, key): key for key in keys}
        states: dict[str, RowState] = {}
        pks = list(by_pk)
        for group in _groups(pks, BATCH_GET_LIMIT):
            pending: Any = {
                self._table: {"Keys": [{"pk": {"S": pk}} for pk in group], "ConsistentRead": True}
            }
            for attempt in range(UNPROCESSED_RETRIES + 1):
                response = self._call(self._client.batch_get_item, RequestItems=pending)
                for item in response.get("Responses", {}).get(self._table, []):
                    if "kind" not in item:
                        # Not a whole item yet: moto's server can show an item an UpdateItem is
                        # still creating (DynamoDB's writes are atomic); read as not there.
                        continue
                    states[by_pk[item["pk"]["S"]]] = row_state_from_item(
                        by_pk[item["pk"]["S"]], item
                    )
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                if attempt < UNPROCESSED_RETRIES:
                    self._sleep(min(0.05 * 2**attempt, 2.0))
            if pending:
                raise DependencyUnavailable("DynamoDB left keys unprocessed after retries")
        return states

    def get_row_body(self, table: str, key: str) -> tuple[RowState, str] | None:
        """A live row and its JSON text (resolved from the blob store if kept there)."""
        item = self._get(row_item_key(table, key))
        if item is None or item.get("kind", {}).get("S") != KIND_ROW:
            return None
        state = row_state_from_item(key, item)
        text = (
            self._blob(state.blob_key) if state.blob_key else state.body.text if state.body else ""
        )
        return state, text

    def prune_positions(self, table: str, stale: Mapping[str, frozenset[str]]) -> None:
        """Forget list positions no published version can still hold (see ``list_patch``)."""

        def prune(entry: tuple[str, frozenset[str]]) -> None:
            key, tags = entry
            self._call(
                self._client.update_item,
                TableName=self._table,
                Key={"pk": {"S": row_item_key(table, key)}},
                UpdateExpression="DELETE #positions :tags",
                ExpressionAttributeNames={"#positions": "positions"},
                ExpressionAttributeValues={":tags": {"SS": sorted(tags)}},
            )

        self._parallel(prune, [(key, tags) for key, tags in stale.items() if tags])

    # ----- the list -----------------------------------------------------------------------

    def get_head(self, table: str) -> ListHead | None:
        item = self._get(list_item_key(table))
        if item is None or ("pages" not in item and "pages_z" not in item):
            return None  # none yet (or a layout from before index pages: rebuilt by a sync)
        return head_from_item(table, item)

    def get_next_head(self, table: str) -> ListHead | None:
        item = self._get(next_head_key(table))
        return None if item is None else head_from_item(table, item)

    def get_version(self, table: str, version: str) -> ListHead | None:
        item = self._get(version_item_key(table, version))
        if item is None or _expired(item, self._clock()):
            return None
        return head_from_item(table, item)

    def get_index_page(self, key: str) -> IndexPage | None:
        item = self._get(key)
        if item is None or _expired(item, self._clock()):
            return None
        return index_page_from_item(item)

    def get_chunk(self, key: str) -> ListChunk | None:
        item = self._get(key)
        if item is None or _expired(item, self._clock()):
            return None
        return chunk_from_item(item)

    def get_served_chunk(self, key: str) -> ServedChunk | None:
        """A chunk's JSON array as served, with out-of-line rows put back in place."""
        item = self._get(key)
        if item is None or _expired(item, self._clock()):
            return None
        body, blobs = served_body_of_chunk_item(item)
        if blobs:
            rows = json.loads(body)
            for index, blob_key in blobs:
                rows[index] = json.loads(self._blob(blob_key))
            body = dump_json(rows)
        return ServedChunk(key=key, body=body)

    def write_nodes(
        self, table: str, chunks: Sequence[ListChunk], pages: Sequence[IndexPage]
    ) -> int:
        items = [chunk_to_item(chunk) for chunk in chunks]
        items += [index_page_to_item(page) for page in pages]
        self._batch_write([{"PutRequest": {"Item": item}} for item in items])
        return len(items)

    def flip_head(self, head: ListHead, base: ListHead | None) -> bool:
        """Freeze ``head`` as its version and make it current if ``base`` still is: one step."""
        return self._switch(head, base)

    def promote_head(self, head: ListHead, base: ListHead | None, rebuilt: ListHead) -> bool:
        """The same switch, which also ends ``/<table>#next`` if it still holds ``rebuilt``."""
        return self._switch(head, base, ending=rebuilt)

    def _switch(
        self, head: ListHead, base: ListHead | None, ending: ListHead | None = None
    ) -> bool:
        """One ``TransactWriteItems``: the frozen version (only if new), the head (only if it
        is still ``base``), and for a promotion the end of the rebuilt head.

        The frozen version's condition is what makes a lost answer harmless. botocore resends
        a transaction whose answer it lost; DynamoDB answers a resend with the same
        ``ClientRequestToken`` (the version's) as it answered the first. A resend that is
        evaluated anew (past the token's 10 minutes, or an emulator) fails the frozen version's
        condition only if this very transaction applied before: versions are unique, and
        nothing else writes that item. So that failure means the switch happened.
        """
        table = head.table
        attributes = head_to_attributes(head, _iso(head.read_at_ns), _iso(head.modified_at_ns))
        head_key = next_head_key(table) if head.rebuild else list_item_key(table)
        item = {"pk": {"S": head_key}, **attributes, **retiring_to_attributes(head.retiring)}
        if base is None:
            # No head yet, or one from before index pages (it is replaced, not patched).
            condition = "attribute_not_exists(pk)"
            if not head.rebuild:
                condition += " OR (attribute_not_exists(pages) AND attribute_not_exists(pages_z))"
            put_head: dict[str, Any] = {"ConditionExpression": condition}
        else:
            put_head = {
                "ConditionExpression": "#version = :base",
                "ExpressionAttributeNames": {"#version": "version"},
                "ExpressionAttributeValues": {":base": {"S": base.version}},
            }
        frozen = {"pk": {"S": version_item_key(table, head.version)}, **attributes}
        actions: list[Any] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": frozen,
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {"Put": {"TableName": self._table, "Item": item, **put_head}},
        ]
        if ending is not None:
            actions.append(
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": {"pk": {"S": next_head_key(table)}},
                        "ConditionExpression": "#version = :ending",
                        "ExpressionAttributeNames": {"#version": "version"},
                        "ExpressionAttributeValues": {":ending": {"S": ending.version}},
                    }
                }
            )
        token = hashlib.sha256(f"{table}@{head.version}".encode()).hexdigest()[:36]
        try:
            self._client.transact_write_items(TransactItems=actions, ClientRequestToken=token)
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise DependencyUnavailable("DynamoDB TransactWriteItems failed") from error
            reasons = [
                reason.get("Code", "None")
                for reason in error.response.get("CancellationReasons", [])
            ]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                logger.info(
                    "a head switch applied before its answer was lost",
                    extra={"table": table, "version": head.version},
                )
                return True
            if "ConditionalCheckFailed" in reasons or "TransactionConflict" in reasons:
                return False  # another publisher switched first: nothing of ours applied
            raise DependencyUnavailable(f"DynamoDB cancelled a head switch: {reasons}") from error
        except BotoCoreError as error:
            raise DependencyUnavailable("DynamoDB TransactWriteItems failed") from error
        return True

    def clear_retiring(self, head: ListHead) -> None:
        key = next_head_key(head.table) if head.rebuild else list_item_key(head.table)
        try:
            self._call(
                self._client.update_item,
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression="REMOVE #retiring, #retiring_z",
                ConditionExpression="#version = :version",
                # Every name aliased: DynamoDB reserves many words (version among them).
                ExpressionAttributeNames={
                    "#version": "version",
                    "#retiring": "retiring",
                    "#retiring_z": "retiring_z",
                },
                ExpressionAttributeValues={":version": {"S": head.version}},
            )
        except _StaleWrite:
            return  # the head moved on: whoever switched from it retired this first

    def retire(
        self, table: str, chunk_keys: Sequence[str], page_keys: Sequence[str], version: str | None
    ) -> None:
        """Nodes the current version no longer uses: readers mid-way get the grace period.

        A node that already expires keeps its time: retiring again (a resend, a redelivery,
        the sweep) never shortens the grace period of a reader mid-way.
        """
        keys = [*chunk_keys, *page_keys]
        if version is not None:
            keys.append(version_item_key(table, version))
        expires_at = str(int(self._clock()) + self._grace_s)

        def expire(pk: str) -> None:
            try:
                self._call(
                    self._client.update_item,
                    TableName=self._table,
                    Key={"pk": {"S": pk}},
                    UpdateExpression="SET expires_at = if_not_exists(expires_at, :expires_at)",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":expires_at": {"N": expires_at}},
                )
            except _StaleWrite:
                return  # already gone

        self._parallel(expire, keys)

    # ----- publishes in flight ------------------------------------------------------------

    def register_attempt(self, table: str, attempt: PublishAttempt) -> None:
        self._call(
            self._client.update_item,
            TableName=self._table,
            Key={"pk": {"S": attempts_item_key(table)}},
            UpdateExpression="SET #kind = :kind ADD #attempts :attempt",
            ExpressionAttributeNames={"#kind": "kind", "#attempts": "attempts"},
            ExpressionAttributeValues={
                ":kind": {"S": KIND_ATTEMPTS},
                ":attempt": {"SS": [attempt_to_text(attempt)]},
            },
        )

    def end_attempt(self, table: str, attempt: PublishAttempt) -> None:
        self._call(
            self._client.update_item,
            TableName=self._table,
            Key={"pk": {"S": attempts_item_key(table)}},
            UpdateExpression="DELETE #attempts :attempt",
            ExpressionAttributeNames={"#attempts": "attempts"},
            ExpressionAttributeValues={":attempt": {"SS": [attempt_to_text(attempt)]}},
        )

    def get_attempts(self, table: str) -> list[PublishAttempt]:
        return attempts_from_item(self._get(attempts_item_key(table)))

    # ----- full sync checkpoint -----------------------------------------------------------

    def get_checkpoint(self, table: str) -> SyncCheckpoint | None:
        item = self._get(sync_item_key(table))
        return None if item is None else checkpoint_from_item(table, item)

    def put_checkpoint(self, checkpoint: SyncCheckpoint | None, table: str) -> None:
        if checkpoint is None:
            self._delete([sync_item_key(table)])
            return
        item = checkpoint_to_item(checkpoint)
        self._call(self._client.put_item, TableName=self._table, Item=item)

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


def _dependency_failed(table: str, key: str, error: Exception) -> RowFailure:
    return RowFailure(
        RowFailureReason.DEPENDENCY_FAILED, f"row {key} of {table} was not written: {error}"
    )


def _stored_bytes(attributes: Item) -> int:
    value = attributes.get("body") or attributes["body_z"]
    stored = value.get("S") or value.get("B")
    return len(stored.encode()) if isinstance(stored, str) else len(stored)


def _expired(item: dict[str, Any], now: float) -> bool:
    # DynamoDB deletes expired items lazily (up to days later): check the time ourselves.
    return "expires_at" in item and int(item["expires_at"]["N"]) <= now


def _groups(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _iso(epoch_ns: int) -> str:
    return datetime.fromtimestamp(epoch_ns / 1e9, tz=UTC).isoformat(timespec="milliseconds")
