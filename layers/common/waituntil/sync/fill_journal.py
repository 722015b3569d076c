"""A first fill's fast path: unconditional batched puts, made safe by a journal.

A first fill (a list that has never been complete) writes each page's rows with
``BatchWriteItem`` puts (``CacheStore.put_rows``: 25 a call, several calls in flight) instead
of one conditional ``UpdateItem`` per row, and reads no item first. A put is not conditional on
read time, so it could overwrite a newer row that a change wrote meanwhile (the fill read the
row from Supabase before the change did, but its put landed after the change's write). The
journal (``/<table>#fill``) closes that race:

- a change that finds the served list absent or incomplete adds its keys to the journal
  (unless it is joined) **after its Supabase read and before its row write**
  (``journal_change``). A put can only overwrite a change whose Supabase read came after the
  fill's read of that page, so after the fill began, so after it owned the journal: such a
  change's keys are in the journal, because it journaled before its write landed, and its
  write landed before the put;
- at the end of its rows, the fill **joins** (``CacheStore.join_journal``: conditional on its
  own ownership, so a resend or a resume applies again): all its puts have landed by then.
  It reads the journaled keys from Supabase again and converges them with the conditional
  writes and publishes every change uses; a change that finds the journal joined writes
  conditionally as ever, after every put. Only then is the list published complete;
- a change that journaled while a fill owns the journal (``DEFERRED``) writes its rows but
  publishes nothing: the join publishes its keys. So no list ever holds a position that a put
  could drop from a row's item (a put writes the whole item, position tags too). Changes that
  journaled before any fill owned it published as ever; they journaled the position tags
  their writes added too, and the fill's puts keep those tags (``FillJournal.tags``);
- a journal that overflows (400 KB of keys) is marked so by the change that could not add to
  it; the fill then re-checks every row with the conditional path (a second, conditional
  pass: ``recheck``), which converges whatever its puts overwrote. That costs a full
  conditional pass, but only after some thousands of changes during one fill;
- a rebuild never runs beside unconditional puts: it marks the journal ``blocked`` before it
  begins (a fill that finds it so stays conditional), and waits while a live fill owns an
  open journal (``FillUnderWay``: its message comes back later). Reconcile cycles and their
  follow-ups write nothing while the list is filling.

A fill resumed after its invocation died writes its first page conditionally: the dead
invocation may have put that page already, and a second put would drop the position tags its
publish listed. A RESYNC of a complete list and a rebuild never put unconditionally.
"""

from __future__ import annotations

from collections.abc import Sequence

from waituntil.cache.model import FillJournal, FreshRow, JournalOutcome, ListHead, position_tag
from waituntil.core.contracts import SyncProgress
from waituntil.sync.ports import ConsumerPorts

# Journaled keys the join converges per step (one Supabase read by key, one publish).
JOIN_KEYS = 100


def journal_change(
    table: str,
    fresh: Sequence[FreshRow],
    read_at_ns: int,
    served: ListHead | None,
    ports: ConsumerPorts,
) -> bool:
    """Journal a change's keys if the list is filling; whether its publish is left to the
    fill's join (a fill puts rows unconditionally now). Called after the change's Supabase
    read and before its row writes (the module's doc says why that order closes the race)."""
    if served is not None and served.complete:
        return False  # no first fill puts rows: the list is complete (only its join ends one)
    tags = {
        row.key: frozenset({position_tag(read_at_ns, row.position)})
        for row in fresh
        if row.body is not None and row.position is not None
    }
    outcome = ports.store.journal_changes(table, [row.key for row in fresh], tags)
    return outcome is JournalOutcome.DEFERRED


def open_fill(table: str, progress: SyncProgress, ports: ConsumerPorts) -> FillJournal | None:
    """The journal, now owned by full sync ``progress``, if it is a first fill that may put
    its rows unconditionally: not a rebuild, no rebuild under way, the served list absent or
    never complete (and built with the policy in force). None: it writes conditionally."""
    if progress.rebuild:
        return None
    served, rebuilt = ports.store.get_heads(table)
    if rebuilt is not None:
        return None
    if served is not None and (served.complete or served.policy != ports.policy(table)):
        return None
    return ports.store.open_journal(table, progress.sync_id, head_exists=served is not None)


def resumed_journal(table: str, sync_id: str, ports: ConsumerPorts) -> FillJournal | None:
    """The journal a resumed batched fill goes on with; None if it is no longer this fill's
    to put under (closed for it by a rebuild that found it dead), or it overflowed (its tags
    are gone): the fill then re-checks every row, conditionally."""
    journal = ports.store.read_journal(table)
    if (
        journal is None
        or journal.owner != sync_id
        or journal.joined not in (None, sync_id)
        or journal.overflowed
    ):
        return None
    return journal
