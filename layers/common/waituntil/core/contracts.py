"""The shapes that cross boundaries: Supabase's webhook payload and our queue message.

``Change`` is the one message contract shared by the receiver (producer) and the consumer.
Version 1 fields:

- ``version``: 1. A consumer refuses versions it does not know (the message goes to the DLQ).
- ``type``: INSERT | UPDATE | DELETE, as Supabase sent it; or RESYNC, sent by the scheduled
  resync rule (not by the receiver): re-read the table and heal whatever drifted; or
  RECONCILE, sent by the scheduled reconcile rule: find what differs at a cost that follows
  the differences, and heal it (``waituntil.sync.reconcile``).
- ``schema``, ``table``: where the change happened.
- ``key``: the primary key value (from ``record``, or ``old_record`` for a DELETE); null
  for RESYNC and RECONCILE, whose ``table`` may be ``*`` (every cached table).
- ``old_key``: UPDATE only, when ``old_record`` had another key (``UPDATE ... SET id = 30
  WHERE id = 3``, or a policy key such as a slug renamed): the consumer converges both keys,
  so the old one is unlisted. Absent otherwise (added within v1: a consumer of before it
  refuses a message that has it, and SQS redelivers that message to the updated consumer).
- ``record``, ``old_record``: the row bodies as Supabase sent them, or null when
  ``bodies_dropped`` is true (the message would have exceeded the SQS size limit). The consumer
  never trusts them for content: it re-reads Supabase. They are kept for audit and replay.
- ``received_at``: when the receiver accepted the webhook (UTC, ISO 8601).
- ``correlation_id``: the receiver's request id; the consumer logs it for every record.
- ``sync``: only on RESYNC messages the consumer sends itself to continue a full sync that ran
  out of invocation time: which sync, which phase, and the last key or list position done;
  and on a rebuild's (``rebuild: true``: ``make rebuild``, or a consumer that found the list
  built with another table policy).
- ``heal``: only on RECONCILE messages the consumer sends itself: keys a reconcile cycle found
  differing, to check again once changes in flight have landed (``HealCheck``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

ChangeType = Literal["INSERT", "UPDATE", "DELETE"]
MessageType = Literal["INSERT", "UPDATE", "DELETE", "RESYNC", "RECONCILE"]
# Types the scheduler and the consumer send, never a webhook: no key, the table may be "*".
TABLE_MESSAGES = ("RESYNC", "RECONCILE")
# Keys one RECONCILE follow-up carries: at 1 KB a key (the receiver's limit), far below 1 MiB.
HEAL_CHECK_KEYS = 500
EVERY_TABLE = "*"
# Primary keys are integers, uuids or text in practice. Booleans and floats are refused:
# they would make ambiguous cache keys.
RowKey = StrictInt | StrictStr
Row = dict[str, Any]


# Every model here has ``defer_build=True``: pydantic builds its validator when it is first
# used, not when the class is defined. Every function imports this module and uses a few of its
# models (the reader none, the consumer no webhook), so a cold start builds only those
# (docs/SCALE.md, "Cold start"); settings.py does the same.


class WebhookPayload(BaseModel):
    """What ``supabase_functions.http_request()`` sends: the trigger's jsonb_build_object."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)

    type: ChangeType
    table: Annotated[str, Field(min_length=1)]
    # ``schema`` shadows a BaseModel attribute, hence the alias.
    schema_name: Annotated[str, Field(alias="schema", min_length=1)]
    record: Row | None = None
    old_record: Row | None = None


class SyncProgress(BaseModel):
    """Where a full sync continues: sent by the consumer to itself, never by the receiver."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    sync_id: Annotated[str, Field(min_length=1, max_length=64)]
    phase: Literal["rows", "join", "deletes"] = "rows"
    after: Any = None
    # A rebuild: the sync builds a fresh version apart and switches to it when complete, while
    # readers keep the served one (``make rebuild``, or a table policy that changed).
    rebuild: bool = False


class HealCheck(BaseModel):
    """Keys a reconcile cycle found differing, sent back to the queue with a delay: by the time
    it runs, a webhook that was merely in flight has landed, and what still differs is healed
    (and counted as healed)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    keys: Annotated[list[StrictStr], Field(min_length=1, max_length=HEAL_CHECK_KEYS)]


class Change(BaseModel):
    """One queued change: the message body on the SQS queue (contract version 1)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, defer_build=True)

    version: Literal[1] = 1
    type: MessageType
    schema_name: Annotated[str, Field(alias="schema")]
    table: str
    key: RowKey | None
    old_key: RowKey | None = None
    record: Row | None = None
    old_record: Row | None = None
    bodies_dropped: bool = False
    received_at: datetime
    correlation_id: str
    sync: SyncProgress | None = None
    heal: HealCheck | None = None

    @model_validator(mode="after")
    def _key_unless_resync(self) -> Change:
        if (self.key is None) != (self.type in TABLE_MESSAGES):
            raise ValueError(
                "key is required for row changes and must be null for RESYNC and RECONCILE"
            )
        if self.sync is not None and (self.type != "RESYNC" or self.table == EVERY_TABLE):
            raise ValueError("sync progress belongs to a RESYNC of one table")
        if self.old_key is not None and (
            self.type != "UPDATE" or str(self.old_key) == str(self.key)
        ):
            raise ValueError("old_key is an UPDATE's previous key, when it differs from key")
        if self.heal is not None and (self.type != "RECONCILE" or self.table == EVERY_TABLE):
            raise ValueError("heal keys belong to a RECONCILE of one table")
        return self

    @property
    def keys(self) -> tuple[str, ...]:
        """The cache keys this change touches, as the cache spells them: its key, and the
        key the row had before an UPDATE that changed it."""
        touched = (self.key, self.old_key)
        return tuple(str(key) for key in touched if key is not None)

    def to_message(self) -> str:
        # Fields added within v1 (``old_key``, ``heal``) only when set: every other message stays
        # byte for byte what a consumer from before them accepts (its model forbids unknown
        # fields), mid-deploy too.
        unset = {name for name in ("old_key", "heal") if getattr(self, name) is None}
        return self.model_dump_json(by_alias=True, exclude=unset or None)

    @classmethod
    def from_message(cls, body: str) -> Change:
        return cls.model_validate_json(body)


class ChangeQueue(Protocol):
    """Where ``Change`` messages go: the receiver publishes webhooks, the consumer its own
    continuations (``adapters/queue.QueuePublisher``)."""

    def publish(self, body: str) -> str:
        """Send one message; its id once the queue has stored it."""
        ...
