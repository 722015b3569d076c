"""A first fill's batched puts and its journal on the real ``CacheStore`` under moto
(``sync/fill_journal``): what a put leaves is what a conditional write leaves, UnprocessedItems
and lost answers are resent safely, large rows keep their S3 path, the journal's conditions
hold on DynamoDB itself, and a whole fill with a racing change converges."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest

from tests.conftest import EmulatedAws
from tests.fakes import MemoryQueue, MemorySource
from tests.faults import LostAnswers, UnprocessedWrites
from waituntil.adapters.aws import PATIENT
from waituntil.adapters.blob_store import S3BlobStore
from waituntil.adapters.cache_store import CacheStore
from waituntil.cache.layout import fresh_rows
from waituntil.cache.model import JournalOutcome
from waituntil.core.contracts import Change, Row, SyncProgress
from waituntil.core.errors import DependencyUnavailable
from waituntil.core.list_order import ListOrder
from waituntil.core.settings import ConsumerSettings
from waituntil.read.cache_client import get_item, get_list
from waituntil.sync.full_sync import full_sync
from waituntil.sync.ports import ConsumerPorts
from waituntil.sync.row_changes import apply_changes

ORDER = ListOrder("id")


def _store(aws: EmulatedAws, client: Any = None, blobs: Any = None) -> CacheStore:
    return CacheStore(
        aws.stack.table_name, client or aws.dynamodb, blobs=blobs, sleep=lambda _: None
    )


def _rows(count: int, start: int = 1) -> list[Row]:
    return [{"id": key, "title": f"t{key}", "pad": "p" * 300} for key in range(start, count + 1)]


def test_a_put_leaves_the_state_a_conditional_write_to_a_new_item_leaves(aws: EmulatedAws) -> None:
    # Given the same new row, put in one table and written conditionally in another, as read
    # at the same time
    store = _store(aws)
    fresh = fresh_rows(["1"], [{"id": 1, "t": "a"}], ORDER)
    put = store.put_rows("articles", fresh, read_at_ns=100, policy="p", tags={})
    written = store.write_rows("others", fresh, read_at_ns=100, order=ORDER, policy="p")
    # Then each answers exactly what a strongly consistent read of its item gives, and the
    # two items hold the same attributes: the publish of a page gets from the puts what the
    # conditional path's ReadBefore would have given
    assert put.states == store.get_rows("articles", ["1"])
    assert written.states == store.get_rows("others", ["1"]) == put.states
    items = [store._get(f"/{table}/1") for table in ("articles", "others")]
    assert items[0] is not None and items[1] is not None
    assert {name: value for name, value in items[0].items() if name != "pk"} == {
        name: value for name, value in items[1].items() if name != "pk"
    }


def test_unprocessed_puts_are_resent_and_the_calls_overlap_on_the_pool(aws: EmulatedAws) -> None:
    # Given a BatchWriteItem that leaves its last request unprocessed three times
    flaky = UnprocessedWrites(aws.dynamodb, times=3)
    store = _store(aws, client=flaky)
    rows = _rows(120)
    # When a page of 120 rows is put
    keys = [str(row["id"]) for row in rows]
    writes = store.put_rows(
        "articles", fresh_rows(keys, rows, ORDER), read_at_ns=100, policy="", tags={}
    )
    # Then 5 calls of at most 25 (on the pool) and 3 resends landed every row
    assert flaky.calls == 5 + 3
    assert writes.written == 120 and not writes.failures
    assert set(store.get_rows("articles", keys)) == set(keys)


def test_puts_left_unprocessed_after_the_retries_fail_their_rows(aws: EmulatedAws) -> None:
    # Given a BatchWriteItem that never processes its last request
    store = _store(aws, client=UnprocessedWrites(aws.dynamodb, times=10**6))
    rows = _rows(30)
    keys = [str(row["id"]) for row in rows]
    # When a page is put / Then those calls' rows fail (the page is retried), never silently
    writes = store.put_rows(
        "articles", fresh_rows(keys, rows, ORDER), read_at_ns=100, policy="", tags={}
    )
    assert set(writes.failures) == set(keys)


@pytest.mark.parametrize("mode", ["500", "timeout"])
def test_a_put_whose_answer_was_lost_is_resent_and_puts_the_same_items(
    aws: EmulatedAws, mode: str
) -> None:
    # Given a patient client whose BatchWriteItem applies, then loses its answer once
    import boto3

    client = boto3.client("dynamodb", region_name="us-east-1", config=PATIENT)
    lost = LostAnswers(client, mode)
    lost.arm(times=1, matching=lambda operation, _: operation == "BatchWriteItem")
    store = _store(aws, client=client)
    rows = _rows(10)
    keys = [str(row["id"]) for row in rows]
    # When a page is put
    writes = store.put_rows(
        "articles", fresh_rows(keys, rows, ORDER), read_at_ns=100, policy="", tags={}
    )
    # Then botocore's resend put the same items again: nothing failed, every row is there
    assert lost.lost and not writes.failures
    assert store.get_rows("articles", keys) == writes.states


def test_a_row_too_large_for_an_item_keeps_its_s3_path_in_a_put_page(aws: EmulatedAws) -> None:
    # Given a page with a 600 KB row that does not compress, and a small one
    blobs = S3BlobStore(aws.stack.blob_bucket, aws.s3)
    store = _store(aws, blobs=blobs)
    big = {"id": 1, "blob": base64.b64encode(os.urandom(450_000)).decode()}
    rows = [big, {"id": 2, "t": "small"}]
    # When the page is put, then put again (a resumed fill) with the same rows
    for _ in range(2):
        writes = store.put_rows(
            "articles", fresh_rows(["1", "2"], rows, ORDER), read_at_ns=100, policy="", tags={}
        )
        assert not writes.failures
    # Then the large body went to S3 once, through the conditional path (claimed), and the
    # item points to it; the small one was put
    objects = aws.s3.list_objects_v2(Bucket=aws.stack.blob_bucket)["Contents"]
    assert len(objects) == 1
    assert get_item(store, "articles", 1) == big
    assert writes.states["1"].blob_key == objects[0]["Key"]


def test_the_journal_conditions_hold_on_dynamodb(aws: EmulatedAws) -> None:
    # Given the real store
    store = _store(aws)
    # When a change journals before any fill, a fill opens the journal (twice: a resend), a
    # change journals, a rebuild tries to begin, the fill joins (twice), a change journals
    first = store.journal_changes("articles", ["1"], {"1": frozenset({"5|[1]"})})
    opened = store.open_journal("articles", "fill", head_exists=True)
    again = store.open_journal("articles", "fill", head_exists=True)
    second = store.journal_changes("articles", ["2"], {"2": frozenset({"6|[2]"})})
    assert store.acquire_lease("articles", "sync", "fill", 900)
    blocked_while_running = store.block_fills("articles")
    joined = store.join_journal("articles", "fill")
    joined_again = store.join_journal("articles", "fill")
    third = store.journal_changes("articles", ["3"], {})
    # Then each finds what the fakes assume
    assert (first, second, third) == (
        JournalOutcome.JOURNALED,
        JournalOutcome.DEFERRED,
        JournalOutcome.CLOSED,
    )
    assert opened is not None and opened == again and opened.tags == {"1": {"5|[1]"}}
    assert not blocked_while_running
    assert joined is not None and joined == joined_again and joined.keys == {"1", "2"}
    assert store.open_journal("articles", "other", head_exists=True) is None
    assert store.block_fills("articles")  # joined: a rebuild may begin
    store.end_journal("articles")
    assert store.read_journal("articles") is None
    # And a list begun before journals were kept (a head, no journal) is never put into
    assert store.open_journal("articles", "late", head_exists=True) is None


def test_a_journal_that_no_longer_fits_is_marked_overflowed(aws: EmulatedAws) -> None:
    # Given a journal owned by a fill
    store = _store(aws)
    assert store.open_journal("articles", "fill", head_exists=False) is not None
    # When changes keep adding long keys (1 KB each) until one no longer fits in 400 KB
    outcomes = [
        store.journal_changes(
            "articles", [f"{batch:03d}-{index}" + "k" * 1000 for index in range(50)], {}
        )
        for batch in range(10)
    ]
    # Then each change still left its publish to the fill, and the journal is marked
    # overflowed, the keys it held dropped (the mark must fit): the fill re-checks every row
    assert set(outcomes) == {JournalOutcome.DEFERRED}
    journal = store.join_journal("articles", "fill")
    assert journal is not None and journal.overflowed and len(journal.keys) < 400


def _settings() -> ConsumerSettings:
    return ConsumerSettings.model_validate(
        {
            "CACHE_TABLE_NAME": "cache",
            "SUPABASE_URL": "http://supabase.invalid",
            "SUPABASE_KEY_SECRET_NAME": "key",
            "QUEUE_URL": "http://queue.invalid",
            "CACHED_TABLES": "articles",
            "SUPABASE_PAGE_SIZE": "40",
            "LIST_CHUNK_BYTES": "4096",
        }
    )


class _RacedSource(MemorySource):
    """Supabase, where row 50 changes and its change is processed right after the second page
    is read (before the fill puts it)."""

    race: Any = None
    pages: int = 0

    def read_page(self, table: str, after: Any, limit: int) -> list[Row]:
        rows = super().read_page(table, after, limit)
        self.pages += 1
        if self.pages == 2 and self.race is not None:
            self.race()
        return rows


def test_a_first_fill_under_moto_converges_with_a_change_racing_its_put(aws: EmulatedAws) -> None:
    # Given an uncached table of 150 rows and the real store
    source = _RacedSource()
    for row in _rows(150):
        source.put(row)
    store = _store(aws)
    ports = ConsumerPorts(_settings(), source, store, MemoryQueue())

    def race() -> None:
        # When, after the fill read rows 41-80, row 50 changes and its change is processed
        source.put({"id": 50, "title": "newer", "pad": "n"})
        change = Change.model_validate(
            {
                "type": "UPDATE",
                "schema": "public",
                "table": "articles",
                "key": 50,
                "received_at": "2026-11-29T00:00:00Z",
                "correlation_id": "c",
            }
        )
        assert not apply_changes("articles", [change], ports)

    source.race = race
    assert full_sync("articles", SyncProgress(sync_id="fill"), ports, lambda: 10**9) is None
    # Then the fill's put overwrote it for a while, the join converged it: the cache is the
    # table, as items and as a complete list; the journal is gone
    assert get_item(store, "articles", 50) == source.table[50]
    assert get_list(store, "articles") == source.rows(ORDER)
    assert store.read_journal("articles") is None
    with pytest.raises(DependencyUnavailable):  # (the failing path is loud, not silent)
        _store(aws, client=UnprocessedWrites(aws.dynamodb, times=10**6))._batch_write(
            [{"PutRequest": {"Item": {"pk": {"S": "/x/1"}}}}]
        )
