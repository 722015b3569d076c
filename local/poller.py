"""Lambda's SQS event source mapping: a poller thread per ``Type: SQS`` event of the template.

Like Lambda's pollers it long-polls the queue, gathers up to ``BatchSize`` messages for at most
``MaximumBatchingWindowInSeconds`` (counted from the first message, capped near Lambda's 6 MB
invocation payload), invokes the function with the SQS event Lambda builds, then deletes the
messages that succeeded: with ``ReportBatchItemFailures`` every message not listed in
``batchItemFailures``; none when the function raised or timed out, or when a listed item
identifier is not in the batch (Lambda then treats the whole batch as failed). The rest become
visible again after the queue's visibility timeout, or when the function said (the consumer
shortens a contended record's with ``ChangeMessageVisibility``, which moto honours: the
records carry their receipt handle and ``ApproximateReceiveCount``), and SQS itself (moto
implements ``maxReceiveCount``) moves them to the dead-letter queue.

Where a window starts: AWS's pages read two ways. The event source mapping page says "the
next batching window begins as soon as the previous function invocation completes", which
would let a lone message after a quiet spell go at once; the SQS page says Lambda keeps
polling "until the batch window expires", and warns that with a window and very low traffic
Lambda "might wait for up to 20 seconds before invoking your function", even with a window
under 20 s (reported on AWS with one message and a 5 s window: invoked about 20 s later,
dev.classmethod.jp). This poller follows the SQS page, the one written for this event
source and the one a measurement on AWS bears out: a lone message waits out the window (not
the 20 s: that is the cost of Lambda's long polls, which this poller does not have). The
template's default window is 0 for that reason (docs/CONFIGURATION.md, "The batching window").

Local-only deviations: one batch at a time per event source (Lambda runs up to five and
scales up); long polls of 1 s instead of 20 s so that ``stop()`` returns within a second (an
empty receive costs nothing locally).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from local.lambda_runtime import Invocation
from local.template import Resolver, resources_of_type

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = logging.getLogger("local.poller")

POLL_WAIT_S = 1
RECEIVE_LIMIT = 10  # SQS returns at most 10 messages per ReceiveMessage
# Lambda cuts a batch at its 6 MB synchronous payload; stop gathering one message early
# (messages are up to 1 MiB) rather than re-queue what would not fit.
PAYLOAD_BUDGET_BYTES = 6_000_000 - 1_048_576
SUPPORTED_PROPERTIES = frozenset(
    {
        "Queue",
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "FunctionResponseTypes",
        "Enabled",
        "ScalingConfig",
    }
)

Invoke = Callable[[dict[str, Any]], Invocation]


@dataclass(frozen=True)
class SqsEventSource:
    function_id: str
    event_name: str
    queue_arn: str
    queue_url: str
    batch_size: int
    batching_window_s: float
    report_item_failures: bool
    enabled: bool


def sqs_event_sources(resolver: Resolver) -> list[SqsEventSource]:
    """Every ``Type: SQS`` event, its queue resolved to a provisioned queue's URL."""
    urls_by_arn = {
        resolver.attributes[(logical_id, "Arn")]: resolver.refs[logical_id]
        for logical_id in resources_of_type(resolver.template, "AWS::SQS::Queue")
    }
    sources: list[SqsEventSource] = []
    for function_id, resource in resources_of_type(
        resolver.template, "AWS::Serverless::Function"
    ).items():
        for event_name, event in (resource["Properties"].get("Events") or {}).items():
            if event["Type"] != "SQS":
                continue
            unsupported = set(event["Properties"]) - SUPPORTED_PROPERTIES
            if unsupported:
                raise NotImplementedError(
                    f"{function_id}.{event_name}: the local poller ignores {sorted(unsupported)}"
                )
            properties = resolver.resolve(event["Properties"])
            queue_arn = str(properties["Queue"])
            sources.append(
                SqsEventSource(
                    function_id=function_id,
                    event_name=event_name,
                    queue_arn=queue_arn,
                    queue_url=urls_by_arn[queue_arn],
                    # Lambda's defaults for a standard queue.
                    batch_size=int(properties.get("BatchSize", 10)),
                    batching_window_s=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
                    report_item_failures="ReportBatchItemFailures"
                    in (properties.get("FunctionResponseTypes") or []),
                    enabled=str(properties.get("Enabled", True)).lower() != "false",
                )
            )
    return sources


def build_sqs_event(
    messages: list[MessageTypeDef], source: SqsEventSource, region: str
) -> dict[str, Any]:
    """The event Lambda hands the function for one batch."""
    return {"Records": [_record(message, source, region) for message in messages]}


def _record(message: MessageTypeDef, source: SqsEventSource, region: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": source.queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _message_attribute(value: Any) -> dict[str, Any]:
    # Lambda renames SQS's StringValue/BinaryValue and base64-encodes binary values.
    attribute: dict[str, Any] = {
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    return attribute


def settled_messages(
    messages: list[MessageTypeDef], invocation: Invocation, report_item_failures: bool
) -> list[MessageTypeDef]:
    """The messages Lambda deletes after this invocation."""
    if not invocation.ok:
        return []
    if not report_item_failures:
        return list(messages)
    response = invocation.response
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    if not failures:
        return list(messages)  # null, {} or an empty list all mean "every record succeeded"
    batch_ids = {message["MessageId"] for message in messages}
    failed_ids = {
        failure.get("itemIdentifier") if isinstance(failure, dict) else None for failure in failures
    }
    if not failed_ids <= batch_ids:
        return []  # an empty or unknown identifier fails the whole batch
    return [message for message in messages if message["MessageId"] not in failed_ids]


class SqsPoller:
    """Polls one queue for one function in a background thread."""

    def __init__(self, source: SqsEventSource, sqs: SQSClient, invoke: Invoke, region: str) -> None:
        self.source = source
        self._sqs = sqs
        self._invoke = invoke
        self._region = region
        self._stopping = threading.Event()
        self._busy = threading.Event()  # a batch is gathered or in flight
        self._thread: threading.Thread | None = None
        self.batches = 0

    @property
    def busy(self) -> bool:
        return self._busy.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"poller-{self.source.function_id}", daemon=True
        )
        self._thread.start()

    def signal_stop(self) -> None:
        self._stopping.set()

    def join(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)
            if not self._thread.is_alive():
                self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._poll_once()
            except Exception:  # keep polling, as Lambda does, whatever one batch did
                if self._stopping.is_set():
                    return  # the stack is going down under this batch: nothing to report
                log.exception("polling %s failed", self.source.queue_url)
                self._stopping.wait(1.0)
            finally:
                self._busy.clear()

    def _poll_once(self) -> None:
        first = self._receive(POLL_WAIT_S, self.source.batch_size)
        if not first:
            return
        self._busy.set()
        batch = self._gather(first)
        invocation = self._invoke(build_sqs_event(batch, self.source, self._region))
        self.batches += 1
        if not invocation.ok and not self._stopping.is_set():
            # (A batch cut short by the stack stopping is retried by SQS; nothing to report.)
            error = invocation.error or {}
            log.warning(
                "%s failed on a batch of %d: %s: %s",
                self.source.function_id,
                len(batch),
                error.get("errorType"),
                # Powertools' BatchProcessingError message carries every traceback.
                next(iter(str(error.get("errorMessage", "")).splitlines()), ""),
            )
        self._delete(settled_messages(batch, invocation, self.source.report_item_failures))

    def _gather(self, batch: list[MessageTypeDef]) -> list[MessageTypeDef]:
        """Fill the batch until it is full, the window closes or the payload budget is spent."""
        window_ends = time.monotonic() + self.source.batching_window_s
        while len(batch) < self.source.batch_size and not self._stopping.is_set():
            if sum(len(message["Body"].encode()) for message in batch) > PAYLOAD_BUDGET_BYTES:
                break
            remaining = window_ends - time.monotonic()
            if remaining <= 0:
                break
            # SQS waits in whole seconds; under a second left, poll and pause briefly instead.
            wait_s = 1 if remaining >= 1 else 0
            more = self._receive(wait_s, self.source.batch_size - len(batch))
            batch.extend(more)
            if not more and wait_s == 0:
                self._stopping.wait(min(remaining, 0.05))
        return batch

    def _receive(self, wait_s: int, wanted: int) -> list[MessageTypeDef]:
        response = self._sqs.receive_message(
            QueueUrl=self.source.queue_url,
            MaxNumberOfMessages=min(RECEIVE_LIMIT, wanted),
            WaitTimeSeconds=wait_s,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def _delete(self, messages: list[MessageTypeDef]) -> None:
        for start in range(0, len(messages), RECEIVE_LIMIT):
            group = messages[start : start + RECEIVE_LIMIT]
            response = self._sqs.delete_message_batch(
                QueueUrl=self.source.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(group)
                ],
            )
            for failure in response.get("Failed", []):
                log.warning("could not delete message: %s", failure.get("Message"))
