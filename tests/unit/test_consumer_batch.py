"""The consumer's batch on fakes: which records fail, and why, and what the others still do."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import load_event
from tests.fakes import MemoryQueue, MemorySource, MemoryStore
from waituntil.cache.list_patch import ListSizes
from waituntil.cache.model import ChangeMark, PositionRange, RangePrint
from waituntil.core.contracts import Change, Row
from waituntil.core.errors import (
    InvalidMessage,
    ListContended,
    ListFilling,
    ListNodeMissing,
    RowWriteFailed,
    SourceUnavailable,
)
from waituntil.core.list_order import ListOrder, Position
from waituntil.core.settings import ConsumerSettings
from waituntil.sync.batch import BatchOutcome, QueuedMessage, parse_change, process_batch
from waituntil.sync.ports import ConsumerPorts
from waituntil.sync.retry import retry_delay_s

TABLES = ("articles", "authors")


@dataclass
class TwoTables:
    """One ``MemorySource`` per table; a table listed in ``down`` cannot be read."""

    tables: dict[str, MemorySource] = field(
        default_factory=lambda: {table: MemorySource() for table in TABLES}
    )
    down: set[str] = field(default_factory=set)

    def _table(self, table: str) -> MemorySource:
        if table in self.down:
            raise SourceUnavailable(f"reading {table} from Supabase failed")
        return self.tables[table]

    def read_rows(self, table: str, keys: Sequence[str]) -> list[Row]:
        return self._table(table).read_rows(table, keys)

    def read_page(self, table: str, after: Any, limit: int) -> list[Row]:
        return self._table(table).read_page(table, after, limit)

    def existing_keys(self, table: str, keys: Sequence[str]) -> set[str]:
        return self._table(table).existing_keys(table, keys)

    def count_rows(self, table: str, ranges: Sequence[PositionRange]) -> list[int]:
        return self._table(table).count_rows(table, ranges)

    def positions_in_range(self, table: str, bounds: PositionRange, limit: int) -> list[Position]:
        return self._table(table).positions_in_range(table, bounds, limit)

    def changed_since(
        self,
        table: str,
        column: str,
        since: str,
        before: str,
        after: ChangeMark | None,
        limit: int,
    ) -> list[ChangeMark]:
        return self._table(table).changed_since(table, column, since, before, after, limit)

    def fingerprint_ranges(
        self, table: str, ranges: Sequence[PositionRange], *, with_rows: bool = False
    ) -> list[RangePrint]:
        return self._table(table).fingerprint_ranges(table, ranges, with_rows=with_rows)


def _settings(**environment: str) -> ConsumerSettings:
    return ConsumerSettings.model_validate(
        {
            "CACHE_TABLE_NAME": "cache",
            "SUPABASE_URL": "http://supabase.invalid",
            "SUPABASE_KEY_SECRET_NAME": "key",
            "QUEUE_URL": "http://queue.invalid",
            "CACHED_TABLES": ",".join(TABLES),
            **environment,
        }
    )


def _ports(source: TwoTables, store: MemoryStore, queue: MemoryQueue) -> ConsumerPorts:
    clock = iter(range(1000, 10**6))
    return ConsumerPorts(_settings(), source, store, queue, clock_ns=lambda: next(clock))


def _message(
    message_id: str, table: str = "articles", key: int | None = 1, **fields: Any
) -> QueuedMessage:
    change = Change.model_validate(
        {
            "type": "UPDATE" if key is not None else "RESYNC",
            "schema": "public",
            "table": table,
            "key": key,
            "received_at": "2026-11-29T00:00:00Z",
            "correlation_id": f"c-{message_id}",
            **fields,
        }
    )
    return QueuedMessage(message_id, change.to_message())


def _never_short_of_time() -> int:
    return 10**9


def test_an_unusable_message_fails_alone() -> None:
    # Given a batch with a message that is not a change, and a valid change of row 1
    source, store, queue = TwoTables(), MemoryStore(), MemoryQueue()
    source.tables["articles"].put({"id": 1, "title": "one"})
    batch = [QueuedMessage("bad", "{not json"), _message("good")]
    # When the batch is processed
    outcome = process_batch(batch, _ports(source, store, queue), _never_short_of_time)
    # Then only the bad message fails, as invalid, and the good one's row is cached
    assert list(outcome.failures) == ["bad"]
    assert isinstance(outcome.failures["bad"], InvalidMessage)
    cached = store.get_rows("articles", ["1"])["1"]
    assert cached.body is not None and '"one"' in cached.body.text


def test_a_table_that_cannot_be_read_fails_its_records_and_no_others() -> None:
    # Given Supabase failing for authors only, and changes of both tables in one batch
    source, store, queue = TwoTables(down={"authors"}), MemoryStore(), MemoryQueue()
    source.tables["articles"].put({"id": 1, "title": "one"})
    batch = [_message("a1"), _message("u1", "authors", 1), _message("u2", "authors", 2)]
    # When the batch is processed
    outcome = process_batch(batch, _ports(source, store, queue), _never_short_of_time)
    # Then both authors records fail with the source's error; the articles change is applied
    assert sorted(outcome.failures) == ["u1", "u2"]
    assert all(isinstance(error, SourceUnavailable) for error in outcome.failures.values())
    assert "1" in store.get_rows("articles", ["1"])


def test_a_resync_of_every_table_queues_one_full_sync_per_table() -> None:
    # Given the schedule's RESYNC of table "*"
    source, store, queue = TwoTables(), MemoryStore(), MemoryQueue()
    # When it is processed
    outcome = process_batch(
        [_message("r", "*", None)], _ports(source, store, queue), _never_short_of_time
    )
    # Then it succeeds by queueing one RESYNC per cached table, each its own sync
    assert outcome.failures == {}
    queued = [Change.from_message(body) for body in queue.bodies]
    assert sorted(change.table for change in queued) == sorted(TABLES)
    assert all(change.type == "RESYNC" and change.sync is not None for change in queued)
    assert len({change.sync.sync_id for change in queued if change.sync}) == len(TABLES)


@pytest.mark.parametrize(("table", "schema"), [("comments", "public"), ("articles", "private")])
def test_a_change_of_a_table_not_cached_here_is_invalid(table: str, schema: str) -> None:
    # Given a change of a table (or schema) this deployment does not cache
    body = _message("m", table, 1).body.replace('"schema":"public"', f'"schema":"{schema}"')
    # When it is parsed / Then it is invalid: it can never succeed, so it goes to the DLQ
    with pytest.raises(InvalidMessage):
        parse_change(body, _settings())


def test_the_outcome_raises_a_failed_records_error_and_nothing_for_the_others() -> None:
    # Given an outcome where one record failed
    error = SourceUnavailable("down")
    outcome = BatchOutcome(failures={"failed": error})
    # When each record is reported / Then the failed one raises its own error, the other nothing
    with pytest.raises(SourceUnavailable) as raised:
        outcome.raise_if_failed("failed")
    assert raised.value is error
    outcome.raise_if_failed("done")


def test_the_ports_give_each_tables_order_and_the_list_sizes() -> None:
    # Given settings with a list order and chunk sizes
    settings = _settings(LIST_ORDER="rank.desc", LIST_CHUNK_BYTES="2048", LIST_INDEX_REFS="8")
    ports = ConsumerPorts(settings, TwoTables(), MemoryStore(), MemoryQueue())
    # When the flows ask for them / Then they are the settings' values
    assert ports.list_order("articles") == ListOrder("id", "rank", descending=True)
    assert ports.list_sizes == ListSizes(chunk_bytes=2048, index_refs=8)


def test_a_change_message_is_what_a_consumer_from_before_reconcile_reads() -> None:
    # Given a row change and a RESYNC, as the receiver and the schedule send them
    for message in (_message("m", "articles", 1), _message("r", "articles", None)):
        # When serialized / Then no field the version-1 contract before RECONCILE lacked
        assert '"heal"' not in message.body
    # And a follow-up carries its keys
    follow_up = Change.model_validate(
        {
            "type": "RECONCILE",
            "schema": "public",
            "table": "articles",
            "key": None,
            "received_at": "2026-11-29T00:00:00Z",
            "correlation_id": "reconcile-1",
            "heal": {"keys": ["1", "2"]},
        }
    )
    assert Change.from_message(follow_up.to_message()).heal == follow_up.heal


# ----- failed records that a few seconds cure come back soon (sync.retry) ---------------------


class ContendedStore(MemoryStore):
    """Another consumer switches the list's head first, every time."""

    def flip_head(self, head: Any, base: Any, **nodes: Any) -> bool:
        return False


def _delivery(message: QueuedMessage, receive_count: int) -> QueuedMessage:
    return QueuedMessage(
        message.message_id, message.body, f"handle-{message.message_id}", receive_count
    )


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("waituntil.sync.list_publish.backoff_s", lambda attempt: 0.0)


@pytest.mark.usefixtures("no_backoff")
def test_a_contended_record_comes_back_in_seconds_and_an_outage_after_the_timeout() -> None:
    # Given every head switch lost to another consumer, and Supabase down for authors
    source, store, queue = TwoTables(down={"authors"}), ContendedStore(), MemoryQueue()
    source.tables["articles"].put({"id": 1, "title": "one"})
    batch = [
        _delivery(_message("a1"), receive_count=2),
        _delivery(_message("u1", "authors", 1), receive_count=2),
    ]
    # When the batch (their second delivery) is processed
    outcome = process_batch(batch, _ports(source, store, queue), _never_short_of_time)
    # Then both fail; the contended one is made visible again within 5-10 s, the other is
    # left to the queue's visibility timeout (an outage retried in seconds would reach the DLQ)
    assert isinstance(outcome.failures["a1"], ListContended)
    assert isinstance(outcome.failures["u1"], SourceUnavailable)
    assert list(queue.visibility) == ["handle-a1"]
    assert 5 <= queue.visibility["handle-a1"] <= 10
    assert outcome.retry_soon == {"a1": queue.visibility["handle-a1"]}


@pytest.mark.usefixtures("no_backoff")
def test_a_record_whose_visibility_cannot_change_still_fails() -> None:
    # Given contention, and a queue that refuses ChangeMessageVisibility
    source, store, queue = TwoTables(), ContendedStore(), MemoryQueue(visibility_refused=True)
    source.tables["articles"].put({"id": 1, "title": "one"})
    # When the batch is processed
    outcome = process_batch(
        [_delivery(_message("a1"), 1)], _ports(source, store, queue), _never_short_of_time
    )
    # Then the record is still reported failed (it comes back after the full timeout)
    assert isinstance(outcome.failures["a1"], ListContended)
    assert outcome.retry_soon == {}


def test_a_record_from_lambdas_event_carries_its_receipt_handle_and_receive_count() -> None:
    # Given a record of Lambda's SQS event
    record = load_event("consumer/batch.json")["Records"][0]
    record = {**record, "attributes": {**record["attributes"], "ApproximateReceiveCount": "3"}}
    # When it is read / Then what ChangeMessageVisibility needs is kept
    message = QueuedMessage.from_record(record)
    assert message.receipt_handle == record["receiptHandle"] != ""
    assert message.receive_count == 3


@pytest.mark.parametrize(
    ("receives", "shortest", "longest"), [(1, 1, 2), (2, 5, 10), (3, 25, 50), (4, 125, 250)]
)
def test_a_retry_soon_waits_longer_at_each_receive(
    receives: int, shortest: int, longest: int
) -> None:
    # Given a contended record at its n-th receive / When its delay is drawn at both ends of
    # the jitter / Then it lies in that receive's band
    error = ListContended("lost")
    assert retry_delay_s(error, receives, lambda low, high: low) == shortest
    assert retry_delay_s(error, receives, lambda low, high: high) == longest


@pytest.mark.parametrize(
    "error",
    [
        SourceUnavailable("down"),
        RowWriteFailed("ddb"),
        ListFilling("filling"),
        InvalidMessage("bad"),
    ],
)
def test_outages_and_bad_messages_keep_the_queues_timeout(error: Exception) -> None:
    # Given a failure that a few seconds do not cure / When its delay is asked / Then none
    assert retry_delay_s(error, 1) is None


def test_a_record_contended_at_every_receive_is_left_to_the_queue_once_the_delay_reaches_it() -> (
    None
):
    # Given a record contended five times / When its delay is asked / Then none: from there
    # the queue's own timeout (660 s) is as soon
    assert retry_delay_s(ListNodeMissing("gone"), 5) is None
