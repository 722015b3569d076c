"""Fill (or refill) the cache from Supabase now, instead of at the next change or resync; or
rebuild one table's list as a fresh version."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from waituntil.core.contracts import EVERY_TABLE, Change, SyncProgress

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def request_resync(sqs: SQSClient, queue_url: str, schema_name: str) -> tuple[str, Change]:
    """Queue the message the scheduled resync sends: re-read every cached table.

    Through the change queue rather than by invoking the consumer: the same retries, DLQ and
    batching apply, and it never races a consumer already running.
    """
    change = Change(
        type="RESYNC",
        schema_name=schema_name,
        table=EVERY_TABLE,
        key=None,
        received_at=datetime.now(UTC),
        correlation_id=f"backfill-{uuid.uuid4()}",
    )
    message_id = sqs.send_message(QueueUrl=queue_url, MessageBody=change.to_message())["MessageId"]
    return message_id, change


def request_rebuild(
    sqs: SQSClient, queue_url: str, schema_name: str, table: str
) -> tuple[str, Change]:
    """Queue a rebuild of ``table``: a full sync into a fresh list version built apart, which
    replaces the served one only once complete (readers keep the served one meanwhile)."""
    progress = SyncProgress(sync_id=uuid.uuid4().hex[:16], rebuild=True)
    change = Change(
        type="RESYNC",
        schema_name=schema_name,
        table=table,
        key=None,
        received_at=datetime.now(UTC),
        correlation_id=f"rebuild-{progress.sync_id}",
        sync=progress,
    )
    message_id = sqs.send_message(QueueUrl=queue_url, MessageBody=change.to_message())["MessageId"]
    return message_id, change


def wait_until_drained(sqs: SQSClient, queue_url: str, timeout_s: float) -> bool:
    """True once the change queue holds nothing, visible or in flight (the consumer is done)."""
    deadline = time.monotonic() + timeout_s
    while True:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        if all(int(value) == 0 for value in attributes.values()):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(1)
