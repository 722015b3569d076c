"""What is in the dead-letter queue and why; moving it back to the change queue."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from waituntil.core.contracts import Change

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

# Long enough to read every message once before the first ones become visible again.
PEEK_VISIBILITY_S = 60
SQS_BATCH = 10


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    sent_at: datetime  # when the receiver (or the resync rule) queued the change
    receives: int  # deliveries to the consumer, plus this listing's own receive
    change: Change | None
    reason: str

    def summary(self) -> str:
        change = self.change
        what = (
            f"{change.type} {change.schema_name}.{change.table} key={change.key}"
            f" correlation_id={change.correlation_id}"
            if change is not None
            else "(not a change message)"
        )
        sent = f"{self.sent_at:%Y-%m-%d %H:%M:%S}Z"
        return f"{self.message_id}  sent {sent}  {what}\n    why: {self.reason}"


def list_dead_letters(
    sqs: SQSClient,
    dlq_url: str,
    *,
    limit: int = 100,
    explain: Any = None,
) -> list[DeadLetter]:
    """Read (without removing) up to ``limit`` messages, each with why it failed.

    The messages are hidden while they are read, then made visible again at once. ``explain``
    (correlation id -> str | None) looks up the consumer's logged error, where logs exist.
    """
    letters: list[DeadLetter] = []
    handles: list[str] = []
    try:
        while len(letters) < limit:
            batch = sqs.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=min(SQS_BATCH, limit - len(letters)),
                VisibilityTimeout=PEEK_VISIBILITY_S,
                WaitTimeSeconds=1,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            ).get("Messages", [])
            if not batch:
                break
            for message in batch:
                handles.append(message["ReceiptHandle"])
                letters.append(_dead_letter(message, explain))
    finally:
        _release(sqs, dlq_url, handles)
    return letters


def redrive(sqs: SQSClient, dlq_url: str, queue_url: str) -> int:
    """Move every message back to the change queue; returns how many moved.

    Each message is sent before it is deleted, so a failure part-way duplicates at worst
    (harmless: the consumer converges on state), never loses. A moved message starts afresh
    with MaxReceiveCount deliveries.
    """
    moved = 0
    while True:
        batch = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=SQS_BATCH,
            VisibilityTimeout=PEEK_VISIBILITY_S,
            WaitTimeSeconds=1,
        ).get("Messages", [])
        if not batch:
            return moved
        sent = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(index), "MessageBody": message["Body"]}
                for index, message in enumerate(batch)
            ],
        )
        delivered = [batch[int(entry["Id"])] for entry in sent.get("Successful", [])]
        if delivered:
            sqs.delete_message_batch(
                QueueUrl=dlq_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(delivered)
                ],
            )
        moved += len(delivered)
        failed = sent.get("Failed", [])
        if failed:
            raise RuntimeError(
                f"moved {moved}; the change queue refused {len(failed)}: {failed[0]}"
            )


def _dead_letter(message: Any, explain: Any) -> DeadLetter:
    attributes = message.get("Attributes", {})
    sent_at = datetime.fromtimestamp(int(attributes.get("SentTimestamp", "0")) / 1000, UTC)
    receives = int(attributes.get("ApproximateReceiveCount", "0"))
    try:
        change: Change | None = Change.from_message(message["Body"])
    except (ValidationError, ValueError) as error:
        reason = f"the consumer cannot parse it, so every delivery failed: {_first_error(error)}"
        return DeadLetter(message["MessageId"], sent_at, receives, None, reason)
    assert change is not None
    logged = explain(change.correlation_id) if explain is not None else None
    reason = logged or (
        "every delivery failed (the table's read from Supabase or the cache write); the "
        f"consumer logged the error with correlation_id {change.correlation_id}"
    )
    return DeadLetter(message["MessageId"], sent_at, receives, change, reason)


def _first_error(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        return f"{'.'.join(str(part) for part in first['loc']) or 'body'}: {first['msg']}"
    return str(error)


def _release(sqs: SQSClient, dlq_url: str, handles: list[str]) -> None:
    for start in range(0, len(handles), SQS_BATCH):
        sqs.change_message_visibility_batch(
            QueueUrl=dlq_url,
            Entries=[
                {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for index, handle in enumerate(handles[start : start + SQS_BATCH])
            ],
        )


def logged_error_finder(logs: Any, log_group: str, lookback_s: int = 14 * 24 * 3600) -> Any:
    """correlation id -> the consumer's last ERROR line about it, from CloudWatch Logs."""

    def find(correlation_id: str) -> str | None:
        start_ms = int((datetime.now(UTC).timestamp() - lookback_s) * 1000)
        events = logs.filter_log_events(
            logGroupName=log_group,
            filterPattern=f'"{correlation_id}"',
            startTime=start_ms,
            limit=50,
        ).get("events", [])
        for event in reversed(events):
            try:
                line = json.loads(event["message"])
            except ValueError:
                continue
            if line.get("level") in ("ERROR", "CRITICAL"):
                detail = line.get("exception_name") or ""
                return f"{line.get('message')} {detail}".strip()
        return None

    return find
