"""The consumer's work for one SQS batch: parse each message, then converge the cache per table.

Row changes (INSERT/UPDATE/DELETE) are grouped by table and applied by ``row_changes``; each
RESYNC runs on its own (``full_sync``), then each RECONCILE (``reconcile``). Records fail per
table or per row (a row too large, a dependency down), never silently: ``BatchOutcome`` says
which, and why; a record that failed for a reason a few seconds cure (``sync.retry``) is made
visible again soon rather than after the queue's visibility timeout.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from waituntil.core.contracts import EVERY_TABLE, TABLE_MESSAGES, Change
from waituntil.core.errors import InvalidMessage
from waituntil.core.observability import logger, metrics
from waituntil.core.settings import ConsumerSettings
from waituntil.sync.full_sync import resync
from waituntil.sync.ports import ConsumerPorts, ConsumerQueue
from waituntil.sync.reconcile import reconcile
from waituntil.sync.retry import retry_delay_s
from waituntil.sync.row_changes import apply_changes


@dataclass(frozen=True)
class QueuedMessage:
    message_id: str
    body: str
    receipt_handle: str = ""  # what SQS needs to change this delivery's visibility
    receive_count: int = 1

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> QueuedMessage:
        """From a record of Lambda's SQS event."""
        attributes = record.get("attributes") or {}
        return cls(
            record["messageId"],
            record["body"],
            record.get("receiptHandle", ""),
            int(attributes.get("ApproximateReceiveCount", 1)),
        )


@dataclass
class BatchOutcome:
    """Which messages failed and why; the batch processor reports exactly these."""

    failures: dict[str, Exception] = field(default_factory=dict)
    # message id -> seconds until it is received again, for the failures retried soon
    retry_soon: dict[str, int] = field(default_factory=dict)

    def raise_if_failed(self, message_id: str) -> None:
        error = self.failures.get(message_id)
        if error is not None:
            raise error


def process_batch(
    messages: Iterable[QueuedMessage], ports: ConsumerPorts, remaining_ms: Callable[[], int]
) -> BatchOutcome:
    messages = list(messages)
    outcome = BatchOutcome()
    changes: dict[str, list[tuple[str, Change]]] = defaultdict(list)
    resyncs: list[tuple[str, Change]] = []
    reconciles: list[tuple[str, Change]] = []
    for message in messages:
        try:
            change = parse_change(message.body, ports.settings)
        except InvalidMessage as error:
            logger.error(
                "unusable message", extra={"message_id": message.message_id, "error": str(error)}
            )
            metrics.add_metric(name="InvalidMessages", unit=MetricUnit.Count, value=1)
            outcome.failures[message.message_id] = error
            continue
        _log_change(change)
        if change.type == "RESYNC":
            resyncs.append((message.message_id, change))
        elif change.type == "RECONCILE":
            reconciles.append((message.message_id, change))
        else:
            changes[change.table].append((message.message_id, change))
    for table, table_changes in changes.items():
        work = partial(apply_changes, table, [change for _, change in table_changes], ports)
        _record_failures(outcome, table, table_changes, work)
    for message_id, change in resyncs:
        _record_failures(
            outcome,
            change.table,
            [(message_id, change)],
            partial(resync, change, ports, remaining_ms),
        )
    # Last: the changes of this batch have landed, so they are not taken for lost.
    for message_id, change in reconciles:
        _record_failures(
            outcome,
            change.table,
            [(message_id, change)],
            partial(reconcile, change, ports, remaining_ms),
        )
    _retry_soon(messages, outcome, ports.queue)
    return outcome


def _retry_soon(messages: list[QueuedMessage], outcome: BatchOutcome, queue: ConsumerQueue) -> None:
    """Failed records that a few seconds cure come back after a short jittered delay. Done
    last, just before the handler reports them failed: a record made visible while its batch
    still ran could be taken by another consumer meanwhile. A record whose visibility could
    not be changed is still reported failed: it comes back after the queue's timeout."""
    delays: dict[str, int] = {}
    for message in messages:
        error = outcome.failures.get(message.message_id)
        if error is None or not message.receipt_handle:
            continue
        delay = retry_delay_s(error, message.receive_count)
        if delay is not None:
            delays[message.receipt_handle] = delay
            outcome.retry_soon[message.message_id] = delay
    if not delays:
        return
    unchanged = set(queue.change_visibility(delays))
    for message in messages:
        if message.receipt_handle in unchanged:
            outcome.retry_soon.pop(message.message_id, None)
    metrics.add_metric(
        name="RecordsRetriedSoon", unit=MetricUnit.Count, value=len(outcome.retry_soon)
    )


def _record_failures(
    outcome: BatchOutcome,
    table: str,
    changes: list[tuple[str, Change]],
    work: Callable[[], dict[str, Exception]],
) -> None:
    try:
        failed_keys = work()
    except Exception as error:  # reported per record, never swallowed
        logger.exception("table sync failed; its changes will be retried", extra={"table": table})
        metrics.add_metric(name="TableSyncFailures", unit=MetricUnit.Count, value=1)
        for message_id, _ in changes:
            outcome.failures[message_id] = error
        return
    for message_id, change in changes:
        for key in change.keys:
            if key in failed_keys:
                outcome.failures[message_id] = failed_keys[key]
                break


def parse_change(body: str, settings: ConsumerSettings) -> Change:
    try:
        change = Change.from_message(body)
    except ValidationError as error:
        # Without the input: pydantic's errors carry the offending value, which for a message
        # too deep to parse is the whole message, row bodies included. Logs never hold rows.
        problems = error.errors(include_url=False, include_input=False, include_context=False)
        raise InvalidMessage(f"not a version-1 change message: {problems[:3]}") from None
    every_table = change.type in TABLE_MESSAGES and change.table == EVERY_TABLE
    known_table = every_table or change.table in settings.cached_tables
    if not known_table or change.schema_name != settings.schema_name:
        raise InvalidMessage(f"{change.schema_name}.{change.table} is not a cached table")
    return change


def _log_change(change: Change) -> None:
    logger.info(
        "applying change",
        extra={
            "correlation_id": change.correlation_id,
            "change_type": change.type,
            "table": change.table,
            "key": change.key,
            "old_key": change.old_key,
        },
    )
