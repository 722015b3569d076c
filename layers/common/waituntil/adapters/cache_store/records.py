"""What runs per table beside the list: a full sync's checkpoint, the leases (H5) and the
reconciler's state and node fingerprints.

A lease is one conditional put (free, expired or already the owner's), so a resend meets its
own lease and applies again; a release is conditional on the owner, so a resend of one that
applied finds nothing of its own and leaves the next holder's lease alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from waituntil.adapters.cache_store.table import (
    CacheTable,
    ItemTooLarge,
    StaleWrite,
    is_expired,
)
from waituntil.cache.items import (
    LEASE_CONDITION,
    checkpoint_from_item,
    checkpoint_to_item,
    fingerprint_from_item,
    fingerprint_to_item,
    heal_state_from_item,
    heal_state_to_item,
    journal_from_item,
    journal_tag,
    lease_condition_values,
    lease_owner_from_item,
    lease_to_item,
)
from waituntil.cache.layout import (
    KIND_FILL,
    KIND_HEAL,
    LEASE_SYNC,
    fill_journal_key,
    fingerprint_item_key,
    heal_item_key,
    lease_item_key,
    sync_item_key,
)
from waituntil.cache.model import (
    FillJournal,
    HealState,
    JournalOutcome,
    SyncCheckpoint,
)

# A node's fingerprint item outlives any use of it: summed again from the node when expired.
FINGERPRINT_TTL_S = 30 * 86_400


class SyncRecords(CacheTable):
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

    # ----- a first fill's journal (``sync/fill_journal``) ----------------------------------
    # One item per table; every write to it is conditional on who owns or joined it, and safe
    # to resend: adding keys twice is the same set, and the owner's own open or join meets its
    # own mark and applies again.

    def journal_changes(
        self, table: str, keys: Sequence[str], tags: Mapping[str, frozenset[str]]
    ) -> JournalOutcome:
        # Two conditions, tried in turn, because a fill may take the journal between them: a
        # change is either journaled before the fill owned it (its tags kept with it, so the
        # fill's puts keep them) or deferred while it does; never journaled as "no fill" after.
        entries = sorted({journal_tag(key, tag) for key, found in tags.items() for tag in found})
        for _ in range(2):
            try:
                self._journal(table, keys, [], "attribute_exists(#owner)")
                return JournalOutcome.DEFERRED
            except StaleWrite:
                pass
            except ItemTooLarge:
                if self._overflow(table, "attribute_exists(#owner)"):
                    return JournalOutcome.DEFERRED
            try:
                self._journal(table, keys, entries, "attribute_not_exists(#owner)")
                return JournalOutcome.JOURNALED
            except StaleWrite:
                continue
            except ItemTooLarge:
                if self._overflow(table, "attribute_not_exists(#owner)"):
                    return JournalOutcome.JOURNALED
        # Both refused twice: the journal is joined (an owner, once set, is never removed).
        return JournalOutcome.CLOSED

    def _journal(self, table: str, keys: Sequence[str], entries: list[str], owned: str) -> None:
        values: dict[str, Any] = {":keys": {"SS": sorted(set(keys))}, ":kind": {"S": KIND_FILL}}
        expression = "ADD #keys :keys"
        names = {"#keys": "keys", "#kind": "kind", "#owner": "owner", "#joined": "joined"}
        if entries:
            expression += ", #tags :tags"
            values[":tags"] = {"SS": entries}
            names["#tags"] = "tags"
        self._call(
            self._client.update_item,
            TableName=self._table,
            Key={"pk": {"S": fill_journal_key(table)}},
            UpdateExpression=expression + " SET #kind = :kind",
            ConditionExpression=f"{owned} AND attribute_not_exists(#joined)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def _overflow(self, table: str, owned: str) -> bool:
        """The keys do not fit: mark the journal overflowed (the fill re-checks every row), and
        drop its keys and tags, which no one needs any more: the mark must fit, and a fill
        that has not begun stays conditional (``open_journal``); one that has re-checks
        every row, conditionally, from its next invocation or its join on."""
        try:
            self._call(
                self._client.update_item,
                TableName=self._table,
                Key={"pk": {"S": fill_journal_key(table)}},
                UpdateExpression="REMOVE #keys, #tags SET #overflowed = :true",
                ConditionExpression=f"{owned} AND attribute_not_exists(#joined)",
                ExpressionAttributeNames={
                    "#overflowed": "overflowed",
                    "#owner": "owner",
                    "#joined": "joined",
                    "#keys": "keys",
                    "#tags": "tags",
                },
                ExpressionAttributeValues={":true": {"BOOL": True}},
            )
        except StaleWrite:
            return False
        return True

    def open_journal(self, table: str, sync_id: str, *, head_exists: bool) -> FillJournal | None:
        condition = (
            "attribute_not_exists(#blocked) AND attribute_not_exists(#joined)"
            " AND attribute_not_exists(#overflowed)"
            " AND (attribute_not_exists(#owner) OR #owner = :owner)"
        )
        if head_exists:
            # A list begun before journals were kept has none: its items' positions are
            # unknown to a put, so that fill stays conditional.
            condition += " AND attribute_exists(pk)"
        try:
            response = self._call(
                self._client.update_item,
                TableName=self._table,
                Key={"pk": {"S": fill_journal_key(table)}},
                UpdateExpression="SET #owner = :owner, #kind = :kind",
                ConditionExpression=condition,
                ExpressionAttributeNames={
                    "#owner": "owner",
                    "#kind": "kind",
                    "#blocked": "blocked",
                    "#joined": "joined",
                    "#overflowed": "overflowed",
                },
                ExpressionAttributeValues={":owner": {"S": sync_id}, ":kind": {"S": KIND_FILL}},
                ReturnValues="ALL_NEW",
            )
        except StaleWrite:
            return None
        return journal_from_item(response["Attributes"])

    def read_journal(self, table: str) -> FillJournal | None:
        item = self._get(fill_journal_key(table))
        return None if item is None else journal_from_item(item)

    def join_journal(self, table: str, sync_id: str) -> FillJournal | None:
        try:
            response = self._call(
                self._client.update_item,
                TableName=self._table,
                Key={"pk": {"S": fill_journal_key(table)}},
                UpdateExpression="SET #joined = :owner",
                # Its own join again (a resend, a resume) applies again.
                ConditionExpression="#owner = :owner AND "
                "(attribute_not_exists(#joined) OR #joined = :owner)",
                ExpressionAttributeNames={"#owner": "owner", "#joined": "joined"},
                ExpressionAttributeValues={":owner": {"S": sync_id}},
                ReturnValues="ALL_NEW",
            )
        except StaleWrite:
            return None
        return journal_from_item(response["Attributes"])

    def block_fills(self, table: str) -> bool:
        names = {"#blocked": "blocked", "#kind": "kind", "#owner": "owner", "#joined": "joined"}
        values: dict[str, Any] = {":true": {"BOOL": True}, ":kind": {"S": KIND_FILL}}
        key = {"pk": {"S": fill_journal_key(table)}}
        try:
            self._call(
                self._client.update_item,
                TableName=self._table,
                Key=key,
                UpdateExpression="SET #blocked = :true, #kind = :kind",
                ConditionExpression="attribute_not_exists(#owner) OR attribute_exists(#joined)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
            return True
        except StaleWrite:
            pass
        if self.lease_holder(table, LEASE_SYNC) is not None:
            return False  # the fill runs: the rebuild waits for its join
        # The fill that owns the journal died (its lease expired, so no put of its is in
        # flight): close the journal for it. If it is ever resumed, it finds the journal not
        # its own to join, and re-checks every row conditionally.
        self._call(
            self._client.update_item,
            TableName=self._table,
            Key=key,
            UpdateExpression="SET #blocked = :true, #joined = :rebuild, #overflowed = :true",
            ExpressionAttributeNames={
                "#blocked": "blocked",
                "#joined": "joined",
                "#overflowed": "overflowed",
            },
            ExpressionAttributeValues={":true": {"BOOL": True}, ":rebuild": {"S": "rebuild"}},
        )
        return True

    def end_journal(self, table: str) -> None:
        self._delete([fill_journal_key(table)])

    # ----- leases (H5) and the reconciler's state -----------------------------------------

    def acquire_lease(self, table: str, kind: str, owner: str, ttl_s: int) -> bool:
        """One conditional put: free, expired or already ``owner``'s. A put that applied and is
        resent by botocore meets its own lease and applies again, so it never refuses itself."""
        now = int(self._clock())
        names, values = lease_condition_values(owner, now)
        try:
            self._call(
                self._client.put_item,
                TableName=self._table,
                Item=lease_to_item(table, kind, owner, now + ttl_s),
                ConditionExpression=LEASE_CONDITION,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except StaleWrite:
            return False
        return True

    def release_lease(self, table: str, kind: str, owner: str) -> None:
        names, values = lease_condition_values(owner, int(self._clock()))
        try:
            self._call(
                self._client.delete_item,
                TableName=self._table,
                Key={"pk": {"S": lease_item_key(table, kind)}},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":owner": values[":owner"]},
            )
        except StaleWrite:
            return  # expired and taken by another meanwhile: theirs now

    def lease_holder(self, table: str, kind: str) -> str | None:
        item = self._get(lease_item_key(table, kind))
        return None if item is None else lease_owner_from_item(item, self._clock())

    def get_heal_state(self, table: str) -> HealState | None:
        item = self._get(heal_item_key(table))
        return None if item is None else heal_state_from_item(table, item)

    def put_heal_state(self, state: HealState) -> None:
        self._call(self._client.put_item, TableName=self._table, Item=heal_state_to_item(state))

    def add_healed(self, table: str, count: int) -> None:
        """One UpdateItem that adds to ``healed_total`` alone (creating the item if need be):
        a read-modify-put of the whole state here, without the lease, would put back the
        ``pending`` keys it read over those a cycle saved meanwhile. (ADD is not idempotent:
        a resend of a write that applied counts twice; it is a report, not a watermark.)"""
        self._call(
            self._client.update_item,
            TableName=self._table,
            Key={"pk": {"S": heal_item_key(table)}},
            UpdateExpression="SET #kind = if_not_exists(#kind, :kind) ADD #healed :count",
            ExpressionAttributeNames={"#kind": "kind", "#healed": "healed_total"},
            ExpressionAttributeValues={":kind": {"S": KIND_HEAL}, ":count": {"N": str(count)}},
        )

    def get_fingerprints(self, node_keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        by_pk = {fingerprint_item_key(key): key for key in node_keys}
        # Eventually consistent: a sum never changes once written.
        items = self._batch_get(list(by_pk), consistent=False)
        now = self._clock()
        return {
            by_pk[pk]: fingerprint_from_item(item)
            for pk, item in items.items()
            if "fp" in item and not is_expired(item, now)
        }

    def put_fingerprints(self, prints: Mapping[str, tuple[int, int]]) -> None:
        expires_at = int(self._clock()) + FINGERPRINT_TTL_S
        items = [
            fingerprint_to_item(key, count, fingerprint, expires_at)
            for key, (count, fingerprint) in prints.items()
        ]
        self._batch_write([{"PutRequest": {"Item": item}} for item in items])
