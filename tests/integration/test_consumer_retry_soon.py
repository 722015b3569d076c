"""Records that lost a race come back in seconds: the consumer handler on moto's SQS (which
implements ChangeMessageVisibility) and the local Supabase."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from local.supabase import LocalSupabase
from tests.conftest import EmulatedAws, LambdaContext
from tests.consumer_support import batch, change, consumer_ports, drain, resync, run, sqs_event
from waituntil.adapters.queue import QueuePublisher


class ContendedStore:
    """The moto-backed store, except that another consumer switches the head first, always."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def flip_head(self, head: Any, base: Any, **nodes: Any) -> bool:
        return False


def _received(aws: EmulatedAws, body: str) -> dict[str, Any]:
    """The message as Lambda's poller hands it over: sent, then received (a real receipt
    handle, the queue's own visibility timeout from the template)."""
    aws.sqs.send_message(QueueUrl=aws.stack.queue_url, MessageBody=body)
    (message,) = aws.sqs.receive_message(
        QueueUrl=aws.stack.queue_url, MessageSystemAttributeNames=["All"]
    )["Messages"]
    record: dict[str, Any] = sqs_event(body)["Records"][0]
    record["messageId"] = message["MessageId"]
    record["receiptHandle"] = message["ReceiptHandle"]
    record["attributes"] = dict(message["Attributes"])
    return record


def _visible(aws: EmulatedAws) -> list[dict[str, Any]]:
    return list(
        aws.sqs.receive_message(
            QueueUrl=aws.stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
    )


def test_a_contended_record_is_received_again_within_seconds(
    aws: EmulatedAws,
    supabase: LocalSupabase,
    lambda_context: LambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a cached table whose every head switch another consumer wins, and an UPDATE of
    # article 1 received from the change queue (its first receive)
    monkeypatch.setattr("waituntil.sync.list_publish.backoff_s", lambda attempt: 0.0)
    # (a first retry 2-4 s away rather than 1-2 s: long enough to see it hidden meanwhile)
    monkeypatch.setattr("waituntil.sync.retry.BASE_S", 4)
    supabase.seed("articles", [{"id": 1, "title": "one"}])
    ports = consumer_ports(aws, supabase)
    assert run(batch(resync("articles")), ports, lambda_context) == []
    drain(aws, ports, lambda_context)
    supabase.sql("update articles set title = 'two' where id = 1")
    contended = dataclasses.replace(ports, store=ContendedStore(ports.store))
    record = _received(aws, json.dumps(change("UPDATE", 1)))
    # When the consumer handles it
    # Then it fails (the batch's only record: Powertools raises, as Lambda expects), is not
    # visible at once, and is received again within 4 s (not after the queue's 660 s)
    with pytest.raises(BatchProcessingError, match="All records failed"):
        run({"Records": [record]}, contended, lambda_context)
    returned = time.monotonic()
    assert _visible(aws) == []
    again: list[dict[str, Any]] = []
    while not again and time.monotonic() < returned + 5:
        time.sleep(0.2)
        again = _visible(aws)
    assert [message["MessageId"] for message in again] == [record["messageId"]]
    assert time.monotonic() - returned < 4.5


def test_a_visibility_change_sqs_refuses_is_reported_not_raised(aws: EmulatedAws) -> None:
    # Given one receipt handle SQS knows and one it does not
    aws.sqs.send_message(QueueUrl=aws.stack.queue_url, MessageBody="m")
    (message,) = aws.sqs.receive_message(QueueUrl=aws.stack.queue_url)["Messages"]
    queue = QueuePublisher(aws.stack.queue_url, aws.sqs)
    # When both are made visible again after a second
    unchanged = queue.change_visibility({message["ReceiptHandle"]: 1, "not-a-handle": 1})
    # Then only the unknown one is reported unchanged, and the known one comes back
    assert unchanged == ["not-a-handle"]
    time.sleep(1.2)
    assert [m["MessageId"] for m in _visible(aws)] == [message["MessageId"]]
