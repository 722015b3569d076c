"""Driving the consumer's real handler under the model: batches of changes, and fills.

A batch is an SQS event of change messages handed to ``consumer.handler.lambda_handler`` with
ports from ``bench.latency_stack``. A fill is the first change of an empty cache, then every
message the consumer queues for itself (the RESYNC it starts, its continuations), each batch
one invocation with the consumer's 60 s budget, as Lambda's poller would deliver them. The
poller's own receive is modelled as one SQS round trip per invocation.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.common import quiet
from bench.latency import wait
from bench.latency_stack import ModelStack

TABLE = "articles"
INVOCATION_SECONDS = 60  # the consumer's Timeout in template.yaml


class InvocationContext:
    """What Powertools and the consumer read of a Lambda context; the time left runs down."""

    function_name = "bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"

    def __init__(self, seconds: float = INVOCATION_SECONDS) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def change_message(key: int, change_type: str = "UPDATE", table: str = TABLE) -> str:
    from waituntil.core.contracts import Change

    return Change(
        type=change_type,  # type: ignore[arg-type]
        schema_name="public",
        table=table,
        key=key,
        received_at=datetime.now(UTC),
        correlation_id=str(uuid.uuid4()),
    ).to_message()


def sqs_event(
    bodies: Sequence[str],
    message_ids: Sequence[str] | None = None,
    received: Sequence[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Lambda's event; ``received``: each message's receipt handle and receive count, as
    the queue handed it over (the consumer shortens a contended record's visibility)."""
    ids = message_ids or [str(uuid.uuid4()) for _ in bodies]
    deliveries = received or [("bench", "1")] * len(bodies)
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": handle,
                "body": body,
                "attributes": {"ApproximateReceiveCount": receives},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench",
                "awsRegion": "us-east-1",
            }
            for body, message_id, (handle, receives) in zip(bodies, ids, deliveries, strict=True)
        ]
    }


def invoke_consumer(
    ports: Any, bodies: Sequence[str], *, quiet_output: bool = True
) -> dict[str, Any]:
    """One invocation of the consumer's handler; raises if a record failed. Powertools prints
    its metrics on stdout: silenced here, or by the caller when threads invoke at once
    (``quiet_output=False``: redirecting stdout per thread would race)."""
    from consumer.handler import lambda_handler

    with quiet() if quiet_output else contextlib.nullcontext():
        response: dict[str, Any] = lambda_handler(
            sqs_event(bodies), InvocationContext(), ports=ports
        )
    if response["batchItemFailures"]:
        raise RuntimeError(f"records failed: {response['batchItemFailures']}")
    return response


@dataclass
class FillResult:
    rows: int
    seconds: float
    invocations: int


def drain_fill(
    stack: ModelStack,
    ports: Any,
    *,
    on_invocation: Callable[[int], None] | None = None,
) -> FillResult:
    """A first fill, measured: one change on the empty cache, then every message the
    consumer queues for itself until none is left."""
    sqs = stack.raw_client("sqs")  # the poller's own client: outside the model's trace
    started = time.perf_counter()
    batches: list[list[str]] = [[change_message(1)]]
    invocations = 0
    while batches:
        invoke_consumer(ports, batches.pop(0))
        invocations += 1
        if on_invocation is not None:
            on_invocation(invocations)
        queued = _receive_all(sqs, stack.queue_url)
        if queued:
            wait(stack.latencies, "sqs", stack.trace, "ReceiveMessage (Lambda's poller)")
        batches += [queued[i : i + 10] for i in range(0, len(queued), 10)]
    return FillResult(stack.table.rows, time.perf_counter() - started, invocations)


def _receive_all(sqs: Any, queue_url: str) -> list[str]:
    bodies: list[str] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
