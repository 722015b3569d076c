"""Row changes (INSERT/UPDATE/DELETE) of one table: read just the touched keys from Supabase,
write their row items conditionally, then patch the list from the states that won.

Cost follows the change: nothing here reads or writes in proportion to the table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from aws_lambda_powertools.metrics import MetricUnit

from waituntil.cache.layout import fresh_rows
from waituntil.cache.model import PublishResult, RowWrites
from waituntil.core.contracts import Change
from waituntil.core.observability import logger, metrics
from waituntil.sync.fill_journal import journal_change
from waituntil.sync.full_sync import ensure_fill
from waituntil.sync.list_prefetch import ReadAhead, hinted_positions
from waituntil.sync.list_publish import ReadBefore, publish_rows
from waituntil.sync.pipeline_metrics import record_synced
from waituntil.sync.ports import ConsumerPorts


def apply_changes(
    table: str, changes: Sequence[Change], ports: ConsumerPorts
) -> dict[str, Exception]:
    """Converge the touched keys of one table; returns the keys that failed on their own."""
    order = ports.list_order(table)
    # An UPDATE that changed the row's key touches both keys: the old one reads as absent,
    # gets a tombstone and is unlisted.
    keys = list(dict.fromkeys(key for change in changes for key in change.keys))
    # The heads, read while Supabase answers, and before the row writes: each write answers
    # its row's state after it landed, a read made after the heads', so the publish reads
    # neither again (``ReadBefore``).
    heads = ports.store.start_get_heads(table)
    # What the publish needs before its switch, begun beside the Supabase read and the row
    # writes rather than after them: the heads' retirement, the nodes (``list_prefetch``).
    ahead = ReadAhead(ports.store, order, ports.policy(table), heads)
    ahead.read(hinted_positions(changes, order))
    read_at_ns = ports.clock_ns()
    started = time.perf_counter()
    rows = ports.source.read_rows(table, keys)
    read_ms = (time.perf_counter() - started) * 1000
    fresh = fresh_rows(keys, rows, order)
    served, rebuilt = heads()
    ahead.read([row.position for row in fresh if row.position is not None])
    # While the list fills, the keys go to the fill's journal: after the Supabase read, before
    # the row writes (``fill_journal`` says why that order is safe against its puts).
    deferred = journal_change(table, fresh, read_at_ns, served, ports)
    writes = ports.store.write_rows(
        table, fresh, read_at_ns=read_at_ns, order=order, policy=ports.policy(table)
    )
    failed = _row_failures(writes)
    done = [key for key in keys if key not in failed]
    if deferred:
        # A fill puts rows unconditionally now: its join publishes these keys. What was begun
        # ahead still ends before the invocation does (Lambda freezes whatever runs on).
        ahead.nodes()
        ahead.settled()
        published = PublishResult(outcome="deferred", complete=False)
    else:
        known = ReadBefore(
            served=served,
            rebuilt=rebuilt,
            states=writes.states,
            nodes=ahead.nodes(),
            settled=ahead.settled(),
        )
        published = publish_rows(table, done, ports, known=known)
    if not published.complete:
        ensure_fill(table, ports)
    _report(table, len(changes), len(rows), read_ms, writes, published)
    record_synced(changes, datetime.now(UTC), rows_fixed=0)
    return failed


def _row_failures(writes: RowWrites) -> dict[str, Exception]:
    return {key: failure.error() for key, failure in writes.failures.items()}


def _report(
    table: str,
    changes: int,
    rows_read: int,
    read_ms: float,
    writes: RowWrites,
    published: PublishResult,
) -> None:
    metrics.add_metric(name="ChangesProcessed", unit=MetricUnit.Count, value=changes)
    metrics.add_metric(name="RowsRead", unit=MetricUnit.Count, value=rows_read)
    metrics.add_metric(name="SupabaseReadTime", unit=MetricUnit.Milliseconds, value=read_ms)
    metrics.add_metric(name="ItemsWritten", unit=MetricUnit.Count, value=writes.written)
    metrics.add_metric(name="ItemsDeleted", unit=MetricUnit.Count, value=writes.deleted)
    metrics.add_metric(name="StaleWritesSkipped", unit=MetricUnit.Count, value=writes.skipped_stale)
    metrics.add_metric(
        name="RowsStoredOutOfLine", unit=MetricUnit.Count, value=writes.stored_out_of_line
    )
    if writes.failures:
        metrics.add_metric(name="RowFailures", unit=MetricUnit.Count, value=len(writes.failures))
    metrics.add_metric(
        name="AggregateChunksWritten", unit=MetricUnit.Count, value=published.chunks_written
    )
    logger.info(
        "table synced",
        extra={
            "table": table,
            "changes": changes,
            "rows_read": rows_read,
            "supabase_read_ms": round(read_ms, 1),
            "items_written": writes.written,
            "items_deleted": writes.deleted,
            "stale_skipped": writes.skipped_stale,
            "list": published.outcome,
            "chunks_written": published.chunks_written,
            "publish_attempts": published.attempts,
        },
    )
