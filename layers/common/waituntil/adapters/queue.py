"""Publishes queue messages: the durable hand-off that lets the receiver answer at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from waituntil.core.errors import QueueUnavailable
from waituntil.core.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

BATCH_ENTRIES = 10  # SQS's most entries per batch request


class QueuePublisher:
    def __init__(self, queue_url: str, client: SQSClient) -> None:
        self._queue_url = queue_url
        self._client = client

    def publish(self, body: str) -> str:
        """Send one message and return its id once SQS has accepted (stored) it."""
        return self.publish_later(body, 0)

    def publish_later(self, body: str, delay_s: int) -> str:
        """The same, delivered no sooner than ``delay_s`` seconds (SQS: 0-900)."""
        try:
            response = self._client.send_message(
                QueueUrl=self._queue_url, MessageBody=body, DelaySeconds=delay_s
            )
        except (BotoCoreError, ClientError) as error:
            raise QueueUnavailable("the change queue did not accept the message") from error
        return response["MessageId"]

    def change_visibility(self, delays: Mapping[str, int]) -> list[str]:
        """Make received messages (by receipt handle) visible again after their delay in
        seconds; the handles SQS did not change, which come back after the queue's own
        visibility timeout instead. Never raises: the records' outcome is already decided,
        this only says when they come back."""
        handles = list(delays)
        unchanged: list[str] = []
        for start in range(0, len(handles), BATCH_ENTRIES):
            group = handles[start : start + BATCH_ENTRIES]
            try:
                response = self._client.change_message_visibility_batch(
                    QueueUrl=self._queue_url,
                    Entries=[
                        {
                            "Id": str(index),
                            "ReceiptHandle": handle,
                            "VisibilityTimeout": delays[handle],
                        }
                        for index, handle in enumerate(group)
                    ],
                )
            except (BotoCoreError, ClientError) as error:
                logger.warning(
                    "could not shorten the visibility of failed records",
                    extra={"error": str(error)},
                )
                unchanged += group
                continue
            for failure in response.get("Failed", []):
                # e.g. a receipt handle that expired: the message is already visible again.
                logger.warning(
                    "could not shorten a failed record's visibility",
                    extra={"code": failure.get("Code"), "error": failure.get("Message")},
                )
                unchanged.append(group[int(failure["Id"])])
        return unchanged
