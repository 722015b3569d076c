"""One settings model per function, read from the environment once per container.

Logic never reads ``os.environ``: handlers ask for their settings here and pass values on.
The environment variable names are the ones template.yaml sets.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from waituntil.core.errors import ServiceViewServedPublicly
from waituntil.core.table_policy import TablePolicy, parse_policies

# Supabase (PostgREST db-max-rows) silently truncates any read to this many rows.
SUPABASE_MAX_ROWS = 1000
# SQS keeps a message at most 14 days (an AWS limit): the dead-letter queue's retention when
# DEAD_LETTER_RETENTION_SECONDS is not set (template.yaml sets it from the queue's one value).
SQS_MAX_RETENTION_S = 1_209_600
# How much longer than the dead-letter queue's retention a tombstone is kept.
TOMBSTONE_MARGIN_S = 86_400


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class _EnvSettings(BaseModel):
    # Built on first use, as the contracts are: each function validates one of these models.
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, defer_build=True)

    cached_tables: Annotated[tuple[str, ...], Field(alias="CACHED_TABLES", min_length=1)] = (
        "articles",
    )
    schema_name: Annotated[str, Field(alias="SUPABASE_SCHEMA", min_length=1)] = "public"
    # Defaults for every table's policy; TABLE_POLICIES (JSON) says what differs per table.
    primary_key: Annotated[str, Field(alias="PRIMARY_KEY", min_length=1)] = "id"
    # "column" or "column.desc"; the default is the primary key, ascending.
    list_order: Annotated[str | None, Field(alias="LIST_ORDER")] = None
    table_policies_json: Annotated[str | None, Field(alias="TABLE_POLICIES")] = None
    _policies: dict[str, TablePolicy] = PrivateAttr(default_factory=dict)

    _split_tables = field_validator("cached_tables", mode="before")(_split_csv)

    def model_post_init(self, context: object, /) -> None:
        default = TablePolicy(key=self.primary_key, order=self.list_order or None)
        self._policies = parse_policies(self.cached_tables, self.table_policies_json, default)

    def policy(self, table: str) -> TablePolicy:
        """The cache policy of a cached table (``waituntil.core.table_policy``)."""
        return self._policies[table]

    @property
    def primary_keys(self) -> dict[str, str]:
        return {table: policy.key for table, policy in self._policies.items()}


class ReceiverSettings(_EnvSettings):
    """What the webhook receiver needs."""

    queue_url: Annotated[str, Field(alias="QUEUE_URL", min_length=1)]
    webhook_secret_name: Annotated[str, Field(alias="WEBHOOK_SECRET_NAME", min_length=1)]
    secret_max_age_s: Annotated[int, Field(alias="SECRET_MAX_AGE_SECONDS", ge=0)] = 300
    # SQS's message size limit. No default: template.yaml's Mappings hold the one value, which
    # the queues' MaximumMessageSize reads too, so the two cannot disagree.
    max_message_bytes: Annotated[int, Field(alias="MAX_MESSAGE_BYTES", gt=1024)]
    # Lambda accepts at most 6 MB of synchronous request payload; refuse early above it.
    max_body_bytes: Annotated[int, Field(alias="MAX_BODY_BYTES", gt=0)] = 6_000_000


class ConsumerSettings(_EnvSettings):
    """What the queue consumer needs."""

    table_name: Annotated[str, Field(alias="CACHE_TABLE_NAME", min_length=1)]
    # Checked when the consumer starts (supabase-py checked it when it first connected).
    supabase_url: Annotated[str, Field(alias="SUPABASE_URL", pattern=r"^https?://.+")]
    supabase_key_secret_name: Annotated[str, Field(alias="SUPABASE_KEY_SECRET_NAME", min_length=1)]
    # The anon key, for tables cached with the public's view (the default role).
    supabase_anon_key_secret_name: Annotated[
        str | None, Field(alias="SUPABASE_ANON_KEY_SECRET_NAME")
    ] = None
    secret_max_age_s: Annotated[int, Field(alias="SECRET_MAX_AGE_SECONDS", ge=0)] = 300
    supabase_timeout_s: Annotated[float, Field(alias="SUPABASE_TIMEOUT_SECONDS", gt=0, le=60)] = 8.0
    # supabase-py's own retry of transient read errors; SQS retries whatever is left.
    supabase_retry: Annotated[bool, Field(alias="SUPABASE_RETRY")] = True
    page_size: Annotated[int, Field(alias="SUPABASE_PAGE_SIZE", ge=1, le=SUPABASE_MAX_ROWS)] = (
        SUPABASE_MAX_ROWS
    )
    # Target bytes of one list chunk (= one page of the read API); see docs/BENCHMARKS.md.
    chunk_bytes: Annotated[int, Field(alias="LIST_CHUNK_BYTES", ge=1024, le=150_000)] = 64_000
    index_refs: Annotated[int, Field(alias="LIST_INDEX_REFS", ge=4, le=1000)] = 128
    # A change can come back from the dead-letter queue as late as its retention allows; its
    # row's tombstone must still be there then, holding the row's list positions, or the
    # deleted row could never be unlisted. So tombstones outlive that retention.
    dead_letter_retention_s: Annotated[
        int, Field(alias="DEAD_LETTER_RETENTION_SECONDS", ge=60, le=SQS_MAX_RETENTION_S)
    ] = SQS_MAX_RETENTION_S
    old_list_grace_s: Annotated[int, Field(alias="OLD_LIST_GRACE_SECONDS", ge=0)] = 900
    # A publish older than this is settled or dead: no invocation runs longer than Lambda's
    # 900 s, so the sweep may expire what it wrote that no head reaches. Also how long a
    # rebuild may go without switching its version before another consumer takes it over.
    orphan_age_s: Annotated[int, Field(alias="ORPHAN_AGE_SECONDS", ge=0)] = 1200
    # Where a full sync sends its continuation (the change queue itself).
    queue_url: Annotated[str, Field(alias="QUEUE_URL", min_length=1)]
    # A full sync stops and continues in a new message when less than this is left.
    sync_reserve_ms: Annotated[int, Field(alias="SYNC_RESERVE_MS", ge=1000)] = 10_000
    # S3 bucket for row bodies too large for a DynamoDB item; empty: such rows fail alone.
    blob_bucket: Annotated[str | None, Field(alias="BLOB_BUCKET")] = None
    # The reconciler (waituntil.sync.reconcile). Commit order is not timestamp order: a row's
    # change column holds its transaction's start, which may commit up to the longest
    # transaction later; every scan re-reads this much before where the last one ended.
    reconcile_overlap_min: Annotated[float, Field(alias="RECONCILE_OVERLAP_MINUTES", ge=0)] = 5
    # Differences younger than this may be webhooks in flight: checked again this much later
    # (a delayed message) before they are healed and counted as lost.
    reconcile_settle_s: Annotated[int, Field(alias="RECONCILE_SETTLE_SECONDS", ge=0, le=900)] = 15
    # One cycle's work at most: keys scanned, Supabase requests; the rest waits for the next.
    reconcile_max_keys: Annotated[int, Field(alias="RECONCILE_MAX_KEYS", ge=1)] = 20_000
    reconcile_max_requests: Annotated[int, Field(alias="RECONCILE_MAX_REQUESTS", ge=4)] = 2_000
    # Leases (H5): a reconcile cycle's is released at its end; a full sync renews its own at
    # every page, and a dead one's expires after this long (longer than the queue's
    # visibility timeout, so a redelivered sync finds its own lease and resumes).
    reconcile_lease_s: Annotated[int, Field(alias="RECONCILE_LEASE_SECONDS", ge=10)] = 120
    sync_lease_s: Annotated[int, Field(alias="SYNC_LEASE_SECONDS", ge=60)] = 900

    @property
    def reconcile_overlap_s(self) -> int:
        return round(self.reconcile_overlap_min * 60)

    @property
    def tombstone_ttl_s(self) -> int:
        return self.dead_letter_retention_s + TOMBSTONE_MARGIN_S


class ReaderSettings(_EnvSettings):
    """What the read API needs."""

    table_name: Annotated[str, Field(alias="CACHE_TABLE_NAME", min_length=1)]
    cache_max_age_s: Annotated[int, Field(alias="CACHE_MAX_AGE_SECONDS", ge=0)] = 60
    stale_while_revalidate_s: Annotated[
        int, Field(alias="STALE_WHILE_REVALIDATE_SECONDS", ge=0)
    ] = 300
    # "iam": API Gateway checks SigV4 (template parameter ReadAccess); the reader also refuses
    # unsigned requests itself, so a template that lost the authorizer fails closed.
    read_access: Annotated[str, Field(alias="READ_ACCESS", pattern="^(public|iam)$")] = "public"
    # S3 bucket holding row bodies too large for an item (written by the consumer).
    blob_bucket: Annotated[str | None, Field(alias="BLOB_BUCKET")] = None

    def model_post_init(self, context: object, /) -> None:
        super().model_post_init(context)
        if self.read_access != "public":
            return
        exposed = [
            table
            for table in self.cached_tables
            if self.policy(table).role == "service" and not self.policy(table).public
        ]
        if exposed:
            # A service-role view holds every row and column, what RLS hides included: the
            # public read API would publish it. Only an explicit policy may say it is public.
            raise ServiceViewServedPublicly(
                f"{', '.join(exposed)}: cached with the service role's view (every row and "
                'column) but ReadAccess is public; add "public": true to its TablePolicies '
                'entry if all of it may be public, use "role": "anon", or deploy with '
                "ReadAccess=iam"
            )


@cache
def receiver_settings() -> ReceiverSettings:
    return ReceiverSettings.model_validate(dict(os.environ))


@cache
def consumer_settings() -> ConsumerSettings:
    return ConsumerSettings.model_validate(dict(os.environ))


@cache
def reader_settings() -> ReaderSettings:
    return ReaderSettings.model_validate(dict(os.environ))
