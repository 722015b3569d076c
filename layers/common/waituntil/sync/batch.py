"""The consumer's work for one SQS batch: parse each message, then converge the cache per table.

Row changes (INSERT/UPDATE/DELETE) are grouped by table and applied by ``row_changes``; each
RESYNC runs on its own (``full_sync``). Records fail per table or per row (a row too large, a
dependency down), never silently: ``BatchOutcome`` says which, and why.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from waituntil.core.contracts import EVERY_TABLE, Change
from waituntil.core.errors import InvalidMessage
from waituntil.core.observability import logger, metrics
from waituntil.core.settings import ConsumerSettings
from waituntil.sync.full_sync import resync
from waituntil.sync.ports import ConsumerPorts
from waituntil.sync.row_changes import apply_changes


@dataclass(frozen=True)
class QueuedMessage:
    message_id: str
    body: str


@dataclass
class BatchOutcome:
    """Which messages failed and why; the batch processor reports exactly these."""

    failures: dict[str, Exception] = field(default_factory=dict)

    def raise_if_failed(self, message_id: str) -> None:
        error = self.failures.get(message_id)
        if error is not None:
            raise error


def process_batch(
    messages: Iterable[QueuedMessage], ports: ConsumerPorts, remaining_ms: Callable[[], int]
) -> BatchOutcome:
    outcome = BatchOutcome()
    changes: dict[str, list[tuple[str, Change]]] = defaultdict(list)
    resyncs: list[tuple[str, Change]] = []
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
    return outcome


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
    every_table = change.type == "RESYNC" and change.table == EVERY_TABLE
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
