"""What runs per table beside the list: a full sync's checkpoint, the leases (H5) and the
reconciler's state and node fingerprints.

A lease is one conditional put (free, expired or already the owner's), so a resend meets its
own lease and applies again; a release is conditional on the owner, so a resend of one that
applied finds nothing of its own and leaves the next holder's lease alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from waituntil.adapters.cache_store.table import (
    CacheTable,
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
    lease_condition_values,
    lease_owner_from_item,
    lease_to_item,
)
from waituntil.cache.layout import (
    KIND_HEAL,
    fingerprint_item_key,
    heal_item_key,
    lease_item_key,
    sync_item_key,
)
from waituntil.cache.model import (
    HealState,
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
