"""The list: its head, frozen versions, index pages and chunks, the head switch, retirements
and the publishes in flight.

Nodes have unique keys and are written unconditionally (a resend writes the same item
again). The head switch is a transaction carrying its version as ``ClientRequestToken``
(DynamoDB answers a resend within 10 minutes as the first one), and should a resend still
fail its condition, its own frozen version item, which only that transaction writes, proves
that it applied (``_switch``). Retiring keeps an expiry already set; the set of publishes in
flight adds or deletes the same element: every write here is safe to apply twice.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from waituntil.adapters.cache_store.table import CacheTable, StaleWrite, is_expired, iso_time
from waituntil.cache.items import (
    attempt_to_text,
    attempts_from_item,
    chunk_from_item,
    chunk_to_item,
    head_from_item,
    head_to_attributes,
    index_page_from_item,
    index_page_to_item,
    retiring_to_attributes,
    served_body_of_chunk_item,
)
from waituntil.cache.layout import (
    KIND_ATTEMPTS,
    KIND_INDEX,
    attempts_item_key,
    dump_json,
    list_item_key,
    next_head_key,
    version_item_key,
)
from waituntil.cache.model import (
    NODES_WITH_SWITCH,
    IndexPage,
    ListChunk,
    ListHead,
    PublishAttempt,
    ServedChunk,
)
from waituntil.core.errors import DependencyUnavailable
from waituntil.core.observability import logger


class NodeCache:
    """List nodes by key, the least recently used dropped first beyond ``limit`` bytes (0:
    none kept). Shared by the store's threads."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._nodes: OrderedDict[str, tuple[IndexPage | ListChunk, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> IndexPage | ListChunk | None:
        with self._lock:
            kept = self._nodes.get(key)
            if kept is None:
                return None
            self._nodes.move_to_end(key)
            return kept[0]

    def put(self, key: str, node: IndexPage | ListChunk, size: int) -> None:
        if size > self._limit:
            return
        with self._lock:
            if key in self._nodes:
                return
            self._nodes[key] = (node, size)
            self._bytes += size
            while self._bytes > self._limit:
                _, (_, dropped) = self._nodes.popitem(last=False)
                self._bytes -= dropped


def _item_bytes(item: dict[str, Any]) -> int:
    """About what an item holds in memory: its strings and binaries."""
    return sum(
        len(value.get("S") or value.get("B") or "") + len(name) for name, value in item.items()
    )


def _served_head(table: str, item: dict[str, Any] | None) -> ListHead | None:
    if item is None or ("pages" not in item and "pages_z" not in item):
        return None  # none yet (or a layout from before index pages: rebuilt by a sync)
    return head_from_item(table, item)


class ListNodes(CacheTable):
    # ----- the list -----------------------------------------------------------------------

    def get_head(self, table: str) -> ListHead | None:
        return _served_head(table, self._get(list_item_key(table)))

    def get_next_head(self, table: str) -> ListHead | None:
        item = self._get(next_head_key(table))
        return None if item is None else head_from_item(table, item)

    def get_heads(self, table: str) -> tuple[ListHead | None, ListHead | None]:
        served, rebuilt = list_item_key(table), next_head_key(table)
        items = self._batch_get([served, rebuilt])
        item = items.get(rebuilt)
        return (
            _served_head(table, items.get(served)),
            None if item is None else head_from_item(table, item),
        )

    def get_version(self, table: str, version: str) -> ListHead | None:
        item = self._get(version_item_key(table, version))
        if item is None or is_expired(item, self._clock()):
            return None
        return head_from_item(table, item)

    def get_index_page(self, key: str) -> IndexPage | None:
        cached = self._nodes.get(key)
        if isinstance(cached, IndexPage):
            return cached
        item = self._get(key)
        if item is None or is_expired(item, self._clock()):
            return None
        page = index_page_from_item(item)
        self._keep(item, page)
        return page

    def get_chunk(self, key: str) -> ListChunk | None:
        cached = self._nodes.get(key)
        if isinstance(cached, ListChunk):
            return cached
        item = self._get(key)
        if item is None or is_expired(item, self._clock()):
            return None
        chunk = chunk_from_item(item)
        self._keep(item, chunk)
        return chunk

    def get_nodes(self, keys: Sequence[str]) -> dict[str, IndexPage | ListChunk]:
        """Nodes kept by this process, the rest in one ``BatchGetItem`` (strongly consistent,
        as ``get_index_page`` and ``get_chunk``: a node just switched to is found)."""
        nodes: dict[str, IndexPage | ListChunk] = {}
        missing: list[str] = []
        for key in dict.fromkeys(keys):
            cached = self._nodes.get(key)
            if cached is None:
                missing.append(key)
            else:
                nodes[key] = cached
        if not missing:
            return nodes
        now = self._clock()
        for key, item in self._batch_get(missing).items():
            if is_expired(item, now):
                continue
            is_page = item.get("kind", {}).get("S") == KIND_INDEX
            node = index_page_from_item(item) if is_page else chunk_from_item(item)
            self._keep(item, node)
            nodes[key] = node
        return nodes

    @cached_property
    def _nodes(self) -> NodeCache:
        return NodeCache(self._node_cache_bytes)

    def _keep(self, item: dict[str, Any], node: IndexPage | ListChunk) -> None:
        """Keep a node read or written for the next publish of this warm process. Nodes never
        change (unique keys), so a kept one is the stored one for as long as any head reaches
        it; one already expiring is reached by no current head and not kept."""
        if "expires_at" not in item:
            self._nodes.put(node.key, node, _item_bytes(item))

    def get_served_chunk(self, key: str) -> ServedChunk | None:
        """A chunk's JSON array as served, with out-of-line rows put back in place."""
        item = self._get(key)
        if item is None or is_expired(item, self._clock()):
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
        written: list[IndexPage | ListChunk] = [*chunks, *pages]
        for item, node in zip(items, written, strict=True):
            self._keep(item, node)
        return len(items)

    def start_get_heads(self, table: str) -> Callable[[], tuple[ListHead | None, ListHead | None]]:
        return self.start(lambda: self.get_heads(table))

    def flip_head(
        self,
        head: ListHead,
        base: ListHead | None,
        *,
        chunks: Sequence[ListChunk] = (),
        pages: Sequence[IndexPage] = (),
    ) -> bool:
        """Freeze ``head`` as its version and make it current if ``base`` still is: one step,
        which writes ``chunks`` and ``pages`` too (unconditional puts of unique keys: a resend
        writes the same items again)."""
        if len(chunks) + len(pages) > NODES_WITH_SWITCH:
            raise ValueError(f"at most {NODES_WITH_SWITCH} nodes go with a head switch")
        nodes = [chunk_to_item(chunk) for chunk in chunks]
        nodes += [index_page_to_item(page) for page in pages]
        if not self._switch(head, base, nodes=nodes):
            return False
        written: list[IndexPage | ListChunk] = [*chunks, *pages]
        for item, node in zip(nodes, written, strict=True):
            self._keep(item, node)
        return True

    def promote_head(self, head: ListHead, base: ListHead | None, rebuilt: ListHead) -> bool:
        """The same switch, which also ends ``/<table>#next`` if it still holds ``rebuilt``."""
        return self._switch(head, base, ending=rebuilt)

    def _switch(
        self,
        head: ListHead,
        base: ListHead | None,
        ending: ListHead | None = None,
        nodes: Sequence[dict[str, Any]] = (),
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
        attributes = head_to_attributes(
            head, iso_time(head.read_at_ns), iso_time(head.modified_at_ns)
        )
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
            *({"Put": {"TableName": self._table, "Item": node}} for node in nodes),
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
        except StaleWrite:
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
            except StaleWrite:
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
