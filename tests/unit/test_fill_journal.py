"""A first fill's batched puts under the fill journal (``sync/fill_journal``), on fakes.

The race the journal closes, played out explicitly: a change reads Supabase after the fill read
the page, its conditional write lands, then the fill's unconditional put overwrites it with the
older row. The journal holds the change's key, and the fill's join converges it before the list
is published complete. Also: a row deleted during the fill, lost answers, a resumed fill, an
overflowing journal, a rebuild that must wait, and what keeps the conditional path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fakes import AnswerLost, MemoryQueue, MemorySource, MemoryStore
from waituntil.cache.model import FillJournal, JournalOutcome, SyncCheckpoint
from waituntil.core.contracts import Change, Row, SyncProgress
from waituntil.core.settings import ConsumerSettings
from waituntil.read.cache_client import get_item, get_list
from waituntil.sync.full_sync import FILL_WAIT_S, full_sync, resync
from waituntil.sync.ports import ConsumerPorts
from waituntil.sync.row_changes import apply_changes

ROWS = 12  # three pages of 5, the last one short


def _settings(order: str | None = None, page_size: int = 5) -> ConsumerSettings:
    return ConsumerSettings.model_validate(
        {
            "CACHE_TABLE_NAME": "cache",
            "SUPABASE_URL": "http://supabase.invalid",
            "SUPABASE_KEY_SECRET_NAME": "key",
            "QUEUE_URL": "http://queue.invalid",
            "CACHED_TABLES": "articles",
            "SUPABASE_PAGE_SIZE": str(page_size),
            "LIST_CHUNK_BYTES": "1024",
            "LIST_INDEX_REFS": "4",
            **({"LIST_ORDER": order} if order else {}),
        }
    )


def _row(key: int, title: str = "first", rank: int = 0) -> Row:
    return {"id": key, "rank": rank, "title": f"{title} {key}", "pad": "x" * 200}


def _change(key: int, kind: str = "UPDATE") -> Change:
    return Change.model_validate(
        {
            "type": kind,
            "schema": "public",
            "table": "articles",
            "key": key,
            "received_at": "2026-11-29T00:00:00Z",
            "correlation_id": f"c-{key}",
        }
    )


@dataclass
class Counting:
    """A store that counts its calls by name, and can run a hook after one of them."""

    store: Any
    calls: dict[str, int] = field(default_factory=dict)
    after: dict[str, Callable[[], None]] = field(default_factory=dict)
    checkpoints: list[SyncCheckpoint | None] = field(default_factory=list)
    rows_read: int = 0  # keys asked of ``get_rows``

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.store, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if name == "put_checkpoint":
                self.checkpoints.append(args[0])
            if name == "get_rows":
                self.rows_read += len(args[1])
            result = attribute(*args, **kwargs)
            hook = self.after.pop(name, None)
            if hook is not None:
                hook()
            return result

        return call


@dataclass
class Hooked:
    """Supabase, with a hook run just after the next page read returns (before the fill
    writes what it read)."""

    source: MemorySource
    after_page: list[Callable[[], None]] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    def read_page(self, table: str, after: Any, limit: int) -> list[Row]:
        rows = self.source.read_page(table, after, limit)
        if self.after_page:
            self.after_page.pop(0)()
        return rows


def _world(
    order: str | None = None, page_size: int = 5, ranked: bool = False
) -> tuple[MemorySource, Hooked, Counting, MemoryQueue, ConsumerPorts]:
    settings = _settings(order, page_size)
    source = MemorySource(order=settings.policy("articles").list_order)
    for key in range(1, ROWS + 1):
        source.put(_row(key, rank=key if ranked else 0))
    hooked = Hooked(source)
    store = Counting(MemoryStore())
    queue = MemoryQueue()
    clock = iter(range(1_000, 10**9, 10))
    ports = ConsumerPorts(settings, hooked, store, queue, clock_ns=lambda: next(clock))
    return source, hooked, store, queue, ports


def _fill(ports: ConsumerPorts, sync_id: str = "fill") -> None:
    assert full_sync("articles", SyncProgress(sync_id=sync_id), ports, lambda: 10**9) is None


def _converged(source: MemorySource, store: Any, ports: ConsumerPorts) -> None:
    policy = ports.policy("articles")
    assert get_list(store, "articles", policy=policy) == source.rows(ports.list_order("articles"))
    for key in range(1, ROWS + 2):
        assert get_item(store, "articles", key, policy=policy) == source.table.get(key)


def test_a_first_fill_puts_its_rows_in_batches_and_reads_no_row_back() -> None:
    # Given an uncached table of 12 rows
    source, _, store, _, ports = _world()
    # When its first fill runs
    _fill(ports)
    # Then every row was put unconditionally, no row item was read or written one by one,
    # and the list is complete and equals the table; the journal is gone with the fill
    assert store.store.puts == ROWS
    assert store.rows_read == 0 and "write_rows" not in store.calls
    _converged(source, store.store, ports)
    assert store.store.journals == {}


@pytest.mark.parametrize("journaled", [True, False])
def test_a_change_overwritten_by_the_fills_put_converges_at_the_join(
    journaled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a fill that has read its second page (rows 6-10) from Supabase
    source, hooked, store, _, ports = _world()
    if not journaled:
        # (the control: changes that do not journal, as before the journal existed)
        monkeypatch.setattr("waituntil.sync.row_changes.journal_change", lambda *a: False)
    states: dict[str, Any] = {}

    def change_lands() -> None:
        # When, before the fill puts that page, row 7 changes in Supabase and its change is
        # processed whole: read after the fill's read, written conditionally
        source.put(_row(7, "newer"))
        assert not apply_changes("articles", [_change(7)], ports)
        states["after change"] = store.store.rows[("articles", "7")]
        store.after["put_rows"] = lambda: states.update(after_put=store.rows[("articles", "7")])

    hooked.after_page = [lambda: None, change_lands]
    _fill(ports)
    # Then the fill's put did overwrite the newer row with the older one (the race is real)
    assert states["after change"].body.text != states["after_put"].body.text
    assert "first 7" in states["after_put"].body.text
    if journaled:
        # and the join read row 7 again and converged it: the cache holds the newest row
        _converged(source, store.store, ports)
    else:
        # and without the journal the older row stays cached
        cached = get_item(store.store, "articles", 7)
        assert cached is not None and cached["title"] == "first 7"


def test_a_row_deleted_during_the_fill_is_resurrected_by_the_put_then_tombstoned() -> None:
    # Given a fill that has read its first page
    source, hooked, store, _, ports = _world()

    def deleted() -> None:
        # When row 3 is deleted in Supabase and its change tombstones it before the put
        source.delete(3)
        assert not apply_changes("articles", [_change(3, "DELETE")], ports)
        store.after["put_rows"] = lambda: resurrected.append(store.rows[("articles", "3")])

    resurrected: list[Any] = []
    hooked.after_page = [deleted]
    _fill(ports)
    # Then the put brought row 3 back for a while, and the join tombstoned it: neither the
    # item nor the list has it
    assert resurrected[0].body is not None
    assert store.store.rows[("articles", "3")].body is None
    _converged(source, store.store, ports)


def test_a_change_during_the_fill_publishes_nothing_and_the_join_lists_it() -> None:
    # Given a table ordered by rank (row k at rank k) whose fill reads one row a page and has
    # read its ninth
    source, hooked, store, _, ports = _world("rank", page_size=1, ranked=True)

    def moved() -> None:
        # When row 10 moves to the head of the list during the fill and its change is
        # processed
        source.put(_row(10, "moved", rank=0))
        assert not apply_changes("articles", [_change(10)], ports)
        # (then moves back to the end, its webhook lost, before the fill reads it)
        source.put(_row(10, "moved again", rank=10))

    hooked.after_page = [lambda: None] * 8 + [moved]
    _fill(ports)
    # Then the change's row was written at once (rows are served meanwhile), but its publish
    # was left to the join: had it listed the row where it was, the fill's put (which writes
    # the whole item) would have dropped that place from the row's item, and the row would
    # be listed twice. The list holds it once, at its last place
    assert store.store.journals == {}
    _converged(source, store.store, ports)


def test_changes_before_the_fill_publish_and_the_puts_keep_their_positions() -> None:
    # Given an uncached table ordered by rank whose first changes came before any fill: they
    # journaled their keys and positions, and published the list (incomplete, a few chunks);
    # the fill reads one row a page, so nothing but a row's own tags locates its chunk
    source, _, store, _, ports = _world("rank", page_size=1)
    changes = [_change(key) for key in range(1, ROWS + 1)]
    assert not apply_changes("articles", changes, ports)
    assert store.store.journals["articles"].tags["1"]
    assert store.store.heads["articles"].chunk_count > 1
    # When row 1 moves to the end of the list in Supabase, its webhook lost, and the fill runs
    source.put(_row(1, "moved", rank=9))
    _fill(ports)
    # Then the put kept the position the change published, so the fill's publish found the
    # row in the first chunk and moved it: it is listed once, at its new place
    _converged(source, store.store, ports)


@pytest.mark.parametrize("method", ["journal_changes", "join_journal", "open_journal"])
def test_journal_writes_whose_answer_was_lost_are_resent_safely(method: str) -> None:
    # Given a store whose journal write applies and is answered only when botocore resends it
    source, hooked, store, _, ports = _world()
    real = getattr(store.store, method)

    def resent(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)  # applied, the answer lost
        return real(*args, **kwargs)

    setattr(store.store, method, resent)

    def change_lands() -> None:
        source.put(_row(8, "newer"))
        assert not apply_changes("articles", [_change(8)], ports)

    hooked.after_page = [lambda: None, change_lands]
    # When the fill runs with a change during it
    _fill(ports)
    # Then the resend met its own write: the fill still put its rows and converged
    assert store.store.puts >= ROWS
    _converged(source, store.store, ports)


def test_a_put_whose_answers_were_all_lost_fails_the_page_and_the_retry_converges() -> None:
    # Given a fill whose second page's puts apply but every answer is lost
    source, _, store, _, ports = _world()
    real = store.store.put_rows
    lost = [0]

    def gave_up(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        lost[0] += 1
        if lost[0] == 2:
            raise AnswerLost("BatchWriteItem applied, and its answer was lost")
        return real(*args, **kwargs)

    store.store.put_rows = gave_up
    # When the fill runs, fails, and its message comes back
    with pytest.raises(AnswerLost):
        _fill(ports)
    _fill(ports)
    # Then the retry resumed from the checkpoint and wrote that page conditionally (the
    # failed invocation may have put it), then put the rest: the cache converged
    assert store.calls["write_rows"] >= 1
    _converged(source, store.store, ports)


def test_a_journal_that_overflows_makes_the_fill_recheck_every_row() -> None:
    # Given a journal that holds a single key, and a fill during which two rows change
    source, hooked, store, _, ports = _world()
    store.store.journal_limit = 1

    def two_changes() -> None:
        for key in (6, 11):
            source.put(_row(key, "newer"))
            assert not apply_changes("articles", [_change(key)], ports)

    hooked.after_page = [two_changes]
    # When the fill runs
    _fill(ports)
    # Then the second key could not be journaled, the journal overflowed, the join found it
    # so and the fill checked every row again conditionally: the cache converged
    modes = {checkpoint.mode for checkpoint in store.checkpoints if checkpoint is not None}
    assert modes == {"batched", "recheck"}
    _converged(source, store.store, ports)


def test_a_fill_resumed_after_a_kill_writes_its_first_page_conditionally() -> None:
    # Given a fill that put its first page, then went on in a new invocation (which wrote its
    # first page, the second, conditionally) and was killed after putting its third page,
    # before that page's checkpoint
    source, _, store, _, ports = _world("rank")
    budget = iter([10**9, 0])
    assert full_sync("articles", SyncProgress(sync_id="fill"), ports, lambda: next(budget))
    real = store.store.put_rows

    def killed(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise AnswerLost("killed")

    store.store.put_rows = killed
    with pytest.raises(AnswerLost):
        _fill(ports)
    store.store.put_rows = real
    # When row 11 (in that page) moves meanwhile, its webhook lost, and the fill resumes
    source.put(_row(11, "moved", rank=7))
    writes_before = store.calls.get("write_rows", 0)
    _fill(ports)
    # Then that page went through the conditional path (keeping the tags the dead put left)
    # and the list holds every row once
    assert store.calls["write_rows"] > writes_before
    _converged(source, store.store, ports)


def test_a_resync_of_a_complete_list_and_a_rebuild_keep_the_conditional_path() -> None:
    # Given a filled table
    source, _, store, _, ports = _world()
    _fill(ports)
    puts = store.store.puts
    # When a RESYNC runs after a row changed, and then a rebuild
    source.put(_row(5, "later"))
    _fill(ports, "resync")
    assert (
        full_sync("articles", SyncProgress(sync_id="rebuild", rebuild=True), ports, lambda: 10**9)
        is None
    )
    # Then neither put a row unconditionally, and the cache converged
    assert store.store.puts == puts
    _converged(source, store.store, ports)


def test_a_rebuild_waits_while_a_first_fill_puts_rows() -> None:
    # Given a first fill that owns the journal and holds the sync lease
    _, _, store, queue, ports = _world()
    assert full_sync("articles", SyncProgress(sync_id="fill"), ports, iter([10**9, 0]).__next__)
    assert store.store.acquire_lease("articles", "sync", "fill", 900)
    # When an operator's rebuild arrives
    rebuild = _change(1).model_copy(
        update={"type": "RESYNC", "key": None, "sync": SyncProgress(sync_id="r", rebuild=True)}
    )
    assert resync(rebuild, ports, lambda: 10**9) == {}
    # Then it did not begin, and came back to the queue with a delay
    assert store.store.next_heads == {}
    assert queue.delays == {len(queue.bodies) - 1: FILL_WAIT_S}
    # and once the fill has joined and finished, it runs
    store.store.release_lease("articles", "sync", "fill")
    _fill(ports)
    assert store.store.block_fills("articles")


def test_a_rebuild_closes_the_journal_of_a_fill_that_died() -> None:
    # Given a first fill that owns the journal and died (its lease expired)
    store = MemoryStore()
    assert store.open_journal("articles", "dead", head_exists=False) is not None
    # When a rebuild begins
    assert store.block_fills("articles")
    # Then the dead fill can neither open the journal again nor join it: if it is ever
    # resumed, it re-checks every row conditionally
    assert store.open_journal("articles", "dead", head_exists=False) is None
    assert store.join_journal("articles", "dead") is None


def test_a_change_is_journaled_before_a_fill_owns_the_journal_and_deferred_after() -> None:
    # Given no journal yet
    store = MemoryStore()
    tags = {"1": frozenset({"5|[1]"})}
    # When a change journals, a fill opens the journal, another change journals, the fill
    # joins, and a third change journals
    first = store.journal_changes("articles", ["1"], tags)
    opened = store.open_journal("articles", "fill", head_exists=True)
    second = store.journal_changes("articles", ["2"], {"2": frozenset({"6|[2]"})})
    joined = store.join_journal("articles", "fill")
    third = store.journal_changes("articles", ["3"], {})
    # Then the first published as ever and its position is what the fill's puts keep; the
    # second left its publish to the join; the third found the journal closed
    assert (first, second, third) == (
        JournalOutcome.JOURNALED,
        JournalOutcome.DEFERRED,
        JournalOutcome.CLOSED,
    )
    assert opened == FillJournal(keys=frozenset({"1"}), tags=tags, owner="fill")
    assert joined is not None and joined.keys == {"1", "2"} and "2" not in joined.tags


def test_a_list_begun_before_journals_were_kept_is_filled_conditionally() -> None:
    # Given an incomplete list and no journal (begun by an older version of the consumer)
    source, _, store, _, ports = _world()
    assert not apply_changes("articles", [_change(1)], ports)
    store.store.journals.clear()
    # When its fill runs
    _fill(ports)
    # Then it put nothing unconditionally, and converged
    assert store.store.puts == 0
    _converged(source, store.store, ports)
