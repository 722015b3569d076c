"""Publishes queue messages: the durable hand-off that lets the receiver answer at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from waituntil.core.errors import QueueUnavailable

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


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
