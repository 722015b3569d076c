"""Row items: conditional writes on read time, tombstones, bodies kept in S3, position tags.

Every row write carries ``read_at_ns``, the time the consumer read Supabase; it lands only if
the stored item is older, so two consumers racing cannot let an older read win, and a write
that botocore resends after its answer was lost fails its own condition and reads as stale.
Row writes are conditional per item, so they run in parallel on the table's thread pool.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

from waituntil.adapters.cache_store.table import (
    BATCH_WRITE_LIMIT,
    CacheTable,
    StaleWrite,
    in_groups,
    iso_time,
)
from waituntil.cache.items import put_row_item, row_state_from_item
from waituntil.cache.layout import (
    BLOB_UNCLAIMED,
    KIND_ROW,
    KIND_TOMBSTONE,
    MAX_STORED_BODY_BYTES,
    Item,
    blob_bytes,
    blob_object_key,
    dump_json,
    encode_text,
    row_item_key,
)
from waituntil.cache.model import (
    FreshRow,
    RowFailure,
    RowFailureReason,
    RowState,
    RowWrites,
    position_tag,
)
from waituntil.core.errors import DependencyUnavailable
from waituntil.core.list_order import ListOrder
from waituntil.core.observability import logger


class RowItems(CacheTable):
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
        return self._write_each(table, fresh, read_at_ns, policy)

    def _write_each(
        self, table: str, fresh: Sequence[FreshRow], read_at_ns: int, policy: str
    ) -> RowWrites:
        results = self._parallel(lambda row: self._write_row(table, row, read_at_ns, policy), fresh)
        failures = {
            row.key: failure
            for row, (_, failure, _) in zip(fresh, results, strict=True)
            if failure is not None
        }
        outcomes = [outcome for outcome, failure, _ in results if failure is None]
        return RowWrites(
            written=outcomes.count("written") + outcomes.count("written-blob"),
            deleted=outcomes.count("deleted"),
            skipped_stale=outcomes.count("stale"),
            stored_out_of_line=outcomes.count("written-blob"),
            failures=failures,
            states={
                row.key: state
                for row, (_, _, state) in zip(fresh, results, strict=True)
                if state is not None
            },
        )

    def put_rows(
        self,
        table: str,
        fresh: Sequence[FreshRow],
        *,
        read_at_ns: int,
        policy: str,
        tags: Mapping[str, frozenset[str]],
    ) -> RowWrites:
        """A first fill's rows, put unconditionally with ``BatchWriteItem`` (25 a call, the
        calls in flight together on the pool): one call per 25 rows instead of one per row,
        and no read of the items first. Safe only under the fill's journal
        (``sync/fill_journal``). A resend, or ``UnprocessedItems`` sent again, puts the same
        item: idempotent. A tombstone, or a body too large for an item, takes the conditional
        path (``write_rows``: the blob store and its claim), rare in a fill."""
        read_at = iso_time(read_at_ns)
        puts: list[tuple[FreshRow, Item]] = []
        apart: list[FreshRow] = []
        for row in fresh:
            if row.body is None or row.position is None:
                apart.append(row)
                continue
            stored = encode_text(row.body.text)
            if _stored_bytes(stored) > MAX_STORED_BODY_BYTES:
                apart.append(row)
                continue
            item = put_row_item(
                row_item_key(table, row.key),
                row,
                stored,
                read_at_ns,
                read_at,
                policy,
                tags.get(row.key, frozenset()),
            )
            puts.append((row, item))

        def put_group(group: list[tuple[FreshRow, Item]]) -> RowFailure | None:
            try:
                self._batch_write([{"PutRequest": {"Item": item}} for _, item in group])
            except DependencyUnavailable as error:
                return RowFailure(
                    RowFailureReason.DEPENDENCY_FAILED, f"rows of {table} were not put: {error}"
                )
            return None

        groups = list(in_groups(puts, BATCH_WRITE_LIMIT))
        failures: dict[str, RowFailure] = {}
        states: dict[str, RowState] = {}
        for group, failure in zip(groups, self._parallel(put_group, groups), strict=True):
            for row, item in group:
                if failure is not None:
                    failures[row.key] = failure
                else:
                    # What the item holds now, as the put wrote it: a read made at the put.
                    states[row.key] = row_state_from_item(row.key, item)
        if apart:
            # A body the blob store keeps is not put again when the item already has it (a
            # change cached it before the fill): as the conditional fill, by its etag.
            stored_states = self.get_rows(table, [row.key for row in apart])
            kept = {
                row.key: state
                for row in apart
                if (state := stored_states.get(row.key)) is not None
                and state.body is not None
                and row.body is not None
                and state.body.etag == row.body.etag
                and state.position == row.position
                and state.policy == policy
                and not state.blob_unclaimed
            }
            states.update(kept)
            apart = [row for row in apart if row.key not in kept]
        others = self._write_each(table, apart, read_at_ns, policy)
        return RowWrites(
            written=len(states) + others.written,
            deleted=others.deleted,
            skipped_stale=others.skipped_stale,
            stored_out_of_line=others.stored_out_of_line,
            failures={**failures, **others.failures},
            states={**states, **others.states},
        )

    def _write_row(
        self, table: str, row: FreshRow, read_at_ns: int, policy: str = ""
    ) -> tuple[str, RowFailure | None, RowState | None]:
        """One conditional row write: its outcome, its failure, and the state the item held
        just after it landed (None when the answer does not settle it)."""
        values: Item = {
            ":read_at_ns": {"N": str(read_at_ns)},
            ":read_at": {"S": iso_time(read_at_ns)},
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
                    too_large = RowFailure(
                        RowFailureReason.TOO_LARGE,
                        f"row {row.key} of {table} is too large for an item, and no blob store",
                    )
                    return "failed", too_large, None
                blob = blob_object_key(table, row.body.etag, secrets.token_hex(8))
                try:
                    self._blobs.put(blob, row.body.text)
                except DependencyUnavailable as error:  # one row's failure fails that row only
                    return "failed", _dependency_failed(table, row.key, error), None
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
                # The whole item before: the body it replaced (to let go of), and with this
                # write's own changes the item after, which the publish uses as its read.
                ReturnValues="ALL_OLD",
            )
        except StaleWrite:
            if blob is None or not self._points_to(pk, blob):
                # A body it put stays unclaimed: the lifecycle expires it.
                return "stale", None, None
            # The write landed but its answer was lost, and botocore's resend found its own
            # read already stored: the body is ours to claim (the one it replaced goes
            # untagged, which costs storage only). Its answer, and so the item after, is
            # unknown: the publish reads the row.
            response = None
        except DependencyUnavailable as error:
            return "failed", _dependency_failed(table, row.key, error), None
        failure = self._claim(table, row.key, blob) if blob is not None else None
        old: Item = (response or {}).get("Attributes", {})  # none: the item is new
        old_blob = old.get("blob", {}).get("S")
        if old_blob and old_blob != blob:
            self._supersede(old_blob)
        if failure is not None:
            return "failed", failure, None
        state = None
        if response is not None:
            state = row_state_from_item(row.key, _item_after(pk, old, values, sets, adds, removes))
        return outcome, None, state

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
        except StaleWrite:
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
        for pk, item in self._batch_get(list(by_pk)).items():
            if "kind" not in item:
                # Not a whole item yet: moto's server can show an item an UpdateItem is still
                # creating (DynamoDB's writes are atomic); read as not there.
                continue
            states[by_pk[pk]] = row_state_from_item(by_pk[pk], item)
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


def _item_after(
    pk: str, old: Item, values: Item, sets: list[str], adds: list[str], removes: list[str]
) -> Item:
    """The item an update left, from the item before it (``ALL_OLD``) and the update itself:
    what DynamoDB stored, without reading it back."""
    item = {name: value for name, value in old.items() if name not in removes}
    item["pk"] = {"S": pk}
    for name in sets:
        item[name] = values[f":{name}"]
    for name in adds:  # string sets: ADD is a union
        item[name] = {"SS": sorted({*old.get(name, {}).get("SS", ()), *values[f":{name}"]["SS"]})}
    return item


def _dependency_failed(table: str, key: str, error: Exception) -> RowFailure:
    return RowFailure(
        RowFailureReason.DEPENDENCY_FAILED, f"row {key} of {table} was not written: {error}"
    )


def _stored_bytes(attributes: Item) -> int:
    value = attributes.get("body") or attributes["body_z"]
    stored = value.get("S") or value.get("B")
    return len(stored.encode()) if isinstance(stored, str) else len(stored)
