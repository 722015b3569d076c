"""Row-level faults on fakes: a key that changes, a row write that fails, a tombstone that
expires, a clock taken late, a read cut short. Each converges, or fails its record so that
SQS retries it; none leaves the cache silently wrong."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from tests.fakes import FailingRows, MemoryQueue, MemorySource, MemoryStore
from waituntil.cache.model import FreshRow, RowFailure, RowFailureReason
from waituntil.core.contracts import Change, SyncProgress
from waituntil.core.errors import RowTooLarge, RowWriteFailed, RowWritesFailed
from waituntil.core.list_order import ListOrder
from waituntil.core.observability import metrics
from waituntil.core.settings import ConsumerSettings
from waituntil.core.whole_reads import read_whole
from waituntil.read.cache_client import get_item, get_list
from waituntil.sync.batch import QueuedMessage, process_batch
from waituntil.sync.full_sync import full_sync
from waituntil.sync.ports import ConsumerPorts
from waituntil.sync.row_changes import apply_changes

ORDER = ListOrder("id")


def _row(key: int, title: str = "") -> dict[str, Any]:
    return {"id": key, "title": title or f"article {key}", "pad": "x" * 300}


def _ports(source: Any, store: Any, queue: MemoryQueue | None = None) -> ConsumerPorts:
    settings = ConsumerSettings.model_validate(
        {
            "CACHE_TABLE_NAME": "cache",
            "SUPABASE_URL": "http://supabase.invalid",
            "SUPABASE_KEY_SECRET_NAME": "key",
            "QUEUE_URL": "http://queue.invalid",
            "CACHED_TABLES": "articles",
            "SUPABASE_PAGE_SIZE": "4",
            "LIST_CHUNK_BYTES": "1024",
            "LIST_INDEX_REFS": "4",
        }
    )
    clock = itertools.count(1000)
    return ConsumerPorts(
        settings, source, store, queue or MemoryQueue(), clock_ns=lambda: next(clock)
    )


def _change(key: int | str | None, kind: str = "UPDATE", **fields: Any) -> Change:
    return Change.model_validate(
        {
            "type": kind,
            "schema": "public",
            "table": "articles",
            "key": key,
            "received_at": "2026-11-29T00:00:00Z",
            "correlation_id": "c",
            **fields,
        }
    )


def _synced(keys: Sequence[int]) -> tuple[MemorySource, MemoryStore, ConsumerPorts]:
    """A table of ``keys`` and a cache a full sync brought in step with it."""
    source, store = MemorySource(), MemoryStore()
    for key in keys:
        source.put(_row(key))
    ports = _ports(source, store)
    assert full_sync("articles", SyncProgress(sync_id="fill"), ports, lambda: 10**9) is None
    assert get_list(store, "articles") == source.rows(ORDER)
    return source, store, ports


def _fail_once(keys: set[str]) -> Callable[[str], RowFailure | None]:
    """A row fault: the first write of each of ``keys`` fails on a dependency."""
    pending = set(keys)

    def fault(key: str) -> RowFailure | None:
        if key in pending:
            pending.discard(key)
            return RowFailure(RowFailureReason.DEPENDENCY_FAILED, f"row {key}: DynamoDB 500")
        return None

    return fault


def _metric(name: str) -> float:
    entry = metrics.metric_set.get(name)
    return sum(entry["Value"]) if entry else 0.0


@pytest.fixture
def clean_metrics() -> Any:
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


# ----- defect 2: an UPDATE that changes the key ------------------------------------------------


def test_an_update_that_changes_the_key_converges_the_old_key_too() -> None:
    # Given a cache in step with rows 1..6
    source, store, ports = _synced(range(1, 7))
    # When Supabase runs UPDATE articles SET id = 30 WHERE id = 3, and its webhook arrives
    source.delete(3)
    source.put(_row(30))
    change = _change(30, old_key=3)
    apply_changes("articles", [change], ports)
    # Then row 3 is gone, item and list, and 30 is there: no phantom row
    assert get_item(store, "articles", 3) is None
    assert get_item(store, "articles", 30) == _row(30)
    assert get_list(store, "articles") == source.rows(ORDER)


def test_a_renamed_policy_key_converges_both_slugs() -> None:
    # Given a table keyed by a slug (its policy's key), cached in step
    source, store = MemorySource(primary_key="slug"), MemoryStore()
    for slug in ("alpha", "beta", "gamma"):
        source.put({"slug": slug, "title": slug})
    settings = ConsumerSettings.model_validate(
        {
            "CACHE_TABLE_NAME": "cache",
            "SUPABASE_URL": "http://supabase.invalid",
            "SUPABASE_KEY_SECRET_NAME": "key",
            "QUEUE_URL": "http://queue.invalid",
            "CACHED_TABLES": "articles",
            "TABLE_POLICIES": '{"articles": {"key": "slug"}}',
        }
    )
    clock = itertools.count(1000)
    ports = ConsumerPorts(settings, source, store, MemoryQueue(), clock_ns=lambda: next(clock))
    full_sync("articles", SyncProgress(sync_id="fill"), ports, lambda: 10**9)
    # When "beta" is renamed "bravo" (one UPDATE, whose old_record still says "beta")
    source.delete("beta")
    source.put({"slug": "bravo", "title": "beta"})
    apply_changes("articles", [_change("bravo", old_key="beta")], ports)
    # Then the cache holds "bravo" and no longer "beta"
    assert get_item(store, "articles", "beta") is None
    assert [row["slug"] for row in get_list(store, "articles") or []] == [
        "alpha",
        "bravo",
        "gamma",
    ]


def test_a_failed_old_key_fails_the_changes_record() -> None:
    # Given a cached row 3 renamed to 30 in Supabase, and the old key's tombstone write failing
    source, store, ports = _synced(range(1, 5))
    source.delete(3)
    source.put(_row(30))
    ports = replace(ports, store=FailingRows(store, _fail_once({"3"})))
    # When the change's batch runs
    outcome = process_batch(
        [QueuedMessage("m1", _change(30, old_key=3).to_message())], ports, lambda: 10**9
    )
    # Then its record fails (SQS retries it), typed as a dependency failure
    assert isinstance(outcome.failures["m1"], RowWriteFailed)
    # And its retry converges both keys
    retry = process_batch(
        [QueuedMessage("m1", _change(30, old_key=3).to_message())], ports, lambda: 10**9
    )
    assert retry.failures == {}
    assert get_list(store, "articles") == source.rows(ORDER)


# ----- defect 4: a full sync never swallows a failed row ---------------------------------------


def test_a_row_failing_in_a_full_sync_fails_its_record_and_the_retry_stores_it() -> None:
    # Given 10 rows in Supabase, none cached, and one row write that fails once
    source, store = MemorySource(), MemoryStore()
    for key in range(1, 11):
        source.put(_row(key))
    ports = _ports(source, FailingRows(store, _fail_once({"6"})))
    message = QueuedMessage("r1", _change(None, "RESYNC").to_message())
    # When the RESYNC runs
    outcome = process_batch([message], ports, lambda: 10**9)
    # Then its record fails, and the list is not called complete without row 6
    assert isinstance(outcome.failures.get("r1"), RowWritesFailed)
    head = store.get_head("articles")
    assert head is None or not head.complete or get_item(store, "articles", 6) is not None
    # And SQS's redelivery resumes from the checkpoint and stores row 6
    assert process_batch([message], ports, lambda: 10**9).failures == {}
    assert get_list(store, "articles") == source.rows(ORDER)


def test_a_row_that_can_never_be_stored_is_skipped_named_and_counted(clean_metrics: Any) -> None:
    # Given 10 rows, one of which no retry can store (too large, no blob store)
    source, store = MemorySource(), MemoryStore()
    for key in range(1, 11):
        source.put(_row(key))

    def too_large(key: str) -> RowFailure | None:
        if key == "4":
            return RowFailure(RowFailureReason.TOO_LARGE, "row 4 of articles is too large")
        return None

    ports = _ports(source, FailingRows(store, too_large))
    # When a full sync runs
    assert full_sync("articles", SyncProgress(sync_id="s"), ports, lambda: 10**9) is None
    # Then the list is complete without that row only, and the metric names the skip
    assert get_list(store, "articles") == [row for row in source.rows(ORDER) if row["id"] != 4]
    assert _metric("RowsNotStorable") == 1
    # And a change of that row fails its record alone, with the typed reason
    failed = apply_changes("articles", [_change(4)], ports)
    assert isinstance(failed["4"], RowTooLarge)


def test_a_failed_tombstone_in_the_deletes_phase_fails_the_sync_and_its_retry_unlists() -> None:
    # Given a cache in step with 8 rows, and then row 5 deleted without a webhook
    source, store, ports = _synced(range(1, 9))
    source.delete(5)
    ports = replace(ports, store=FailingRows(store, _fail_once({"5"})))
    message = QueuedMessage("r1", _change(None, "RESYNC").to_message())
    # When a RESYNC runs and row 5's tombstone write fails
    outcome = process_batch([message], ports, lambda: 10**9)
    # Then the record fails: the deleted row is not left listed behind a "done" sync
    assert isinstance(outcome.failures.get("r1"), RowWritesFailed)
    # And the redelivery unlists it
    assert process_batch([message], ports, lambda: 10**9).failures == {}
    assert get_list(store, "articles") == source.rows(ORDER)
    assert get_item(store, "articles", 5) is None


# ----- defect 8: a tombstone that expires never leaves its row listed --------------------------


def test_a_row_whose_tombstone_expired_is_still_unlisted_by_the_next_resync() -> None:
    # Given a cache in step with 8 rows; row 5 is deleted, its tombstone written, but the
    # change died before publishing (the list still holds row 5)
    source, store, ports = _synced(range(1, 9))
    source.delete(5)
    store.write_rows(
        "articles", [FreshRow("5", None, None)], read_at_ns=ports.clock_ns(), order=ORDER
    )
    # And the tombstone then expired (DynamoDB's TTL)
    assert store.expire_tombstones("articles", read_before_ns=ports.clock_ns()) == ["5"]
    # When the scheduled resync runs
    assert full_sync("articles", SyncProgress(sync_id="s"), ports, lambda: 10**9) is None
    # Then row 5 is no longer listed: its new tombstone carried the list position
    assert get_list(store, "articles") == source.rows(ORDER)
    # And a second resync finds nothing more to heal
    assert full_sync("articles", SyncProgress(sync_id="t"), ports, lambda: 10**9) is None
    assert get_list(store, "articles") == source.rows(ORDER)


# ----- defect 9: the deletes phase takes its clock before it reads -----------------------------


class ReinsertDuringExistenceCheck:
    """Supabase, where row ``key`` is re-inserted, and its webhook applied, while the deletes
    phase's existence check is answering (after the answer is computed, before it arrives)."""

    def __init__(self, source: MemorySource, key: int, webhook: Callable[[], object]) -> None:
        self._source, self._key, self._webhook = source, key, webhook
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def existing_keys(self, table: str, keys: Sequence[str]) -> set[str]:
        answer = self._source.existing_keys(table, keys)
        if str(self._key) in keys and str(self._key) not in answer and not self.fired:
            self.fired = True
            self._source.put(_row(self._key, "back again"))
            self._webhook()
        return answer


def test_a_row_reinserted_while_the_deletes_phase_reads_stays_cached() -> None:
    # Given a cache in step with 8 rows, and row 5 deleted in Supabase (its webhook lost)
    source, store, ports = _synced(range(1, 9))
    source.delete(5)
    racing = ReinsertDuringExistenceCheck(
        source, 5, lambda: apply_changes("articles", [_change(5)], ports)
    )
    resync_ports = ConsumerPorts(
        ports.settings, racing, store, ports.queue, clock_ns=ports.clock_ns
    )
    # When a resync's deletes phase reads row 5 as gone, and meanwhile row 5 is re-inserted
    # and its webhook cached it
    assert full_sync("articles", SyncProgress(sync_id="s"), resync_ports, lambda: 10**9) is None
    assert racing.fired
    # Then the cache keeps the re-inserted row: the older existence check lost
    assert get_item(store, "articles", 5) == _row(5, "back again")
    assert get_list(store, "articles") == source.rows(ORDER)


# ----- defect 5: reads cut short by max-rows ---------------------------------------------------


def test_reads_by_key_cut_short_by_max_rows_find_every_row() -> None:
    # Given a project answering at most 4 rows to any read, 10 rows of which 2 are gone
    source = MemorySource(max_rows=4)
    for key in range(1, 11):
        if key not in (3, 8):
            source.put(_row(key))
    keys = [str(key) for key in range(1, 11)]
    # When the consumer reads the 10 keys, and asks which exist
    rows = source.read_rows("articles", keys)
    existing = source.existing_keys("articles", keys)
    # Then every row that exists is found, and only the gone ones are missing
    assert sorted(row["id"] for row in rows) == [1, 2, 4, 5, 6, 7, 9, 10]
    assert existing == {str(key) for key in (1, 2, 4, 5, 6, 7, 9, 10)}


def test_read_whole_asks_again_until_an_answer_finds_none() -> None:
    # Given a source that answers at most 2 of the keys asked, and never "z"
    asked: list[list[str]] = []

    def ask(keys: list[str]) -> dict[str, int]:
        asked.append(keys)
        return {key: len(key) for key in [key for key in keys if key != "z"][:2]}

    # When five keys are read
    found = read_whole(ask, ["a", "bb", "z", "ccc", "dd"])
    # Then all four that exist are found, "z" is not, after an answer that found nothing
    assert found == {"a": 1, "bb": 2, "ccc": 3, "dd": 2}
    assert asked == [["a", "bb", "z", "ccc", "dd"], ["z", "ccc", "dd"], ["z"]]
