"""The consumer's work for one SQS batch: coalesce the changes per table, read each table once,
converge the cache. Records fail per table (Supabase or DynamoDB down) or alone (bad message).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from waituntil.adapters.cache_store import CacheStore, ListManifest
from waituntil.contracts import EVERY_TABLE, Change, Row
from waituntil.errors import InvalidMessage
from waituntil.observability import logger, metrics
from waituntil.settings import ConsumerSettings
from waituntil.snapshot import Snapshot, build_snapshot, plan_sync, row_etags


class TableSource(Protocol):
    def read_table(self, table: str, primary_key: str) -> list[Row]: ...


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


@dataclass(frozen=True)
class Ports:
    settings: ConsumerSettings
    source: TableSource
    store: CacheStore
    clock_ns: Callable[[], int] = time.time_ns


def sync_batch(messages: Iterable[QueuedMessage], ports: Ports) -> BatchOutcome:
    outcome = BatchOutcome()
    by_table: dict[str, list[tuple[str, Change]]] = defaultdict(list)
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
        for table in _tables_of(change, ports.settings):
            by_table[table].append((message.message_id, change))
    for table, changes in by_table.items():
        try:
            sync_table(table, [change for _, change in changes], ports)
        except Exception as error:  # reported per record below, never swallowed
            logger.exception(
                "table sync failed; its changes will be retried", extra={"table": table}
            )
            metrics.add_metric(name="TableSyncFailures", unit=MetricUnit.Count, value=1)
            for message_id, _ in changes:
                outcome.failures[message_id] = error
    return outcome


def _tables_of(change: Change, settings: ConsumerSettings) -> tuple[str, ...]:
    if change.table == EVERY_TABLE:
        return settings.cached_tables
    return (change.table,)


def parse_change(body: str, settings: ConsumerSettings) -> Change:
    try:
        change = Change.from_message(body)
    except ValidationError as error:
        raise InvalidMessage(f"not a version-1 change message: {error.errors()[:3]}") from error
    every_table = change.type == "RESYNC" and change.table == EVERY_TABLE
    known_table = every_table or change.table in settings.cached_tables
    if not known_table or change.schema_name != settings.schema_name:
        raise InvalidMessage(f"{change.schema_name}.{change.table} is not a cached table")
    return change


def sync_table(table: str, changes: list[Change], ports: Ports) -> None:
    settings = ports.settings
    for change in changes:
        logger.info(
            "applying change",
            extra={
                "correlation_id": change.correlation_id,
                "change_type": change.type,
                "table": table,
                "key": change.key,
            },
        )
    read_at_ns = ports.clock_ns()
    started = time.perf_counter()
    rows = ports.source.read_table(table, settings.primary_key)
    read_ms = (time.perf_counter() - started) * 1000
    snapshot = build_snapshot(
        table,
        rows,
        primary_key=settings.primary_key,
        read_at_ns=read_at_ns,
        chunk_bytes=settings.chunk_bytes,
        order=settings.list_order,
    )
    current = ports.store.get_manifest(table)
    touched = [change.key for change in changes if change.key is not None]
    plan = plan_sync(touched, snapshot, baseline(current, snapshot, ports))
    row_writes = ports.store.write_rows(
        table,
        plan.puts,
        plan.deletes,
        read_at_ns=read_at_ns,
        tombstone_ttl_s=settings.tombstone_ttl_s,
    )
    list_write = ports.store.publish_list(
        snapshot, current, old_list_grace_s=settings.old_list_grace_s
    )
    metrics.add_metric(name="ChangesProcessed", unit=MetricUnit.Count, value=len(changes))
    metrics.add_metric(name="RowsRead", unit=MetricUnit.Count, value=snapshot.row_count)
    metrics.add_metric(name="SupabaseReadTime", unit=MetricUnit.Milliseconds, value=read_ms)
    metrics.add_metric(name="ItemsWritten", unit=MetricUnit.Count, value=row_writes.written)
    metrics.add_metric(name="ItemsDeleted", unit=MetricUnit.Count, value=row_writes.deleted)
    metrics.add_metric(
        name="StaleWritesSkipped", unit=MetricUnit.Count, value=row_writes.skipped_stale
    )
    metrics.add_metric(name="AggregateBytes", unit=MetricUnit.Bytes, value=snapshot.list_bytes)
    metrics.add_metric(
        name="AggregateChunksWritten", unit=MetricUnit.Count, value=list_write.chunks_written
    )
    logger.info(
        "table synced",
        extra={
            "table": table,
            "changes": len(changes),
            "rows_read": snapshot.row_count,
            "supabase_read_ms": round(read_ms, 1),
            "items_written": row_writes.written,
            "items_deleted": row_writes.deleted,
            "stale_skipped": row_writes.skipped_stale,
            "list": list_write.outcome,
            "list_bytes": snapshot.list_bytes,
        },
    )


def baseline(
    current: ListManifest | None, snapshot: Snapshot, ports: Ports
) -> dict[str, str] | None:
    """What the cache held before, when rows beyond the touched ones may need syncing.

    None: the list is unchanged, so only touched keys can differ. ``{}``: nothing usable is
    cached (first run, or the previous version was retired meanwhile): sync every row.
    """
    if current is not None and current.etag == snapshot.etag:
        return None
    previous = ports.store.read_list(current) if current is not None else None
    if previous is None:
        return {}
    return row_etags(previous, ports.settings.primary_key)
