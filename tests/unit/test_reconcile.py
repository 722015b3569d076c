"""The reconciler on in-memory fakes: what it heals, what it costs, what it never does.

A table is filled by a full sync, then changed behind the cache's back (webhooks lost); a cycle
(``reconcile_table``) and its follow-ups (RECONCILE messages delayed by the settle time) must
heal exactly that, at a cost that follows the differences.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fakes import Crash, MemoryQueue, MemorySource, MemoryStore
from waituntil.cache.layout import LEASE_RECONCILE, LEASE_SYNC
from waituntil.cache.model import HealState
from waituntil.core.contracts import Change
from waituntil.core.errors import SourceUnavailable
from waituntil.core.settings import ConsumerSettings
from waituntil.read.cache_client import get_item, get_list
from waituntil.sync import list_publish
from waituntil.sync.batch import QueuedMessage, process_batch
from waituntil.sync.full_sync import resync
from waituntil.sync.ports import ConsumerPorts
from waituntil.sync.reconcile import CycleReport, check_keys, reconcile_table

START = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class Clock:
    """The consumer's clock (ns), moved on by the test."""

    def __init__(self) -> None:
        self.now = START
        self._tick = itertools.count()

    def __call__(self) -> int:
        # Strictly increasing, as reads stamped by it must be.
        return int(self.now.timestamp() * 1e9) + next(self._tick)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class CountingSource(MemorySource):
    """Counts every request, row reads by key included (the cost goals are in requests)."""

    def read_rows(self, table: str, keys: Sequence[str]) -> list[dict[str, Any]]:
        self.requests += 1
        return super().read_rows(table, keys)

    def existing_keys(self, table: str, keys: Sequence[str]) -> set[str]:
        self.requests += 1
        return super().existing_keys(table, keys)


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def row(key: int, at: datetime, rank: int | None = 0, title: str = "t") -> dict[str, Any]:
    return {"id": key, "rank": rank, "title": f"{title} {key}", "updated_at": stamp(at)}


class Setup:
    def __init__(
        self,
        rows: int,
        *,
        order: str | None = None,
        changed_at: Any = None,
        settle_s: int = 15,
        overlap_s: int = 300,
        with_column: bool = True,
        chunk_bytes: int = 2048,
        fingerprint: bool = False,
    ) -> None:
        self.clock = Clock()
        policy: dict[str, Any] = {}
        if changed_at is not None:
            policy["changed_at"] = changed_at
        if fingerprint:
            policy["fingerprint"] = True
        self.settings = ConsumerSettings.model_validate(
            {
                "CACHE_TABLE_NAME": "cache",
                "SUPABASE_URL": "http://supabase.invalid",
                "SUPABASE_KEY_SECRET_NAME": "key",
                "QUEUE_URL": "http://queue.invalid",
                "CACHED_TABLES": "articles",
                "LIST_CHUNK_BYTES": str(chunk_bytes),
                "LIST_INDEX_REFS": "8",
                "RECONCILE_SETTLE_SECONDS": str(settle_s),
                "RECONCILE_OVERLAP_MINUTES": str(overlap_s / 60),
                **({"LIST_ORDER": order} if order else {}),
                **({"TABLE_POLICIES": f'{{"articles": {_json(policy)}}}'} if policy else {}),
            }
        )
        self.order = self.settings.policy("articles").list_order
        self.source = CountingSource(order=self.order)
        self.store = MemoryStore()
        self.queue = MemoryQueue()
        self.ports = ConsumerPorts(
            self.settings, self.source, self.store, self.queue, clock_ns=self.clock
        )
        self.with_column = with_column
        old = START - timedelta(hours=1)
        for key in range(1, rows + 1):
            self.put(key, at=old, rank=key % 7)
        self.fill()

    def put(self, key: int, *, at: datetime | None = None, **fields: Any) -> None:
        body = row(key, at or self.clock.now, **fields)
        if not self.with_column:
            del body["updated_at"]
        self.source.put(body)

    def fill(self) -> None:
        change = _table_message("RESYNC", correlation="fill")
        resync(change, self.ports, lambda: 10**9)
        self.drain()

    def drain(self) -> None:
        """Process every queued message (continuations, fan-outs, follow-ups): their delays
        pass."""
        for _ in range(100):
            if not self.queue.bodies:
                return
            bodies, self.queue.bodies = self.queue.bodies, []
            self.queue.delays.clear()
            messages = [QueuedMessage(f"m{i}", body) for i, body in enumerate(bodies)]
            outcome = process_batch(messages, self.ports, lambda: 10**9)
            assert not outcome.failures, outcome.failures
        raise AssertionError("the queue never drained")

    def cycle(self) -> CycleReport:
        self.source.requests = self.source.rows_read = 0
        return reconcile_table("articles", self.ports)

    def converged(self) -> bool:
        expected = self.source.rows(self.order)
        items = all(
            get_item(self.store, "articles", key) == self.source.table.get(key)
            for key in {*self.source.table, *range(1, 2 * len(expected) + 50)}
        )
        return get_list(self.store, "articles") == expected and items


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _table_message(kind: str, table: str = "articles", correlation: str = "c") -> Change:
    return Change.model_validate(
        {
            "type": kind,
            "schema": "public",
            "table": table,
            "key": None,
            "received_at": START.isoformat(),
            "correlation_id": correlation,
        }
    )


# ----- nothing lost: the cost does not follow the table ----------------------------------------


@pytest.mark.parametrize("rows", [200, 2000])
def test_with_nothing_lost_a_cycle_makes_at_most_three_requests_and_reads_no_row(
    rows: int,
) -> None:
    # Given a cached table in step with Supabase, quiet for longer than the overlap
    setup = Setup(rows)
    setup.clock.advance(600)
    # When the first cycle runs (it also finds that the table has updated_at), then a second
    first, second = setup.cycle(), None
    first_requests, first_rows = setup.source.requests, setup.source.rows_read
    second = setup.cycle()
    # Then each asks Supabase at most three times and reads no row, whatever the size
    assert first.outcome == second.outcome == "done"
    assert first_requests <= 3 and first_rows == 0
    assert setup.source.requests <= 2 and setup.source.rows_read == 0
    assert first.change_column == "updated_at"
    assert first.healed == second.healed == 0 and not setup.queue.bodies


def test_a_quiet_table_is_not_rescanned_once_the_overlap_has_passed() -> None:
    # Given 20 rows changed (webhooks delivered) a minute ago, and a first cycle that saw them
    setup = Setup(100)
    for key in range(1, 21):
        setup.put(key, title="edited")
    setup.fill()  # the cache has them, as if each webhook had landed
    setup.clock.advance(60)
    seen = setup.cycle()
    # When cycles run every minute until one runs a whole overlap after them
    reads = []
    for _ in range(setup.settings.reconcile_overlap_s // 60 + 1):
        setup.clock.advance(60)
        reads.append(setup.cycle().scan_keys)
    # Then each cycle re-read their keys while one of their transactions could still have
    # been committing (they might have been lost), healed nothing, and the last read nothing
    assert seen.scan_keys == 20 and seen.healed == 0
    assert reads[:-1] == [20] * (len(reads) - 1)
    assert reads[-1] == 0 and setup.source.rows_read == 0


# ----- lost inserts and updates: the change column ---------------------------------------------


def test_a_cycle_killed_between_its_heal_writes_and_their_publish_is_listed_next_cycle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a cached table, and 3 updates whose webhooks were lost
    setup = Setup(50)
    setup.clock.advance(30)
    for key in (10, 20, 30):
        setup.put(key, title="edited")
    setup.clock.advance(setup.settings.reconcile_settle_s + 1)

    # When a cycle writes their rows and is killed before it publishes them
    def killed(*args: Any, **kwargs: Any) -> Any:
        raise Crash("the consumer timed out")

    monkeypatch.setattr("waituntil.sync.heal_scan.publish_rows", killed)
    with pytest.raises(Crash):
        setup.cycle()
    monkeypatch.undo()
    assert get_item(setup.store, "articles", 10) == setup.source.table[10]
    assert not setup.converged()  # the items are healed, the list is not
    # Then the next cycle lists them, although its scan finds their items already healed
    report = setup.cycle()
    assert report.outcome == "done"
    assert setup.converged()


def _webhook(setup: Setup, key: int) -> None:
    """The change path: the row's UPDATE webhook delivered and processed."""
    change = Change.model_validate(
        {
            "type": "UPDATE",
            "schema": "public",
            "table": "articles",
            "key": key,
            "received_at": setup.clock.now.isoformat(),
            "correlation_id": f"w-{key}",
        }
    )
    setup.queue.bodies.append(change.to_message())
    setup.drain()


def test_a_row_updated_in_place_and_listed_is_not_published_again_by_the_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a cached table whose row 7 was updated in place (same order value) three times,
    # each webhook delivered and listed: its item keeps two position tags at one place (a
    # publish prunes a single stale tag at the row's own place lazily, at its next update)
    setup = Setup(50, order="rank")
    setup.clock.advance(600)
    setup.cycle()
    for title in ("first", "second", "third"):
        setup.clock.advance(5)
        setup.put(7, title=title, rank=7 % 7)
        _webhook(setup, 7)
    state = setup.store.get_rows("articles", ["7"])["7"]
    assert len(state.positions) == 2 and setup.converged()
    published: list[list[str]] = []
    publish = list_publish.publish_rows

    def spy(table: str, keys: list[str], ports: ConsumerPorts, **kwargs: Any) -> Any:
        published.append(list(keys))
        return publish(table, keys, ports, **kwargs)

    monkeypatch.setattr("waituntil.sync.heal_scan.publish_rows", spy)
    # When the next cycles run, the row settled and still in the overlap window
    for _ in range(2):
        setup.clock.advance(60)
        report = setup.cycle()
        assert report.outcome == "done" and report.scan_keys >= 1
    # Then the scan publishes nothing: the row is listed already (no difference, no read)
    assert published == []
    assert setup.converged()


def test_a_killed_cycles_in_place_heals_are_still_listed_by_the_pending_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given row 7 updated in place twice, listed; then an in-place update whose webhook was
    # lost, healed by a cycle killed before its publish (its item now carries tags at one place)
    setup = Setup(50, order="rank")
    setup.clock.advance(600)
    setup.cycle()
    for title in ("first", "second"):
        setup.clock.advance(5)
        setup.put(7, title=title, rank=0)
        _webhook(setup, 7)
    setup.clock.advance(5)
    setup.put(7, title="lost", rank=0)
    setup.clock.advance(setup.settings.reconcile_settle_s + 1)

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise Crash("the consumer timed out")

    monkeypatch.setattr("waituntil.sync.heal_scan.publish_rows", killed)
    with pytest.raises(Crash):
        setup.cycle()
    monkeypatch.undo()
    assert get_item(setup.store, "articles", 7) == setup.source.table[7]
    assert not setup.converged()
    # When the next cycle runs / Then its pending keys list the healed row
    setup.clock.advance(60)
    assert setup.cycle().outcome == "done"
    assert setup.converged()


def test_lost_inserts_and_updates_are_healed_by_the_scan_in_one_cycle() -> None:
    # Given a cached table; then 3 inserts and 3 updates whose webhooks were lost
    setup = Setup(300)
    setup.clock.advance(30)
    for key in (301, 302, 303):
        setup.put(key)
    for key in (10, 20, 30):
        setup.put(key, title="edited")
    # When a cycle runs a settle time later
    setup.clock.advance(setup.settings.reconcile_settle_s + 1)
    report = setup.cycle()
    # Then all six are healed at once (no follow-up needed), reading about twice their number
    assert report.healed == 6
    assert setup.converged()
    assert setup.source.rows_read <= 2 * 6 + 100


def test_a_change_younger_than_the_settle_time_waits_for_the_next_cycle() -> None:
    # Given an update made 2 s ago (its webhook may still be in flight)
    setup = Setup(100)
    setup.clock.advance(60)
    setup.put(5, title="edited")
    setup.clock.advance(2)
    # When a cycle runs now, and another one period later
    now = setup.cycle()
    setup.clock.advance(60)
    later = setup.cycle()
    # Then the first leaves it alone and the next heals it: it was lost after all
    assert now.healed == 0
    assert later.healed == 1 and setup.converged()


@pytest.mark.parametrize("order", [None, "rank.desc"])
@pytest.mark.parametrize("young_insert", ["lost", "in flight"])
def test_a_lost_delete_is_found_in_the_cycle_even_beside_an_insert_younger_than_the_settle_time(
    order: str | None, young_insert: str
) -> None:
    # Given a cached table; a delete whose webhook was lost; then, 5 s before the next cycle,
    # an insert elsewhere in the list, its webhook lost or still in flight: the whole table's
    # count is the cache's again, and the scan leaves the young insert for later
    setup = Setup(300, order=order)
    setup.clock.advance(600)
    setup.cycle()
    setup.clock.advance(30)
    setup.source.delete(40)
    setup.clock.advance(25)
    setup.put(301, rank=None)
    setup.clock.advance(5)
    # When the cycle runs (and the insert's webhook lands, if it was in flight)
    report = setup.cycle()
    if young_insert == "in flight":
        insert = Change.model_validate(
            {
                "type": "INSERT",
                "schema": "public",
                "table": "articles",
                "key": 301,
                "record": setup.source.table[301],
                "received_at": setup.clock.now.isoformat(),
                "correlation_id": "webhook",
            }
        )
        setup.queue.bodies.insert(0, insert.to_message())
    # Then this cycle found the delete (not the next one, a period later), and its follow-up,
    # after the settle time, heals it
    assert report.to_check == 1
    setup.drain()
    assert get_item(setup.store, "articles", 40) is None
    # And the insert, if its webhook was lost, is the next cycle's (it is old enough then)
    setup.clock.advance(60)
    setup.cycle()
    setup.drain()
    assert setup.converged()


def test_an_update_healed_whose_list_switch_failed_is_published_by_the_next_cycle() -> None:
    # Given a cached table and a lost update of row 5 (its order column changed, so the list
    # must move it); the cycle that heals it writes the row item, then its list's switch
    # fails (DynamoDB answers an error, and the switch did not apply): the cycle fails with
    # the item right and the list still holding the old row
    from tests.fakes import AnswerLost

    setup = Setup(300, order="rank")
    setup.clock.advance(600)
    setup.cycle()
    setup.clock.advance(30)
    setup.put(5, title="edited", rank=6)
    setup.clock.advance(30)
    flip_head = setup.store.flip_head

    def fail(*args: Any, **kwargs: Any) -> bool:
        setup.store.flip_head = flip_head  # type: ignore[method-assign]
        raise AnswerLost("flip_head failed and did not apply")

    setup.store.flip_head = fail  # type: ignore[method-assign]
    failed = setup.cycle()
    assert failed.outcome == "failed"
    assert get_item(setup.store, "articles", 5) == setup.source.table[5]
    assert not setup.converged()
    # When the next cycle runs
    setup.clock.advance(60)
    setup.cycle()
    setup.drain()
    # Then it publishes the row the item already holds: the list equals the table
    assert setup.converged()


def test_a_transaction_that_commits_after_the_scan_with_an_older_time_is_healed() -> None:
    # Given a cycle at t; a transaction that began at t - 90 s commits its row only after that
    # cycle scanned (commit order is not timestamp order), and its webhook is lost
    setup = Setup(100)
    setup.clock.advance(600)
    began = setup.clock.now - timedelta(seconds=90)
    setup.cycle()
    setup.put(7, at=began, title="late commit")
    # When the next cycle runs
    setup.clock.advance(60)
    report = setup.cycle()
    # Then its scan (from the last one's time less the overlap) finds and heals it
    assert report.healed == 1 and setup.converged()


def test_a_commit_later_than_the_overlap_is_left_to_the_counts_and_the_backstop() -> None:
    # Given an overlap of 60 s and an update whose transaction began 10 minutes before it
    # committed, after the last scan (the overlap does not cover it)
    setup = Setup(100, overlap_s=60)
    setup.clock.advance(600)
    setup.cycle()
    setup.put(7, at=setup.clock.now - timedelta(minutes=10), title="very late")
    setup.clock.advance(60)
    # When the next cycle runs
    report = setup.cycle()
    # Then the scan misses it (an update changes no count): the full resync heals it
    assert report.healed == 0 and not setup.converged()
    setup.fill()
    assert setup.converged()


# ----- lost deletes: counts, bisection, a follow-up --------------------------------------------


@pytest.mark.parametrize("order", [None, "rank", "rank.desc"])
@pytest.mark.parametrize("lost", ["deletes", "inserts"])
def test_lost_deletes_and_unstamped_inserts_are_found_by_counts_and_healed_after_settling(
    order: str | None, lost: str
) -> None:
    # Given a cached table of 1,000 rows (ordered by key, or by a column with nulls), then 5
    # deletes, or 5 inserts whose change column the scan does not see (stamped a day ago), all
    # with their webhooks lost
    setup = Setup(1000, order=order)
    setup.put(500, rank=None)  # a null in the order column
    setup.fill()
    setup.clock.advance(600)
    if lost == "deletes":
        for key in (3, 250, 251, 600, 999):
            setup.source.delete(key)
    else:
        for key, rank in zip((1001, 1002, 1003, 1004, 1005), (None, 3, 0, 6, None), strict=True):
            setup.put(key, at=START - timedelta(days=1), rank=rank)
    # When a cycle runs
    report = setup.cycle()
    # Then it finds exactly those keys, writes nothing yet, and queues one follow-up delayed
    # by the settle time
    assert report.to_check == 5 and report.healed == 0
    assert list(setup.queue.delays.values()) == [setup.settings.reconcile_settle_s]
    assert not setup.converged()
    # And when the follow-up runs, the cache equals the table
    setup.drain()
    assert setup.converged()
    # Cost: O(d log n) requests, about d rows read
    d, n = 5, 1005
    assert report.requests <= d * (math.log2(n) + 2) + 3
    assert report.rows_read <= 2 * d + 100


def test_a_lost_delete_and_a_lost_insert_in_one_range_cancel_out_until_the_full_resync() -> None:
    # Given a lost delete and a lost insert side by side, the insert unstamped
    setup = Setup(300)
    setup.clock.advance(600)
    setup.source.delete(300)
    setup.put(301, at=START - timedelta(days=1))
    # When a cycle runs
    report = setup.cycle()
    setup.drain()
    # Then the counts agree and nothing is found: what counts cannot see is left to the full
    # resync (the backstop), which heals it
    assert report.to_check == 0 and not setup.converged()
    setup.fill()
    assert setup.converged()


def test_a_webhook_in_flight_is_not_counted_as_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a delete the cycle sees before its webhook lands
    healed: list[int] = []
    monkeypatch.setattr(
        "waituntil.sync.reconcile.record_healed", lambda _table, rows: healed.append(rows)
    )
    setup = Setup(200)
    setup.clock.advance(600)
    setup.source.delete(50)
    report = setup.cycle()
    assert report.to_check == 1
    # When the webhook lands within the settle time, then the follow-up runs
    delete = Change.model_validate(
        {
            "type": "DELETE",
            "schema": "public",
            "table": "articles",
            "key": 50,
            "received_at": START.isoformat(),
            "correlation_id": "webhook",
        }
    )
    setup.queue.bodies.insert(0, delete.to_message())
    setup.drain()
    # Then the cache is right, and nothing was counted as healed
    assert setup.converged()
    assert sum(healed) == 0


def test_a_count_that_fails_deletes_nothing_and_fails_that_cycle_alone() -> None:
    # Given 3 lost deletes and a Supabase that refuses counts
    setup = Setup(300)
    setup.clock.advance(600)
    for key in (1, 2, 3):
        setup.source.delete(key)

    def refuse(*_: Any) -> list[int]:
        raise SourceUnavailable("count refused (503)")

    original = setup.source.count_rows
    setup.source.count_rows = refuse  # type: ignore[method-assign,assignment]
    # When a cycle runs
    report = setup.cycle()
    # Then it fails with the reason, writes and deletes nothing, and holds no lease
    assert report.outcome == "failed" and "count refused" in report.reason
    assert get_item(setup.store, "articles", 1) is not None
    assert setup.store.lease_holder("articles", LEASE_RECONCILE) is None
    # And the next cycle, with counts back, heals them
    setup.source.count_rows = original  # type: ignore[method-assign]
    setup.cycle()
    setup.drain()
    assert setup.converged()


# (fault, the source method that fails, which of its calls fails first, fingerprinted table)
MID_CYCLE_FAULTS = [
    ("the whole table's count refused", "count_rows", 1, False),
    ("a count timing out mid-bisection", "count_rows", 2, False),
    ("the fingerprint function failing", "fingerprint_ranges", 1, True),
    ("the change column's scan timing out", "changed_since", 1, False),
    ("a range's keys cut off mid-read", "positions_in_range", 1, False),
    ("a read by key timing out", "read_rows", 1, False),
]


@pytest.mark.parametrize(
    ("fault", "method", "failing_call", "fingerprinted"),
    MID_CYCLE_FAULTS,
    ids=[case[0] for case in MID_CYCLE_FAULTS],
)
def test_a_supabase_fault_mid_cycle_fails_that_cycle_alone_counted_logged_and_deletes_nothing(
    fault: str,
    method: str,
    failing_call: int,
    fingerprinted: bool,
    captured_logs: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from waituntil.core.observability import metrics

    # Given a cached table, then lost changes: 10 deletes and an update (of a table with a
    # change column, or one reconciled by fingerprints)
    setup = _fingerprinted(300) if fingerprinted else Setup(300)
    setup.clock.advance(600)
    setup.cycle()  # the scan's starting point, and the fingerprints' sums
    state_before = setup.store.get_heal_state("articles")
    cached_before = get_list(setup.store, "articles")
    setup.clock.advance(60)
    for key in range(100, 110):
        setup.source.delete(key)
    setup.put(5, title="edited")
    setup.clock.advance(30)  # past the settle time: the scan takes the update at once
    # And a Supabase that fails from the given call of one read on, as a refused request or
    # a timeout does (the adapter raises SourceUnavailable for both)
    original = getattr(setup.source, method)
    calls = itertools.count(1)

    def failing(*args: Any, **kwargs: Any) -> Any:
        if next(calls) >= failing_call:
            raise SourceUnavailable(f"reading articles from Supabase failed: {fault}")
        return original(*args, **kwargs)

    setattr(setup.source, method, failing)
    metrics.clear_metrics()
    capsys.readouterr()
    # When a cycle runs
    report = setup.cycle()
    # Then the fault was met, and that cycle failed alone, with its reason, raising nothing
    assert next(calls) > failing_call, "the fault was never reached"
    assert report.outcome == "failed" and fault in report.reason
    # And it is counted (ReconcileFailures, also per table: what the alarm and the dashboard
    # read) and logged with the table and the reason
    assert list(metrics.metric_set["ReconcileFailures"]["Value"]) == [1]
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    per_table = [m for m in emitted if "ReconcileFailures" in m and m.get("table") == "articles"]
    assert per_table, emitted
    logged = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    assert any(line["message"] == "reconcile failed" and fault in line["reason"] for line in logged)
    # And nothing cached was deleted (the scan may have healed the update before the fault:
    # what it wrote was read and checked row by row), and no follow-up was queued
    listed = get_list(setup.store, "articles") or []
    assert [row["id"] for row in listed] == [row["id"] for row in cached_before or []]
    for key in range(100, 110):
        assert get_item(setup.store, "articles", key) is not None
    assert not any(Change.from_message(body).heal for body in setup.queue.bodies)
    # And the table is not shown as reconciled: its age goes on growing, the lease is free
    # (the state may name the keys the scan was healing: the next cycle publishes them)
    after = setup.store.get_heal_state("articles")
    assert after is not None and set(after.pending) <= {"5"}
    assert replace(after, pending=()) == state_before
    assert setup.store.lease_holder("articles", LEASE_RECONCILE) is None
    # And the next cycle, with Supabase back, heals everything
    setattr(setup.source, method, original)
    setup.clock.advance(60)
    setup.cycle()
    setup.drain()
    assert setup.converged()


def test_a_follow_up_whose_read_is_cut_short_deletes_nothing() -> None:
    # Given a follow-up for three keys that all exist, and a read by key that returns one of
    # them only (a project's max-rows cutting the answer short)
    setup = Setup(50)
    full = setup.source.read_rows

    def truncated(table: str, keys: Sequence[str]) -> list[dict[str, Any]]:
        return full(table, keys)[:1]

    setup.source.read_rows = truncated  # type: ignore[method-assign]
    from waituntil.sync.reconcile import check_keys

    # When it runs
    check_keys("articles", ["1", "2", "3"], setup.ports)
    # Then the two rows it did not see are still cached: absence is confirmed before a delete
    assert get_item(setup.store, "articles", 2) == setup.source.table[2]
    assert get_item(setup.store, "articles", 3) == setup.source.table[3]


def test_more_differences_than_a_cycle_may_read_request_a_full_sync() -> None:
    # Given half the table deleted behind the cache's back, and a budget of 100 keys a cycle
    setup = Setup(600)
    setup.settings = setup.settings.model_copy(update={"reconcile_max_keys": 100})
    setup.ports = ConsumerPorts(
        setup.settings, setup.source, setup.store, setup.queue, clock_ns=setup.clock
    )
    setup.clock.advance(600)
    for key in range(1, 301):
        setup.source.delete(key)
    # When a cycle runs
    report = setup.cycle()
    # Then it reads no more than its budget and asks the backstop for a full sync instead
    assert report.full_sync_requested
    assert report.rows_read <= 100
    setup.drain()
    assert setup.converged()


@pytest.mark.parametrize("lost", ["deletes", "updates"])
def test_no_cycle_reads_the_whole_table(lost: str) -> None:
    # Given a table of 400 rows and a cycle budget larger than the table, then most of it
    # changed behind the cache's back: 300 rows deleted, or every row updated (a bulk update
    # whose webhooks were all lost)
    setup = Setup(400)
    setup.clock.advance(600)
    setup.cycle()
    setup.clock.advance(30)
    if lost == "deletes":
        for key in range(1, 301):
            setup.source.delete(key)
    else:
        for key in range(1, 401):
            setup.put(key, title="bulk")
    setup.clock.advance(30)
    # When cycles run, one after another
    reports = []
    for _ in range(6):
        reports.append(setup.cycle())
        setup.drain()
        setup.clock.advance(60)
    # Then none read as many rows (keys included) as the table holds, at most half of it (the
    # scan goes on where it stopped at the next cycle), and the cache converges
    assert max(report.rows_read for report in reports) <= 400 // 2
    assert setup.converged()


def test_a_bulk_update_larger_than_a_cycles_budget_is_healed_over_the_next_cycles() -> None:
    # Given a budget of 100 rows a cycle, and one statement updating 300 rows, its webhooks
    # lost: every row carries the same updated_at (the transaction's start)
    setup = Setup(300)
    setup.settings = setup.settings.model_copy(update={"reconcile_max_keys": 100})
    setup.ports = ConsumerPorts(
        setup.settings, setup.source, setup.store, setup.queue, clock_ns=setup.clock
    )
    setup.clock.advance(600)
    setup.cycle()
    setup.clock.advance(30)
    for key in range(1, 301):
        setup.put(key, title="bulk")
    setup.clock.advance(30)
    # When cycles run, a period apart
    healed = []
    for _ in range(8):
        healed.append(setup.cycle().healed)
        setup.clock.advance(60)
    # Then each goes on past the last row the one before read (not from the same time again,
    # which would read the same rows), and together they heal all 300
    assert sum(healed) == 300
    assert setup.converged()


# ----- tables without a change column ------------------------------------------------------


def test_without_a_change_column_counts_still_heal_inserts_and_deletes() -> None:
    # Given a table without updated_at, then lost inserts, a lost delete and a lost update
    setup = Setup(400, with_column=False)
    setup.clock.advance(600)
    setup.put(401)
    setup.put(402)
    setup.source.delete(7)
    setup.put(8, title="edited")
    # When cycles run (the first finds there is no change column)
    first = setup.cycle()
    setup.drain()
    # Then the insert and the delete are healed; the update waits for the full resync
    assert first.change_column is None
    assert get_item(setup.store, "articles", 401) == setup.source.table[401]
    assert get_item(setup.store, "articles", 7) is None
    assert get_item(setup.store, "articles", 8) != setup.source.table[8]
    setup.fill()
    assert setup.converged()


def test_a_policy_naming_a_column_the_table_lacks_fails_each_cycle_with_the_reason() -> None:
    # Given a policy whose change column the table does not have
    setup = Setup(50, changed_at="modified_at")
    setup.clock.advance(600)
    # When a cycle runs
    report = setup.cycle()
    # Then it fails alone, saying which column of which table, and raises nothing
    assert report.outcome == "failed"
    assert "modified_at" in report.reason and "articles" in report.reason


# ----- one at a time (H5), and the fill's completeness (I6) --------------------------------


def test_a_second_reconcile_finds_the_lease_held_and_does_nothing() -> None:
    # Given a cycle holding the table's reconcile lease
    setup = Setup(50)
    assert setup.store.acquire_lease("articles", LEASE_RECONCILE, "other", 120)
    setup.source.delete(1)
    # When another cycle starts
    report = setup.cycle()
    # Then it exits without asking Supabase anything
    assert report.outcome == "skipped" and setup.source.requests == 0
    # And once the holder's lease has expired (it died), a cycle runs
    setup.store.seconds += 121
    assert setup.cycle().outcome == "done"


def test_no_reconcile_runs_while_a_full_sync_holds_the_table() -> None:
    setup = Setup(50)
    assert setup.store.acquire_lease("articles", LEASE_SYNC, "a-sync", 900)
    report = setup.cycle()
    assert report.outcome == "skipped" and setup.source.requests == 0


def test_a_reconcile_of_a_table_still_filling_never_shows_it_complete() -> None:
    # Given a table whose first fill has written one page, and a lost delete in it
    setup = Setup(0)
    for key in range(1, 40):
        setup.put(key)
    from waituntil.sync.full_sync import ensure_fill, full_sync

    setup.store.heads.clear()
    ensure_fill("articles", setup.ports)
    fill = Change.from_message(setup.queue.bodies.pop())
    assert fill.sync is not None
    assert setup.store.acquire_lease("articles", LEASE_SYNC, fill.sync.sync_id, 900)
    pages = itertools.count()
    full_sync("articles", fill.sync, setup.ports, lambda: 10**9 if next(pages) < 1 else 0)
    setup.queue.bodies.clear()  # its continuation, not run yet
    setup.store.release_lease("articles", LEASE_SYNC, fill.sync.sync_id)  # as if it died
    head = setup.store.get_head("articles")
    assert head is not None and not head.complete
    # When a cycle runs
    report = setup.cycle()
    # Then it leaves the list incomplete (the fill finishes it) and makes sure a fill runs
    assert report.outcome == "filling"
    head = setup.store.get_head("articles")
    assert head is not None and not head.complete


def test_a_scheduled_resync_during_a_running_fill_starts_no_second_sync() -> None:
    # Given a full sync of the table between two of its invocations (it holds the lease; its
    # continuation is on the queue)
    setup = Setup(100)
    first = Change.model_validate(
        {**_table_message("RESYNC").model_dump(by_alias=True), "correlation_id": "first"}
    )
    pages = itertools.count()
    resync(first, setup.ports, lambda: 10**9 if next(pages) < 1 else 0)
    continuation = setup.queue.bodies.pop()
    # When the scheduled RESYNC of every table arrives
    outcome = process_batch(
        [QueuedMessage("s", _table_message("RESYNC", table="*", correlation="sched").to_message())],
        setup.ports,
        lambda: 10**9,
    )
    # Then it queues no second sync of that table
    assert not outcome.failures
    assert setup.queue.bodies == []
    # And the first sync goes on to the end
    setup.queue.bodies.append(continuation)
    setup.drain()
    assert setup.converged()
    assert setup.store.lease_holder("articles", LEASE_SYNC) is None


def test_reconcile_of_every_table_is_one_message_per_table() -> None:
    setup = Setup(10)
    outcome = process_batch(
        [QueuedMessage("r", _table_message("RECONCILE", table="*").to_message())],
        setup.ports,
        lambda: 10**9,
    )
    assert not outcome.failures
    sent = [Change.from_message(body) for body in setup.queue.bodies]
    assert [(change.type, change.table) for change in sent] == [("RECONCILE", "articles")]


# ----- fingerprints (a table without a change column) ------------------------------------------


def _fingerprinted(rows: int, **setup: Any) -> Setup:
    return Setup(rows, with_column=False, changed_at=False, fingerprint=True, **setup)


@pytest.mark.parametrize("order", [None, "rank.desc"])
def test_with_fingerprints_lost_updates_and_cancelling_changes_are_found(order: str | None) -> None:
    # Given a table without a change column, reconciled by fingerprints, then lost changes:
    # two updates, and a delete beside an insert (which counts alone cannot see)
    setup = _fingerprinted(600, order=order)
    setup.clock.advance(600)
    setup.put(10, title="edited", rank=3)
    setup.put(400, title="edited too", rank=None)
    setup.source.delete(599)
    setup.put(601, rank=5)
    # When a cycle runs, and its follow-up
    report = setup.cycle()
    setup.drain()
    # Then every one is found and healed, reading a few rows per difference
    assert report.to_check == 4
    assert setup.converged()
    assert report.rows_read <= 2 * 4 + 100


def test_with_fingerprints_nothing_lost_is_one_request_and_no_row() -> None:
    # Given a table reconciled by fingerprints, in step
    setup = _fingerprinted(500)
    setup.clock.advance(600)
    setup.cycle()  # sums the cached nodes once, and keeps the sums beside them
    # When a cycle runs
    report = setup.cycle()
    # Then it asks the database once (the whole table's count and fingerprint), reads no row
    assert report.outcome == "done" and report.to_check == 0
    assert setup.source.requests == 1 and setup.source.rows_read == 0


def test_without_the_fingerprint_function_a_table_falls_back_to_counts() -> None:
    # Given a table whose policy asks for fingerprints, in a project without the function
    setup = _fingerprinted(300)
    setup.source.fingerprint_function = False
    setup.clock.advance(600)
    setup.put(5, title="edited")
    setup.source.delete(6)
    # When a cycle runs
    report = setup.cycle()
    setup.drain()
    # Then it does not fail: counts heal the delete; the update waits for the full resync
    assert report.outcome == "done"
    assert get_item(setup.store, "articles", 6) is None
    assert get_item(setup.store, "articles", 5) != setup.source.table[5]


def test_the_heal_state_survives_its_dynamodb_item() -> None:
    from waituntil.cache.items import heal_state_from_item, heal_state_to_item
    from waituntil.cache.model import HealState

    # Given a state whose last scan was cut short past a key, and a fresh one
    cut = HealState(
        "articles",
        scan_from="2026-11-29T12:00:00.000000+00:00",
        scan_after='"slug-7"',
        change_column="updated_at",
        column_checked_ns=5,
        last_ok_ns=6,
        healed_total=7,
        print_version="v1",
        print_count=8,
        print_fp=9,
    )
    # When each is written as its item and read back / Then nothing is lost
    for state in (cut, HealState("articles")):
        assert heal_state_from_item("articles", heal_state_to_item(state)) == state


class CycleSavesMeanwhile:
    """The store, with a cycle saving its ``pending`` keys at the worst moment for a
    follow-up's count: between the follow-up's read of the heal state and its write (a
    read-modify-put), or just before its write (an attribute of its own)."""

    def __init__(self, store: Any, pending: tuple[str, ...]) -> None:
        self._store, self._pending, self._saved = store, pending, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _cycle_saves(self, table: str) -> None:
        if not self._saved:
            self._saved = True
            state = self._store.get_heal_state(table) or HealState(table)
            self._store.put_heal_state(replace(state, pending=self._pending))

    def get_heal_state(self, table: str) -> Any:
        state = self._store.get_heal_state(table)
        self._cycle_saves(table)
        return state

    def add_healed(self, table: str, count: int) -> None:
        self._cycle_saves(table)
        self._store.add_healed(table, count)


def test_a_follow_ups_count_never_overwrites_the_pending_keys_a_cycle_saved_meanwhile() -> None:
    # Given a cached table with a lost update of row 3, checked by a follow-up (no lease)
    setup = Setup(50)
    setup.clock.advance(30)
    setup.put(3, title="edited")
    store = CycleSavesMeanwhile(setup.store, ("8", "9"))
    ports = replace(setup.ports, store=store)
    # When the follow-up heals it while a cycle saves its pending keys at that moment
    report = check_keys("articles", ["3"], ports)
    # Then both writes stand: the cycle's pending keys and the follow-up's count
    assert report.healed == 1
    state = setup.store.get_heal_state("articles")
    assert state is not None and state.pending == ("8", "9") and state.healed_total == 1
