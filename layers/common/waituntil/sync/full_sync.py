"""The full sync of one table (a RESYNC; and the first fill, started by the first change of an
uncached table): page through the table by key, write what differs, publish page by page; then
walk the list and tombstone rows Supabase no longer has.

Memory is one page; a checkpoint after each page lets a retry resume, and when the invocation
runs short of time the sync sends itself a continuation message instead of timing out.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from waituntil.cache.layout import LEASE_SYNC, fresh_rows
from waituntil.cache.list_patch import locate
from waituntil.cache.model import (
    CacheStorePort,
    FillJournal,
    FreshRow,
    IndexPage,
    ListEntry,
    ListHead,
    RowFailureReason,
    RowState,
    RowWrites,
    SyncCheckpoint,
)
from waituntil.core.contracts import EVERY_TABLE, Change, SyncProgress
from waituntil.core.errors import (
    FillUnderWay,
    ListNodeMissing,
    RebuildSuperseded,
    RowWritesFailed,
)
from waituntil.core.list_order import ListOrder, Position
from waituntil.core.observability import logger, metrics
from waituntil.sync.fill_journal import JOIN_KEYS, open_fill, resumed_journal
from waituntil.sync.list_publish import ReadBefore, current_head, publish_rows
from waituntil.sync.list_retire import sweep_orphans
from waituntil.sync.pipeline_metrics import record_synced
from waituntil.sync.ports import ConsumerPorts
from waituntil.sync.rebuild import after_superseded, begin_rebuild, promote, sync_message

# Keys checked against Supabase per request in the deletes phase of a full sync.
DELETE_CHECK_KEYS = 500
# How long a rebuild that found a first fill putting rows waits before it tries again.
FILL_WAIT_S = 60


def ensure_fill(table: str, ports: ConsumerPorts) -> None:
    """The list is still filling: make sure a fill is under way.

    The change that created the list starts the fill; but it may have died between the two,
    so any change that finds the list filling and no sync checkpoint starts one. The message
    goes first and the checkpoint after: a death between them costs a duplicate fill (which
    converges all the same), never a list that stays incomplete.
    """
    if ports.store.get_checkpoint(table) is not None:
        return
    progress = _queue_sync(table, ports)
    if progress is not None:
        logger.info("first fill started", extra={"table": table, "sync_id": progress.sync_id})


def request_full_sync(table: str, ports: ConsumerPorts) -> bool:
    """Queue a full sync of ``table`` unless one runs; whether one was queued."""
    progress = _queue_sync(table, ports)
    if progress is not None:
        logger.info("full sync requested", extra={"table": table, "sync_id": progress.sync_id})
    return progress is not None


def _queue_sync(table: str, ports: ConsumerPorts) -> SyncProgress | None:
    """Queue a full sync of ``table``, then checkpoint it as begun: a first change that comes
    before it runs finds the checkpoint and queues no second fill. None, and nothing queued,
    while a full sync of the table holds its lease (H5): running, it heals all this one would.

    The sync takes the lease itself when it runs (``resync``), not here: a death between
    taking a lease and queueing would leave no sync running and the table locked until the
    lease expired. Two syncs queued at once both run into the lease, and the second exits.
    """
    if ports.store.lease_holder(table, LEASE_SYNC) is not None:
        logger.info("a full sync of the table is already running", extra={"table": table})
        return None
    progress = SyncProgress(sync_id=secrets.token_hex(8))
    ports.queue.publish(sync_message(table, progress, ports))
    ports.store.put_checkpoint(
        SyncCheckpoint(table=table, sync_id=progress.sync_id, phase="rows"), table
    )
    return progress


def resync(
    change: Change, ports: ConsumerPorts, remaining_ms: Callable[[], int]
) -> dict[str, Exception]:
    if change.table == EVERY_TABLE:
        # One message per table: each gets its own time budget and retries.
        for table in ports.settings.cached_tables:
            _queue_sync(table, ports)
        return {}
    # A RESYNC without progress (the schedule's, make backfill's) names its sync after the
    # message itself: when it is redelivered after a crash, it finds its own lease (H5).
    progress = change.sync or SyncProgress(sync_id=_message_sync_id(change))
    if not _hold_lease(change.table, progress, ports):
        # Another sync holds the table (H5): this one (a duplicate, or a dead sync's late
        # redelivery whose lease expired and was taken) exits without doing anything.
        logger.info("another full sync holds the table; this one exits", extra=_ids(change))
        return {}
    fixed = [0]
    try:
        full_sync(change.table, progress, ports, remaining_ms, fixed)
    except RebuildSuperseded:
        # A newer rebuild replaced this one's version (that one finishes the job), or the
        # policy it was rebuilding for is no longer in force.
        logger.info("rebuild superseded", extra={"table": change.table})
        _after_superseded(change.table, progress, ports)
        return {}
    except FillUnderWay:
        # A first fill puts rows unconditionally (``fill_journal``): the rebuild begins
        # after its join. Sent again with a delay, not failed: a long fill must not exhaust
        # the message's receives.
        logger.info("rebuild waits for the first fill", extra={"table": change.table})
        ports.queue.publish_later(sync_message(change.table, progress, ports), FILL_WAIT_S)
        return {}
    record_synced([change], datetime.now(UTC), rows_fixed=fixed[0])
    return {}


def _hold_lease(table: str, progress: SyncProgress, ports: ConsumerPorts) -> bool:
    """Take or renew the table's sync lease (H5: one full sync of the served list at a time).

    A rebuild takes none: it builds its version apart, beside whatever sync runs, and two
    rebuilds settle between themselves which one switches (``RebuildSuperseded``). A rebuild
    turned away by a lease would be acknowledged and lost, leaving a list built with another
    policy unserved until someone noticed.
    """
    if progress.rebuild:
        return True
    return ports.store.acquire_lease(
        table, LEASE_SYNC, progress.sync_id, ports.settings.sync_lease_s
    )


def _after_superseded(table: str, progress: SyncProgress, ports: ConsumerPorts) -> None:
    """A rebuild that stops leaves no checkpoint behind: a first fill waiting on it (its
    checkpoint stood for "a sync is under way") is started now instead."""
    checkpoint = ports.store.get_checkpoint(table)
    if checkpoint is not None and checkpoint.sync_id == progress.sync_id:
        ports.store.put_checkpoint(None, table)
    after_superseded(table, ports)
    served = ports.store.get_head(table)
    if served is not None and not served.complete and served.policy == ports.policy(table):
        ensure_fill(table, ports)


def full_sync(
    table: str,
    progress: SyncProgress,
    ports: ConsumerPorts,
    remaining_ms: Callable[[], int],
    fixed: list[int] | None = None,
) -> SyncProgress | None:
    """Run a full sync from ``progress`` until done (None) or short of time (the progress a
    continuation message carries on). Resumes from the stored checkpoint of the same sync."""
    settings, store = ports.settings, ports.store
    order = ports.list_order(table)
    checkpoint = store.get_checkpoint(table)
    resuming = checkpoint is not None and checkpoint.sync_id == progress.sync_id
    mode = ""
    if resuming and checkpoint is not None:
        progress = progress.model_copy(
            update={"phase": checkpoint.phase, "after": checkpoint.after}
        )
        mode = checkpoint.mode
    if progress.rebuild:
        # A rebuild's pages patch the version it builds apart (``sync/rebuild``).
        if not resuming and progress.phase == "rows" and progress.after is None:
            begin_rebuild(table, progress.sync_id, ports)
        ports = replace(ports, rebuild=progress.sync_id)
    # A first fill puts its rows unconditionally under the fill journal (``fill_journal``).
    journal: FillJournal | None = None
    careful = False  # the next rows page is written conditionally (a resumed batched fill)
    if mode == "batched":
        journal = resumed_journal(table, progress.sync_id, ports)
        careful = True  # the invocation that died may have put it already
        if journal is None:
            mode, progress = "recheck", progress.model_copy(update={"phase": "rows", "after": None})
    elif mode == "" and progress.phase == "rows" and progress.after is None:
        journal = open_fill(table, progress, ports)
        if journal is not None:
            mode = "batched"
            # Saved before the first put: a resume then knows puts may have begun.
            store.put_checkpoint(_checkpoint(table, progress, mode), table)
    started_ns = ports.clock_ns()
    slowest_ms = 0.0
    pages = 0
    while True:
        if remaining_ms() < settings.sync_reserve_ms + 2 * slowest_ms:
            ports.queue.publish(sync_message(table, progress, ports))
            metrics.add_metric(name="SyncContinuations", unit=MetricUnit.Count, value=1)
            logger.info("full sync continues in a new message", extra={"table": table})
            return progress
        began = time.perf_counter()
        if progress.phase == "rows":
            if mode == "batched" and journal is not None and not careful:
                after, done, written = _put_rows_page(table, progress.after, order, ports, journal)
            else:
                after, done, written = _sync_rows_page(table, progress.after, order, ports)
            careful = False
            if fixed is not None:
                fixed[0] += written
            next_phase = ("join" if mode == "batched" else "deletes") if done else "rows"
            progress = progress.model_copy(
                update={"phase": next_phase, "after": None if done else after}
            )
        elif progress.phase == "join":
            after, done, recheck = _join_step(table, progress, ports)
            if recheck:
                # The journal overflowed, or is not this fill's any more: every row is
                # checked again, conditionally.
                logger.warning("fill journal not usable: rows re-checked", extra={"table": table})
                mode, after, done = "recheck", None, False
                progress = progress.model_copy(update={"phase": "rows"})
            progress = progress.model_copy(
                update={"phase": "deletes" if done else progress.phase, "after": after}
            )
        else:
            if isinstance(progress.after, dict):
                after, done, gone = _replaced_deletes_step(table, progress.after, ports)
            else:
                after, done, gone = _sync_deletes_step(table, progress.after, order, ports)
                if done and ports.rebuild is not None:
                    # A rebuild then walks the version it replaces too: a row only that one
                    # lists (its delete was lost) is in no list the rebuild builds.
                    after = _replaced_start(table, ports)
                    done = after is None
            if fixed is not None:
                fixed[0] += gone
            if done:
                _finish(table, ports)
                store.put_checkpoint(None, table)
                if not progress.rebuild:
                    store.release_lease(table, LEASE_SYNC, progress.sync_id)
                metrics.add_metric(name="FullSyncs", unit=MetricUnit.Count, value=1)
                logger.info(
                    "full sync done",
                    extra={
                        "table": table,
                        "pages": pages,
                        "mode": mode or "conditional",
                        "ms": (ports.clock_ns() - started_ns) // 1_000_000,
                    },
                )
                return None
            progress = progress.model_copy(update={"after": after})
        pages += 1
        slowest_ms = max(slowest_ms, (time.perf_counter() - began) * 1000)
        if not _hold_lease(table, progress, ports):
            logger.warning("the full sync lost its lease; it stops", extra={"table": table})
            return None
        store.put_checkpoint(_checkpoint(table, progress, mode), table)


def _checkpoint(table: str, progress: SyncProgress, mode: str) -> SyncCheckpoint:
    return SyncCheckpoint(
        table=table,
        sync_id=progress.sync_id,
        phase=progress.phase,
        after=progress.after,
        mode=mode,
    )


def _finish(table: str, ports: ConsumerPorts) -> None:
    """A list created by this sync (or by the change that started the first fill) is
    published as complete only now (I6); a rebuild's version is switched to whole. Then what
    killed publishes left behind is swept (``list_retire.sweep_orphans``)."""
    if ports.rebuild is not None:
        promote(table, ports.rebuild, ports)
    else:
        publish_rows(table, [], ports, complete=True)
        # Complete: no change journals any more (it reads the list complete first).
        ports.store.end_journal(table)
    sweep_orphans(ports.store, table, ports.clock_ns(), ports.settings.orphan_age_s)


def _sync_rows_page(
    table: str, after: Any, order: ListOrder, ports: ConsumerPorts
) -> tuple[Any, bool, int]:
    """One page of rows by key: write what differs from the items, then patch the list."""
    settings, store = ports.settings, ports.store
    read_at_ns = ports.clock_ns()
    rows = ports.source.read_page(table, after, settings.page_size)
    metrics.add_metric(name="RowsRead", unit=MetricUnit.Count, value=len(rows))
    if not rows:
        return after, True, 0
    keys = [str(row[order.primary_key]) for row in rows]
    fresh = fresh_rows(keys, rows, order)
    cached = store.get_rows(table, keys)
    policy = ports.policy(table)
    differing = [row for row in fresh if _differs(row, cached.get(row.key), policy)]
    writes = store.write_rows(table, differing, read_at_ns=read_at_ns, order=order, policy=policy)
    skipped = _rows_never_storable(table, writes)
    # Every key of the page goes through the patch, not just the rewritten ones: the list may
    # lack a row whose item is current (a crash between the two writes).
    publish_rows(table, [key for key in keys if key not in skipped], ports)
    last = rows[-1][order.primary_key]
    # Not done on a short page: a project whose max-rows is below the page size answers
    # short pages before the end. Only the empty page after the last row ends the phase.
    return last, False, writes.written + writes.deleted


def _put_rows_page(
    table: str, after: Any, order: ListOrder, ports: ConsumerPorts, journal: FillJournal
) -> tuple[Any, bool, int]:
    """One page of a first fill's rows, put unconditionally (``fill_journal``): no read of the
    items first, and the publish takes the rows' states from the puts."""
    store = ports.store
    read_at_ns = ports.clock_ns()
    rows = ports.source.read_page(table, after, ports.settings.page_size)
    metrics.add_metric(name="RowsRead", unit=MetricUnit.Count, value=len(rows))
    if not rows:
        return after, True, 0
    keys = [str(row[order.primary_key]) for row in rows]
    fresh = fresh_rows(keys, rows, order)
    policy = ports.policy(table)
    # The tags changes published before this fill owned the journal: a put keeps them, so a
    # publish still finds where those changes listed their rows.
    writes = store.put_rows(table, fresh, read_at_ns=read_at_ns, policy=policy, tags=journal.tags)
    skipped = _rows_never_storable(table, writes)
    # Each state is what its put left (the item a conditional write to a new item leaves):
    # the publish reads no row back. The heads are read after the puts: the list may hold a
    # newer state of a row than its put (a change's, journaled before this fill owned the
    # journal, and found through its tags), which the patch keeps (I4).
    served, rebuilt = store.get_heads(table)
    known = ReadBefore(served=served, rebuilt=rebuilt, states=writes.states)
    publish_rows(table, [key for key in keys if key not in skipped], ports, known=known)
    return rows[-1][order.primary_key], False, writes.written


def _join_step(table: str, progress: SyncProgress, ports: ConsumerPorts) -> tuple[Any, bool, bool]:
    """One step of the fill's join: close the journal (all puts have landed; idempotent),
    then read up to ``JOIN_KEYS`` journaled keys from Supabase again and converge them as a
    change does (conditional writes, then publish). (after, done, re-check every row)."""
    journal = ports.store.join_journal(table, progress.sync_id)
    if journal is None or journal.overflowed:
        return None, False, True
    after = progress.after
    keys = sorted(key for key in journal.keys if after is None or key > after)[:JOIN_KEYS]
    if not keys:
        return after, True, False
    order, policy = ports.list_order(table), ports.policy(table)
    read_at_ns = ports.clock_ns()  # before the read it stamps
    rows = ports.source.read_rows(table, keys)
    metrics.add_metric(name="RowsRead", unit=MetricUnit.Count, value=len(rows))
    # Only what differs is written (a put may have overwritten a newer row, or brought back a
    # deleted one; most journaled rows are current): a row kept in S3 is not put again.
    cached = ports.store.get_rows(table, keys)
    fresh = [
        row for row in fresh_rows(keys, rows, order) if _differs(row, cached.get(row.key), policy)
    ]
    writes = ports.store.write_rows(table, fresh, read_at_ns=read_at_ns, order=order, policy=policy)
    skipped = _rows_never_storable(table, writes)
    publish_rows(table, [key for key in keys if key not in skipped], ports)
    return keys[-1], False, False


def _differs(row: FreshRow, state: RowState | None, policy: str) -> bool:
    """Whether a row's item must be written again: it differs from what Supabase has, was
    read with another policy, or its blob may still be unclaimed."""
    return (
        state is None
        or state.body is None
        or row.body is None
        or state.body.etag != row.body.etag
        or state.position != row.position
        or state.policy != policy
        or state.blob_unclaimed
    )


def _sync_deletes_step(
    table: str, after: Any, order: ListOrder, ports: ConsumerPorts
) -> tuple[Any, bool, int]:
    """Walk the list from ``after``: tombstone the rows Supabase no longer has."""
    store = ports.store
    head = current_head(table, ports)
    if head is None:
        return after, True, 0
    if after is not None and len(after) != (1 if order.by_key else 2):
        after = None  # a position in another order (the policy changed): walk from the start
    entries = list(_list_entries_after(store, head, after, order, DELETE_CHECK_KEYS))
    if not entries:
        return after, True, 0
    # The clock before the read it stamps, as for every other write: a row re-inserted and
    # cached after this read began carries a later time than the tombstone, so it wins.
    read_at_ns = ports.clock_ns()
    existing = ports.source.existing_keys(table, [entry.key for entry in entries])
    gone = [entry for entry in entries if entry.key not in existing]
    if gone:
        # Each tombstone keeps where the list holds its row, so the publish can unlist it
        # even when the row's item had expired (TTL) or was never written.
        fresh = [
            FreshRow(key=entry.key, body=None, position=None, listed_at=_listed_at(entry))
            for entry in gone
        ]
        written = store.write_rows(
            table, fresh, read_at_ns=read_at_ns, order=order, policy=ports.policy(table)
        )
        _rows_never_storable(table, written)
        publish_rows(table, [entry.key for entry in gone], ports)
        metrics.add_metric(name="RowsHealedAsDeleted", unit=MetricUnit.Count, value=len(gone))
    return list(entries[-1].position), len(entries) < DELETE_CHECK_KEYS, len(gone)


def _listed_at(entry: ListEntry) -> tuple[int, Position]:
    return entry.read_at_ns, entry.position


def _rows_never_storable(table: str, writes: RowWrites) -> set[str]:
    """The keys of the rows no retry can store (reported, counted and skipped); raises if any
    row failed for a reason a retry may fix, so that its page is not taken as done."""
    if writes.failures:
        metrics.add_metric(name="RowFailures", unit=MetricUnit.Count, value=len(writes.failures))
    retryable = {
        key: failure
        for key, failure in writes.failures.items()
        if failure.reason is not RowFailureReason.TOO_LARGE
    }
    if retryable:
        details = [failure.detail for _, failure in sorted(retryable.items())[:5]]
        raise RowWritesFailed(f"{len(retryable)} rows of {table} were not written: {details}")
    never = set(writes.failures)
    if never:
        logger.error(
            "rows that can never be stored were skipped",
            extra={"table": table, "keys": sorted(never)[:20], "count": len(never)},
        )
        metrics.add_metric(name="RowsNotStorable", unit=MetricUnit.Count, value=len(never))
    return never


def _replaced_start(table: str, ports: ConsumerPorts) -> dict[str, Any] | None:
    """Where a rebuild's walk of the served version it replaces begins (None: there is none)."""
    served = ports.store.get_head(table)
    return None if served is None else {"version": served.version, "page": 0, "chunk": 0}


def _replaced_deletes_step(
    table: str, after: dict[str, Any], ports: ConsumerPorts
) -> tuple[Any, bool, int]:
    """A rebuild's walk of the served version it replaces: tombstone the rows that version
    lists and Supabase no longer has. That frozen version is walked by index (its order may
    be another policy's); if it expired meanwhile, the walk starts over on the served one."""
    store = ports.store
    version = store.get_version(table, after["version"])
    page_number, chunk_number = after["page"], after["chunk"]
    keys: list[str] = []
    pages: dict[int, IndexPage | None] = {}
    while version is not None and page_number < len(version.pages):
        if len(keys) >= DELETE_CHECK_KEYS:
            break
        if page_number not in pages:
            pages[page_number] = store.get_index_page(version.pages[page_number].key)
        page = pages[page_number]
        chunk = store.get_chunk(page.chunks[chunk_number].key) if page is not None else None
        if page is None or chunk is None:
            version = None  # retired and expired meanwhile
            break
        keys += [entry.key for entry in chunk.entries]
        chunk_number += 1
        if chunk_number >= len(page.chunks):
            page_number, chunk_number = page_number + 1, 0
    if version is None:
        restart = _replaced_start(table, ports)
        if restart is not None and restart["version"] == after["version"]:
            raise ListNodeMissing(f"a node of {table}'s served version is gone")
        return restart, restart is None, 0
    gone: list[str] = []
    if keys:
        read_at_ns = ports.clock_ns()  # before the read it stamps
        existing = ports.source.existing_keys(table, keys)
        gone = [key for key in dict.fromkeys(keys) if key not in existing]
    if gone:
        # No list position on these tombstones: the replaced version's order may be another
        # policy's, and that version is retired whole when the rebuild switches.
        fresh = [FreshRow(key=key, body=None, position=None) for key in gone]
        written = ports.store.write_rows(
            table,
            fresh,
            read_at_ns=read_at_ns,
            order=ports.list_order(table),
            policy=ports.policy(table),
        )
        _rows_never_storable(table, written)
        publish_rows(table, gone, ports)
        metrics.add_metric(name="RowsHealedAsDeleted", unit=MetricUnit.Count, value=len(gone))
    if page_number >= len(version.pages):
        return None, True, len(gone)
    return {**after, "page": page_number, "chunk": chunk_number}, False, len(gone)


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


def _message_sync_id(change: Change) -> str:
    seed = f"{change.correlation_id}|{change.received_at.isoformat()}"
    return hashlib.sha256(seed.encode()).hexdigest()[:16]


def _ids(change: Change) -> dict[str, Any]:
    return {"table": change.table, "sync_id": change.sync.sync_id if change.sync else None}
