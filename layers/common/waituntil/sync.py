"""The consumer's work for one SQS batch, written against ports (no adapter is imported).

Two flows converge the cache with Supabase:

- **Changes** (INSERT/UPDATE/DELETE): read just the touched keys from Supabase, write their row
  items conditionally, then patch the list from the states that won (``publish_rows``).
  Cost follows the change: nothing here reads or writes in proportion to the table.
- **Full sync** (RESYNC; and the first fill, started by the first change of an uncached table):
  page through the table by key, write what differs, publish page by page; then walk the list
  and tombstone rows Supabase no longer has. Memory is one page; a checkpoint after each page
  lets a retry resume, and when the invocation runs short of time the sync sends itself a
  continuation message instead of timing out.

Records fail per table or per row (a row too large, a dependency down), never silently.
"""

from __future__ import annotations

import random
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from waituntil.cache_layout import row_body
from waituntil.cache_model import (
    CacheStorePort,
    FreshRow,
    ListEntry,
    ListHead,
    ListOrder,
    PublishResult,
    RowState,
    RowWrites,
    SyncCheckpoint,
    TableSource,
)
from waituntil.contracts import EVERY_TABLE, Change, Row, SyncProgress
from waituntil.errors import InvalidMessage, ListContended, ListNodeMissing, RowTooLarge
from waituntil.list_patch import ListSizes, locate, plan_patch
from waituntil.observability import logger, metrics
from waituntil.settings import ConsumerSettings

# A publish that keeps losing the race to other consumers gives up and lets SQS retry.
PUBLISH_ATTEMPTS = 12
# Keys checked against Supabase per request in the deletes phase of a full sync.
DELETE_CHECK_KEYS = 500


class ChangeQueue(Protocol):
    def publish(self, body: str) -> str: ...


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
    store: CacheStorePort
    queue: ChangeQueue
    clock_ns: Callable[[], int] = time.time_ns


def sync_batch(
    messages: Iterable[QueuedMessage], ports: Ports, remaining_ms: Callable[[], int]
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
        work = partial(sync_changes, table, [change for _, change in table_changes], ports)
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
        if change.key is not None and str(change.key) in failed_keys:
            outcome.failures[message_id] = failed_keys[str(change.key)]


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


def _log_change(change: Change) -> None:
    logger.info(
        "applying change",
        extra={
            "correlation_id": change.correlation_id,
            "change_type": change.type,
            "table": change.table,
            "key": change.key,
        },
    )


# ----- changes: read the touched keys, write them, patch the list ------------------------------


def sync_changes(table: str, changes: Sequence[Change], ports: Ports) -> dict[str, Exception]:
    """Converge the touched keys of one table; returns the keys that failed on their own."""
    order = list_order(ports.settings)
    keys = list(dict.fromkeys(str(change.key) for change in changes if change.key is not None))
    read_at_ns = ports.clock_ns()
    started = time.perf_counter()
    rows = ports.source.read_rows(table, keys)
    read_ms = (time.perf_counter() - started) * 1000
    fresh = fresh_rows(keys, rows, order)
    writes = ports.store.write_rows(table, fresh, read_at_ns=read_at_ns, order=order)
    failed = _row_failures(writes)
    done = [key for key in keys if key not in failed]
    published = publish_rows(table, done, ports)
    if not published.complete:
        ensure_fill(table, ports)
    _report(table, len(changes), len(rows), read_ms, writes, published)
    return failed


def fresh_rows(keys: Sequence[str], rows: Sequence[Row], order: ListOrder) -> list[FreshRow]:
    """Each key as Supabase has it now: its row, or gone (deleted, or hidden from us)."""
    by_key = {str(row[order.primary_key]): row for row in rows}
    fresh: list[FreshRow] = []
    for key in keys:
        row = by_key.get(key)
        if row is None:
            fresh.append(FreshRow(key=key, body=None, position=None))
        else:
            fresh.append(FreshRow(key=key, body=row_body(row), position=order.position(row)))
    return fresh


def publish_rows(
    table: str, keys: Sequence[str], ports: Ports, *, complete: bool | None = None
) -> PublishResult:
    settings = ports.settings
    return publish_list(
        ports.store,
        table,
        keys,
        order=list_order(settings),
        sizes=ListSizes(chunk_bytes=settings.chunk_bytes, index_refs=settings.index_refs),
        clock_ns=ports.clock_ns,
        complete=complete,
    )


def publish_list(
    store: CacheStorePort,
    table: str,
    keys: Sequence[str],
    *,
    order: ListOrder,
    sizes: ListSizes,
    clock_ns: Callable[[], int] = time.time_ns,
    complete: bool | None = None,
) -> PublishResult:
    """Make the list hold the winning state of each key, optimistically.

    Read the head, then the row states (so they are at least as new as anything the head
    holds), plan the patch, write its nodes, flip the head if it is still the one read. If
    another consumer flipped first, discard the nodes and start over from the new head.
    """
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        base = store.get_head(table)
        states = store.get_rows(table, keys)
        if not states and base is not None and complete is None:
            return PublishResult(outcome="unchanged", attempts=attempt, complete=base.complete)
        try:
            plan = plan_patch(
                store,
                table,
                base,
                states,
                order,
                sizes,
                now_ns=clock_ns(),
                nonce=secrets.token_hex(6),
                complete=complete if complete is not None else (None if base else False),
            )
        except ListNodeMissing:
            continue  # the head moved on and its nodes expired meanwhile: re-read it
        if plan.head is None:
            _prune(store, table, states, plan.listed_read_at)
            return PublishResult(
                outcome="unchanged",
                attempts=attempt,
                stale_entries_kept=plan.stale_entries_kept,
                complete=base.complete if base is not None else True,
            )
        store.write_nodes(table, plan.chunks, plan.pages)
        if not store.flip_head(plan.head, base):
            store.discard([chunk.key for chunk in plan.chunks], [page.key for page in plan.pages])
            metrics.add_metric(name="ListPublishRetries", unit=MetricUnit.Count, value=1)
            time.sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311 - jitter, not crypto
            continue
        store.retire(table, plan.retired_chunks, plan.retired_pages, base.version if base else None)
        _prune(store, table, states, plan.listed_read_at)
        return PublishResult(
            outcome="created" if base is None else "published",
            version=plan.head.version,
            chunks_written=len(plan.chunks),
            index_pages_written=len(plan.pages),
            attempts=attempt,
            stale_entries_kept=plan.stale_entries_kept,
            complete=plan.head.complete,
        )
    raise ListContended(f"the list of {table} kept moving; {PUBLISH_ATTEMPTS} attempts lost")


def _prune(
    store: CacheStorePort, table: str, states: dict[str, RowState], listed: dict[str, int]
) -> None:
    """Drop position tags of states older than what the list now holds: no version published
    from now on can hold those states (I4), so nothing will look for them there."""
    stale: dict[str, frozenset[str]] = {}
    for key, state in states.items():
        floor = listed.get(key)
        if floor is None or len(state.positions) < 2:
            continue
        old = frozenset(tag for tag in state.positions if int(tag.split("|", 1)[0]) < floor)
        if old and len(old) < len(state.positions):
            stale[key] = old
    if stale:
        store.prune_positions(table, stale)


def _row_failures(writes: RowWrites) -> dict[str, Exception]:
    failures: dict[str, Exception] = {}
    for key, reason in writes.failures.items():
        failures[key] = RowTooLarge(reason) if "too large" in reason else RuntimeError(reason)
    return failures


# ----- full sync -------------------------------------------------------------------------------


def ensure_fill(table: str, ports: Ports) -> None:
    """The list is still filling: make sure a fill is under way.

    The change that created the list starts the fill; but it may have died between the two,
    so any change that finds the list filling and no sync checkpoint starts one. The message
    goes first and the checkpoint after: a death between them costs a duplicate fill (which
    converges all the same), never a list that stays incomplete.
    """
    if ports.store.get_checkpoint(table) is not None:
        return
    progress = SyncProgress(sync_id=secrets.token_hex(8))
    ports.queue.publish(_resync_message(table, progress, ports))
    now = ports.clock_ns()
    ports.store.put_checkpoint(
        SyncCheckpoint(table=table, sync_id=progress.sync_id, phase="rows", started_at_ns=now),
        table,
    )
    logger.info("first fill started", extra={"table": table, "sync_id": progress.sync_id})


def resync(change: Change, ports: Ports, remaining_ms: Callable[[], int]) -> dict[str, Exception]:
    if change.table == EVERY_TABLE:
        # One message per table: each gets its own time budget and retries.
        for table in ports.settings.cached_tables:
            progress = SyncProgress(sync_id=secrets.token_hex(8))
            ports.queue.publish(_resync_message(table, progress, ports))
        return {}
    progress = change.sync or SyncProgress(sync_id=secrets.token_hex(8))
    full_sync(change.table, progress, ports, remaining_ms)
    return {}


def full_sync(
    table: str, progress: SyncProgress, ports: Ports, remaining_ms: Callable[[], int]
) -> SyncProgress | None:
    """Run a full sync from ``progress`` until done (None) or short of time (the progress a
    continuation message carries on). Resumes from the stored checkpoint of the same sync."""
    settings, store = ports.settings, ports.store
    order = list_order(settings)
    checkpoint = store.get_checkpoint(table)
    if checkpoint is not None and checkpoint.sync_id == progress.sync_id:
        progress = progress.model_copy(
            update={"phase": checkpoint.phase, "after": checkpoint.after}
        )
    started_ns = ports.clock_ns()
    slowest_ms = 0.0
    pages = 0
    while True:
        if remaining_ms() < settings.sync_reserve_ms + 2 * slowest_ms:
            ports.queue.publish(_resync_message(table, progress, ports))
            metrics.add_metric(name="SyncContinuations", unit=MetricUnit.Count, value=1)
            logger.info("full sync continues in a new message", extra={"table": table})
            return progress
        began = time.perf_counter()
        if progress.phase == "rows":
            after, done = _sync_rows_page(table, progress.after, order, ports)
            next_phase = "deletes" if done else "rows"
            progress = progress.model_copy(
                update={"phase": next_phase, "after": None if done else after}
            )
        else:
            after, done = _sync_deletes_step(table, progress.after, order, ports)
            if done:
                # A list created by this sync (or by the change that started the first fill)
                # is published as complete only now (I6).
                publish_rows(table, [], ports, complete=True)
                store.put_checkpoint(None, table)
                metrics.add_metric(name="FullSyncs", unit=MetricUnit.Count, value=1)
                logger.info(
                    "full sync done",
                    extra={
                        "table": table,
                        "pages": pages,
                        "ms": (ports.clock_ns() - started_ns) // 1_000_000,
                    },
                )
                return None
            progress = progress.model_copy(update={"after": after})
        pages += 1
        slowest_ms = max(slowest_ms, (time.perf_counter() - began) * 1000)
        store.put_checkpoint(
            SyncCheckpoint(
                table=table,
                sync_id=progress.sync_id,
                phase=progress.phase,
                after=progress.after,
                started_at_ns=started_ns,
                pages_done=pages,
            ),
            table,
        )


def _sync_rows_page(table: str, after: Any, order: ListOrder, ports: Ports) -> tuple[Any, bool]:
    """One page of rows by key: write what differs from the items, then patch the list."""
    settings, store = ports.settings, ports.store
    read_at_ns = ports.clock_ns()
    rows = ports.source.read_page(table, after, settings.page_size)
    metrics.add_metric(name="RowsRead", unit=MetricUnit.Count, value=len(rows))
    if not rows:
        return after, True
    keys = [str(row[order.primary_key]) for row in rows]
    fresh = fresh_rows(keys, rows, order)
    cached = store.get_rows(table, keys)
    differing = [
        row
        for row in fresh
        if (state := cached.get(row.key)) is None
        or state.body is None
        or row.body is None
        or state.body.etag != row.body.etag
        or state.position != row.position
    ]
    writes = store.write_rows(table, differing, read_at_ns=read_at_ns, order=order)
    if writes.failures:
        logger.error(
            "rows failed in a full sync",
            extra={"table": table, "keys": sorted(writes.failures)[:20]},
        )
        metrics.add_metric(name="RowFailures", unit=MetricUnit.Count, value=len(writes.failures))
    # Every key of the page goes through the patch, not just the rewritten ones: the list may
    # lack a row whose item is current (a crash between the two writes).
    publish_rows(table, [key for key in keys if key not in writes.failures], ports)
    last = rows[-1][order.primary_key]
    return last, len(rows) < settings.page_size


def _sync_deletes_step(table: str, after: Any, order: ListOrder, ports: Ports) -> tuple[Any, bool]:
    """Walk the list from ``after``: tombstone the rows Supabase no longer has."""
    store = ports.store
    head = store.get_head(table)
    if head is None:
        return after, True
    entries = list(_list_entries_after(store, head, after, order, DELETE_CHECK_KEYS))
    if not entries:
        return after, True
    keys = [entry.key for entry in entries]
    existing = ports.source.existing_keys(table, keys)
    gone = [key for key in keys if key not in existing]
    if gone:
        read_at_ns = ports.clock_ns()
        fresh = [FreshRow(key=key, body=None, position=None) for key in gone]
        store.write_rows(table, fresh, read_at_ns=read_at_ns, order=order)
        publish_rows(table, gone, ports)
        metrics.add_metric(name="RowsHealedAsDeleted", unit=MetricUnit.Count, value=len(gone))
    return list(entries[-1].position), len(entries) < DELETE_CHECK_KEYS


def _list_entries_after(
    store: CacheStorePort, head: ListHead, after: Any, order: ListOrder, most: int
) -> Iterable[ListEntry]:
    """Up to ``most`` list entries past position ``after``, from the chunk that holds it on."""
    floor = order.sort_key(tuple(after)) if after is not None else None
    first_page = 0
    if after is not None:
        first_page = locate([ref.first for ref in head.pages], tuple(after), order)
    given = 0
    for page_number in range(first_page, len(head.pages)):
        page = store.get_index_page(head.pages[page_number].key)
        if page is None:
            raise ListNodeMissing(f"index page {head.pages[page_number].key} expired in a sync")
        start = 0
        if page_number == first_page and after is not None:
            start = locate([ref.first for ref in page.chunks], tuple(after), order)
        for ref in page.chunks[start:]:
            chunk = store.get_chunk(ref.key)
            if chunk is None:
                raise ListNodeMissing(f"chunk {ref.key} expired during a sync")
            for entry in chunk.entries:
                if floor is not None and order.sort_key(entry.position) <= floor:
                    continue
                yield entry
                given += 1
                if given >= most:
                    return


def _resync_message(table: str, progress: SyncProgress, ports: Ports) -> str:
    return Change(
        type="RESYNC",
        schema_name=ports.settings.schema_name,
        table=table,
        key=None,
        received_at=datetime.fromtimestamp(ports.clock_ns() / 1e9, tz=UTC),
        correlation_id=f"sync-{progress.sync_id}",
        sync=progress,
    ).to_message()


def list_order(settings: ConsumerSettings) -> ListOrder:
    return ListOrder.parse(settings.primary_key, settings.list_order)


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
