"""Heal what Supabase lost: one reconcile cycle per table, on a schedule, at a cost that follows
the differences, not the table.

Supabase sends each webhook once. The scheduled rule ``ReconcileSchedule`` (every minute by
default) queues a RECONCILE for every table (``*``), which the consumer fans out to one message
per table, so each table's cycle has its own time and failures, and every heal goes through the
consumer's own write path (conditional row writes, optimistic list publishes), metrics and DLQ.

A cycle, under the table's reconcile lease (H5: a second cycle that finds it held exits):
1. no list yet, or a list still filling: make sure a fill runs (``full_sync.ensure_fill``), and
   stop: the fill heals everything, and the list stays "filling" until it has (I6);
2. the change column's scan (``heal_scan``): inserts and updates, healed at once;
3. the range comparison (``heal_ranges``): one count of the whole table; only if it differs
   from the list's, the bisection down to the keys that differ. Those keys go back on the queue
   as a RECONCILE follow-up delayed by the settle time: a webhook merely in flight lands first,
   and what still differs then is healed and counted (``RowsHealed``) as lost;
4. the state item: where the next scan starts, and when the table was last reconciled.

With nothing lost: one scan request (none without a change column) and one count, no rows.
A cycle that fails (Supabase refuses a count or a read, times out, a column is missing) fails
alone: logged with its reason, counted (``ReconcileFailures``), and the next cycle starts again.
What it wrote before failing was verified row by row; nothing is deleted on a failed read (H3).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from waituntil.cache.layout import LEASE_RECONCILE, LEASE_SYNC
from waituntil.cache.model import HealState, ListHead, PositionRange
from waituntil.core.contracts import EVERY_TABLE, HEAL_CHECK_KEYS, Change, HealCheck
from waituntil.core.errors import ColumnMissing, FingerprintUnavailable, WaitUntilError
from waituntil.core.list_order import Position
from waituntil.core.observability import logger
from waituntil.core.table_policy import DEFAULT_CHANGE_COLUMN
from waituntil.sync.full_sync import ensure_fill, request_full_sync
from waituntil.sync.heal_metrics import record_age, record_failure, record_healed
from waituntil.sync.heal_ranges import cached_fingerprint, find_differences
from waituntil.sync.heal_scan import heal_keys, scan_changes
from waituntil.sync.list_publish import publish_rows
from waituntil.sync.ports import ConsumerPorts

# How long a found change column (or its absence) is trusted before it is checked again.
COLUMN_CHECK_EVERY_NS = 24 * 3600 * 10**9


@dataclass
class CycleReport:
    """What one cycle did (logged; the benchmark and ``make heal`` read it)."""

    table: str
    outcome: str = "done"  # done | skipped | filling | failed
    reason: str = ""
    change_column: str | None = None
    scan_keys: int = 0
    rows_read: int = 0
    requests: int = 0
    rounds: int = 0  # Supabase requests one after another (a level's counts go together)
    healed: int = 0  # healed in this cycle (the scan's)
    to_check: int = 0  # keys found differing by range, checked again after the settle time
    full_sync_requested: bool = False


def reconcile(
    change: Change, ports: ConsumerPorts, remaining_ms: Callable[[], int]
) -> dict[str, Exception]:
    """A RECONCILE message: fan ``*`` out per table, run one table's cycle, or a follow-up."""
    if change.table == EVERY_TABLE:
        for table in ports.settings.cached_tables:
            ports.queue.publish(reconcile_message(table, ports))
        return {}
    if change.heal is not None:
        check_keys(change.table, change.heal.keys, ports)
    else:
        # Named after its message: redelivered after a crash, it finds its own lease.
        seed = f"{change.correlation_id}|{change.received_at.isoformat()}"
        owner = hashlib.sha256(seed.encode()).hexdigest()[:16]
        reconcile_table(change.table, ports, remaining_ms, owner=owner)
    return {}


def reconcile_table(
    table: str,
    ports: ConsumerPorts,
    remaining_ms: Callable[[], int] = lambda: 10**9,
    *,
    owner: str | None = None,
) -> CycleReport:
    """One cycle of one table (its lease held throughout); never raises a typed failure."""
    store, settings = ports.store, ports.settings
    report = CycleReport(table)
    owner = owner or secrets.token_hex(8)
    if not store.acquire_lease(table, LEASE_RECONCILE, owner, settings.reconcile_lease_s):
        return _skipped(report, "another reconcile of the table is running")
    try:
        if store.lease_holder(table, LEASE_SYNC) is not None:
            # A full sync is healing the whole table now; the next cycle scans from where
            # the last one ended, so nothing changed meanwhile is skipped.
            return _skipped(report, "a full sync of the table is running")
        _cycle(table, ports, remaining_ms, report)
    except WaitUntilError as error:
        report.outcome, report.reason = "failed", f"{type(error).__name__}: {error}"
        logger.error("reconcile failed", extra=_fields(report))
        record_failure(table)
    finally:
        store.release_lease(table, LEASE_RECONCILE, owner)
    if report.outcome == "done":
        logger.info("reconciled", extra=_fields(report))
    return report


def _cycle(
    table: str, ports: ConsumerPorts, remaining_ms: Callable[[], int], report: CycleReport
) -> None:
    store, settings = ports.store, ports.settings
    now_ns = ports.clock_ns()
    state = store.get_heal_state(table) or HealState(table)
    if state.last_ok_ns:
        record_age(table, (now_ns - state.last_ok_ns) / 1e9)
    head = store.get_head(table)
    if head is None or not head.complete:
        ensure_fill(table, ports)
        report.outcome = "filling"
        return
    if state.pending:
        # A cycle died between healing these rows and publishing them: their items look
        # healed to the scan, which would skip them, so they are published now.
        publish_rows(table, list(state.pending), ports)
        head = store.get_head(table) or head
    started = state

    def before_heal(keys: list[str]) -> None:
        store.put_heal_state(replace(started, pending=tuple(keys)))

    column, origin = _change_column(table, state, now_ns, ports)
    published = False
    young_absent: list[Position] = []
    if column:
        try:
            scan = scan_changes(
                table,
                column,
                state.scan_from,
                now_ns,
                ports,
                max_keys=read_budget(head, ports) // 2,
                scan_after=state.scan_after,
                before_heal=before_heal,
            )
        except ColumnMissing as error:
            if origin == "policy":
                raise ColumnMissing(
                    f"the policy of {table} names changed_at={column!r}, which the table "
                    f"lacks ({error})"
                ) from error
            # The default, updated_at, is simply not there: no scan (counts still heal
            # deletes and inserts; updates wait for the full resync).
            report.requests += 1
            report.rounds += 1
            column, scan, origin = "", None, "checked"
        if origin != "state":
            logger.info("change column", extra={"table": table, "change_column": column or None})
            state = replace(state, change_column=column, column_checked_ns=now_ns)
        if scan is not None:
            published |= scan.checked > 0
            report.scan_keys, report.healed = scan.keys_read, scan.healed
            report.requests += scan.requests
            report.rounds += scan.requests
            report.rows_read += scan.keys_read + scan.rows_read
            young_absent = list(scan.young_absent.values())
            # Saved with the cycle's end, after the rows it covers are written: a cycle that
            # fails before then scans them again (keys only: they are healed already).
            state = replace(state, scan_from=scan.scan_from, scan_after=scan.scan_after)
    report.change_column = column or None

    if remaining_ms() > settings.sync_reserve_ms:
        if published:
            head = store.get_head(table) or head
        state = _compare(table, head, state, ports, report, young_absent)

    if report.healed:
        record_healed(table, report.healed)
    elif not report.to_check:
        record_healed(table, 0)
    healed_total = state.healed_total + report.healed
    store.put_heal_state(replace(state, last_ok_ns=now_ns, healed_total=healed_total, pending=()))


def _compare(
    table: str,
    head: ListHead,
    state: HealState,
    ports: ConsumerPorts,
    report: CycleReport,
    young_absent: Sequence[Position] = (),
) -> HealState:
    """The whole table's count (and fingerprint, for a table that has them) against the
    list's; where they differ, the ranges down to the keys.

    ``young_absent``: where the rows the scan saw younger than the settle time, and the cache
    lacks, belong. Counts leave them out: Supabase counts them, the list does not hold them
    yet (their webhook may still come), and a lost delete beside one must not cancel out."""
    whole = PositionRange()
    theirs: int | None = None
    if ports.settings.policy(table).fingerprint:
        try:
            (answer,) = ports.source.fingerprint_ranges(table, [whole])
            total, theirs = answer.count, answer.fingerprint
        except FingerprintUnavailable as error:
            logger.warning("counts only", extra={"table": table, "reason": str(error)})
    if theirs is None:
        (total,) = ports.source.count_rows(table, [whole])
    report.requests += 1
    report.rounds += 1
    ours: int | None = None
    if theirs is not None:
        if state.print_version != head.version:
            fingerprint = cached_fingerprint(ports.store, table, head)
            state = replace(
                state,
                print_version=head.version,
                print_count=head.row_count,
                print_fp=fingerprint,
            )
        ours = state.print_fp
    if theirs is not None:
        young_absent = ()  # a fingerprint sees them: the comparison finds them, a row each
    if total - len(young_absent) != head.row_count or theirs != ours:
        _compare_ranges(table, total, theirs, ports, report, young_absent)
    return state


def _compare_ranges(
    table: str,
    total: int,
    fingerprint: int | None,
    ports: ConsumerPorts,
    report: CycleReport,
    young_absent: Sequence[Position] = (),
) -> None:
    settings = ports.settings
    head = ports.store.get_head(table)
    assert head is not None
    budget = settings.reconcile_max_requests - report.requests
    ranges = find_differences(
        table,
        head,
        total,
        ports,
        max_requests=budget,
        max_keys=max(read_budget(head, ports) - report.rows_read, 0),
        supabase_fp=fingerprint,
        uncounted=young_absent,
    )
    report.requests += ranges.requests
    report.rounds += ranges.rounds
    report.rows_read += ranges.rows_read
    if ranges.too_many:
        # More differences than a cycle may read: that is the full resync's job, now.
        report.full_sync_requested = request_full_sync(table, ports)
    keys = sorted(ranges.keys)
    report.to_check = len(keys)
    if not keys:
        return
    if settings.reconcile_settle_s == 0:
        healed = heal_keys(table, keys, ports)
        report.healed += healed.healed
        report.requests += healed.requests
        report.rounds += healed.requests
        report.rows_read += healed.rows_read
        report.to_check = 0
        return
    for start in range(0, len(keys), HEAL_CHECK_KEYS):
        body = reconcile_message(table, ports, keys[start : start + HEAL_CHECK_KEYS])
        ports.queue.publish_later(body, settings.reconcile_settle_s)


def read_budget(head: ListHead, ports: ConsumerPorts) -> int:
    """The rows (keys included) one cycle may read from Supabase: never the whole table (that
    is the full resync's job), at most half of it, but 100 however small it is (the cost goal
    allows 2·d + 100), and ``RECONCILE_MAX_KEYS`` at most. The scan gets half of it: each key it
    finds stale costs its row too; it goes on where it stopped at the next cycle."""
    return min(ports.settings.reconcile_max_keys, max(head.row_count // 2, 100))


def check_keys(table: str, keys: list[str], ports: ConsumerPorts) -> CycleReport:
    """A follow-up: keys a cycle found differing, read again by key after the settle time; what
    still differs is healed (a webhook in flight has landed by now, and then nothing differs).

    Like a row change, it needs no lease: it reads keys and writes conditionally."""
    report = CycleReport(table, to_check=len(keys))
    try:
        head = ports.store.get_head(table)
        if head is None or not head.complete:
            report.outcome = "filling"  # the fill heals them, and says when it has (I6)
            return report
        healed = heal_keys(table, keys, ports)
    except WaitUntilError as error:
        report.outcome, report.reason = "failed", f"{type(error).__name__}: {error}"
        logger.error("reconcile follow-up failed", extra=_fields(report))
        record_failure(table)
        return report
    report.healed, report.requests, report.rows_read = (
        healed.healed,
        healed.requests,
        healed.rows_read,
    )
    record_healed(table, healed.healed)
    if healed.healed:
        # Without the cycle's lease, so the count alone is written (an UpdateItem's ADD): a
        # read-modify-put of the state could put back the `pending` keys it read over those a
        # cycle saved meanwhile. A cycle's own save may still drop a count added between its
        # read and its save (a report, not a watermark).
        ports.store.add_healed(table, healed.healed)
    logger.info("reconcile follow-up", extra=_fields(report))
    return report


def _change_column(
    table: str, state: HealState, now_ns: int, ports: ConsumerPorts
) -> tuple[str, str]:
    """The table's change column ("" for none) and where it comes from: the ``policy`` (the
    table must have it), the ``state`` (found by an earlier cycle), or the ``default``
    (``updated_at``, to be tried: a table without it simply has none)."""
    named = ports.settings.policy(table).changed_at
    if named is False:
        return "", "policy"
    if isinstance(named, str):
        return named, "policy"
    recent = now_ns - state.column_checked_ns < COLUMN_CHECK_EVERY_NS
    if state.change_column is not None and recent:
        return state.change_column, "state"
    return DEFAULT_CHANGE_COLUMN, "default"


def reconcile_message(table: str, ports: ConsumerPorts, keys: list[str] | None = None) -> str:
    return Change(
        type="RECONCILE",
        schema_name=ports.settings.schema_name,
        table=table,
        key=None,
        received_at=datetime.fromtimestamp(ports.clock_ns() / 1e9, tz=UTC),
        correlation_id=f"reconcile-{secrets.token_hex(6)}",
        heal=HealCheck(keys=keys) if keys else None,
    ).to_message()


def _skipped(report: CycleReport, reason: str) -> CycleReport:
    report.outcome, report.reason = "skipped", reason
    logger.info("reconcile skipped", extra=_fields(report))
    return report


def _fields(report: CycleReport) -> dict[str, object]:
    return {key: value for key, value in vars(report).items() if value not in (None, "", 0)}
