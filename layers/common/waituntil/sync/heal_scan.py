"""The reconciler's scan of a change column: inserts and updates whose webhook was lost.

A table whose rows carry the time they last changed (``updated_at``, kept by Supabase's
``moddatetime`` trigger, or the column the policy names) is read from where the last scan ended,
less an overlap, in (column, key) order: the key and the column only. A row whose cached item
already holds that change is skipped; the others are read whole, by key, and written through the
consumer's conditional path (newer wins: a state already applied is refused), then published.
A skipped row whose item may not be what the list holds yet (its position tags name more than
one place: no publish has pruned them since a write that moved it) is published again, with no
read from Supabase: a heal whose item write applied and whose publish then failed (an answer
lost, a crash) is otherwise never listed, as an update changes no count. A row updated in place
is not: see ``_moved_unpublished``.

Commit order is not timestamp order: ``now()`` is a transaction's start, so a transaction that
began before the last scan may commit after it with an older value. The next scan therefore
starts ``overlap`` before the time the last one ran (not before the newest value it saw), which
also lets a quiet table scan nothing at all once the overlap has passed. Rows younger than the
settle time are left for the next cycle: their webhooks may still be in flight. The scan still
reads their keys, to tell the counts (``heal_ranges``) where Supabase has rows that the cache
does not hold yet: a young insert would otherwise hide a lost delete in the counts of every
range holding both, the whole table's first, for a period.

Pure over ports; the cycle (``reconcile``) owns the lease and the state item.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from waituntil.cache.layout import fresh_rows
from waituntil.cache.model import ChangeMark, FreshRow, RowState, parse_position_tag
from waituntil.core.errors import ReconcileFailed
from waituntil.core.list_order import Position
from waituntil.sync.list_publish import publish_rows
from waituntil.sync.ports import ConsumerPorts


@dataclass
class ScanResult:
    scan_from: str  # where the next scan starts
    complete: bool  # False: the budget ran out before the end (the next cycle goes on)
    scan_after: str | None = None  # and past which key (JSON) at scan_from, if cut short
    keys_read: int = 0
    rows_read: int = 0
    requests: int = 0
    healed: int = 0
    checked: int = 0  # keys read whole and published (their cached item lacked the change)
    # The rows younger than the settle time that the cache lacks: key -> where the list would
    # hold each (a row changed during the scan may be read twice, and counts once).
    young_absent: dict[str, Position] = field(default_factory=dict)


def scan_changes(
    table: str,
    column: str,
    scan_from: str | None,
    now_ns: int,
    ports: ConsumerPorts,
    *,
    max_keys: int,
    before_heal: Callable[[list[str]], None] = lambda keys: None,
    scan_after: str | None = None,
) -> ScanResult:
    """Scan ``column`` from ``scan_from`` (None: ``overlap`` before now; past the key
    ``scan_after`` there, where a scan cut short stopped) to now, healing what the cache lacks
    up to ``settle`` before now, and counting the younger rows it does not hold. Raises
    ``ColumnMissing`` if the table has no such column."""
    settings = ports.settings
    overlap = max(settings.reconcile_overlap_s, settings.reconcile_settle_s)
    now = datetime.fromtimestamp(now_ns / 1e9, tz=UTC)
    since = scan_from or timestamp_text(now - timedelta(seconds=overlap))
    before = timestamp_text(now)
    settled = now - timedelta(seconds=settings.reconcile_settle_s)
    result = ScanResult(scan_from=timestamp_text(now - timedelta(seconds=overlap)), complete=True)
    after = (
        ChangeMark(changed=scan_from, key=json.loads(scan_after))
        if scan_from is not None and scan_after is not None
        else None
    )
    while True:
        if result.keys_read >= max_keys:
            # Out of budget: the next scan goes on past the last row read, by (value, key):
            # the rows of one bulk update share one value. What commits meanwhile with an
            # older value is left to the overlap of the scan after the one that completes.
            result.complete = False
            if after is not None:
                result.scan_from, result.scan_after = after.changed, json.dumps(after.key)
            else:
                result.scan_from, result.scan_after = since, scan_after
            return result
        marks = ports.source.changed_since(
            table, column, since, before, after, min(settings.page_size, max_keys)
        )
        result.requests += 1
        result.keys_read += len(marks)
        if not marks:
            # Only an empty page ends the scan: a project whose max-rows is below the page
            # size answers short pages before the end.
            return result
        _heal_page(table, column, marks, settled, ports, result, before_heal)
        after = marks[-1]


def _heal_page(
    table: str,
    column: str,
    marks: Sequence[ChangeMark],
    settled: datetime,
    ports: ConsumerPorts,
    result: ScanResult,
    before_heal: Callable[[list[str]], None],
) -> None:
    keys = list(dict.fromkeys(str(mark.key) for mark in marks))
    cached = ports.store.get_rows(table, keys)
    changed = {str(mark.key): mark.changed for mark in marks}
    young = {key for key in keys if parse_timestamp(changed[key]) >= settled}
    # Not healed yet (a webhook may still bring them), only counted: a row the cache holds no
    # item for (or a tombstone) is one Supabase counts and the cached list does not.
    for mark in marks:
        key = str(mark.key)
        if key in young and mark.position is not None:
            state = cached.get(key)
            if state is None or state.body is None:
                result.young_absent[key] = mark.position
    settled_keys = [key for key in keys if key not in young]
    stale = [key for key in settled_keys if not _holds(cached.get(key), column, changed[key])]
    unpublished = [
        key for key in settled_keys if key not in stale and _moved_unpublished(cached[key])
    ]
    if unpublished:
        # The list publish is idempotent: it writes nothing where the list already holds them.
        publish_rows(table, unpublished, ports)
        result.checked += len(unpublished)
    if not stale:
        return
    before_heal(stale)
    healed = heal_keys(table, stale, ports, cached=cached)
    result.checked += len(stale)
    result.requests += healed.requests
    result.rows_read += healed.rows_read
    result.healed += healed.healed


def _moved_unpublished(state: RowState) -> bool:
    """Whether the row's position tags name more than one place: a write moved it and no
    publish has pruned the old place since (a publish drops every tag of a state the list no
    longer holds, except one at the row's own place, left for its next update to drop).

    Distinct places, not tags: two tags at one place are what every row updated in place
    carries after a publish (the lazy pruning), so they cannot tell a listed row from an
    unlisted one. Counting them republished each such row at every cycle of the overlap
    window: reads that followed recent traffic, not differences. Dropping the check outright
    would also be sound for the heal's own writes (a cycle keeps the keys it heals ``pending``
    in the heal state before writing them, and the next cycle publishes those) and for the
    change path's (a record whose publish failed is redelivered by SQS); distinct places are
    kept because they cost nothing once a row is listed and still catch a moved row whose
    publish was lost where neither applies (the old place's tag pruned apart and failing)."""
    places = {parse_position_tag(tag)[1] for tag in state.positions}
    return len(places) > 1


def _holds(state: RowState | None, column: str, changed: str) -> bool:
    """Whether a cached row item already holds the change the scan saw."""
    if state is None or state.body is None or not state.body.text:
        return False  # no item, a tombstone, or a body kept out of line (read it to compare)
    try:
        value = json.loads(state.body.text).get(column)
    except (ValueError, AttributeError):
        return False
    return value is not None and str(value) == changed


@dataclass
class Healed:
    requests: int = 0
    rows_read: int = 0
    healed: int = 0  # row items a write changed: each one a change the cache had missed


def heal_keys(
    table: str,
    keys: Sequence[str],
    ports: ConsumerPorts,
    *,
    cached: dict[str, RowState] | None = None,
) -> Healed:
    """Read ``keys`` from Supabase and make the cache hold what it says, through the consumer's
    conditional writes; publish them all (the list may lack a row whose item is right).

    A key is tombstoned only when a successful read said it is absent, confirmed by
    ``existing_keys`` (which asks again until an answer cannot have been cut short by the
    project's max-rows): a failed or partial read deletes nothing (H3).
    """
    order = ports.list_order(table)
    outcome = Healed()
    read_at_ns = ports.clock_ns()  # before the read it stamps
    rows = ports.source.read_rows(table, keys)
    outcome.requests += 1
    outcome.rows_read += len(rows)
    present = {str(row[order.primary_key]) for row in rows}
    absent = [key for key in keys if key not in present]
    if absent:
        still_there = ports.source.existing_keys(table, absent)
        outcome.requests += 1
        absent = [key for key in absent if key not in still_there]
    checked = [key for key in keys if key in present or key in absent]
    fresh = fresh_rows(checked, rows, order)
    if cached is None:
        cached = ports.store.get_rows(table, checked)
    differing = [row for row in fresh if _differs(row, cached.get(row.key))]
    writes = ports.store.write_rows(
        table, differing, read_at_ns=read_at_ns, order=order, policy=ports.policy(table)
    )
    # What was written is published even when other rows failed: the next cycle finds those
    # items current and would never list them.
    publish_rows(table, [key for key in checked if key not in writes.failures], ports)
    if writes.failures:
        raise ReconcileFailed(f"{len(writes.failures)} rows of {table} could not be written")
    outcome.healed = writes.written + writes.deleted
    return outcome


def _differs(fresh: FreshRow, state: RowState | None) -> bool:
    if state is None:
        return fresh.body is not None  # a tombstone for a key never cached would heal nothing
    if fresh.body is None or state.body is None:
        return (fresh.body is None) != (state.body is None)
    return fresh.body.etag != state.body.etag or fresh.position != state.position


def timestamp_text(moment: datetime) -> str:
    """A time as the scan sends it to Postgres: ISO 8601, UTC, microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_timestamp(text: str) -> datetime:
    """A change column's value as PostgREST renders it (or as ``timestamp_text`` wrote it);
    a column without a time zone is taken as UTC (Supabase's database time zone)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise ReconcileFailed(f"the change column holds {text!r}, not a timestamp") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
