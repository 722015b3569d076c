"""A change's list nodes read ahead (``sync/list_prefetch``): beside the Supabase read and the
row writes, not after them, and never at the cost of a right answer. On the in-memory fakes
(which keep no node between publishes: every node a patch needs is read, as by a consumer
that never saw that part of a large list)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from tests.fakes import AnswerLost, MemoryQueue, MemorySource, MemoryStore
from waituntil.core.contracts import Change, SyncProgress
from waituntil.core.list_order import ListOrder
from waituntil.core.settings import ConsumerSettings
from waituntil.read.cache_client import get_list
from waituntil.sync.full_sync import full_sync
from waituntil.sync.list_prefetch import hinted_positions
from waituntil.sync.ports import ConsumerPorts
from waituntil.sync.row_changes import apply_changes

T = TypeVar("T")
ROWS = 60


@dataclass
class Lanes:
    """Round trips counted by what waited on what, not by a clock: a call waits on every call
    made before it in its lane; work begun with ``start`` runs in a lane of its own from the
    moment it begins, and whoever takes its answer waits on all of it."""

    depth: int = 0
    calls: list[tuple[str, int]] = field(default_factory=list)  # (call, round trip it ended)

    def call(self, name: str) -> None:
        self.depth += 1
        self.calls.append((name, self.depth))


class Traced:
    """A port whose every call is one round trip in ``lanes``; the store's ``start`` (and
    ``start_get_heads``) begin a lane beside the caller's."""

    def __init__(self, target: Any, lanes: Lanes) -> None:
        self._target = target
        self._lanes = lanes

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name == "start_get_heads":
            return lambda table: self.start(lambda: self.get_heads(table))
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            self._lanes.call(name)
            return result

        return call

    def start(self, work: Callable[[], T]) -> Callable[[], T]:
        lanes = self._lanes
        began = lanes.depth
        try:
            done: tuple[T | None, Exception | None] = (work(), None)
        except Exception as error:  # raised again by the answer
            done = (None, error)
        ended, lanes.depth = lanes.depth, began

        def answer() -> T:
            lanes.depth = max(lanes.depth, ended)
            result, error = done
            if error is not None:
                raise error
            return result  # type: ignore[return-value]

        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


def _settings(list_order: str | None = None) -> ConsumerSettings:
    return ConsumerSettings.model_validate(
        {
            "CACHE_TABLE_NAME": "cache",
            "SUPABASE_URL": "http://supabase.invalid",
            "SUPABASE_KEY_SECRET_NAME": "key",
            "QUEUE_URL": "http://queue.invalid",
            "CACHED_TABLES": "articles",
            "SUPABASE_PAGE_SIZE": "20",
            # 1 KB chunks of three rows or so, four to an index page: 60 rows make several
            # index pages, as a large table does.
            "LIST_CHUNK_BYTES": "1024",
            "LIST_INDEX_REFS": "4",
            **({"LIST_ORDER": list_order} if list_order else {}),
        }
    )


def _row(key: int, rank: int | None = None, title: str = "t") -> dict[str, Any]:
    return {
        "id": key,
        "rank": key if rank is None else rank,
        "title": f"{title} {key}",
        "pad": "x" * 300,
    }


def _change(
    key: int, record: dict[str, Any] | None = None, old: dict[str, Any] | None = None
) -> Change:
    return Change.model_validate(
        {
            "type": "UPDATE",
            "schema": "public",
            "table": "articles",
            "key": key,
            "record": record,
            "old_record": old,
            "received_at": "2026-11-29T00:00:00Z",
            "correlation_id": f"c-{key}",
        }
    )


def _filled(list_order: str | None = None) -> tuple[MemorySource, MemoryStore, Clock]:
    source, store, clock = MemorySource(), MemoryStore(), Clock()
    for key in range(1, ROWS + 1):
        source.put(_row(key))
    ports = ConsumerPorts(_settings(list_order), source, store, MemoryQueue(), clock_ns=clock)
    assert full_sync("articles", SyncProgress(sync_id="fill"), ports, lambda: 10**9) is None
    head = store.get_head("articles")
    assert head is not None and len(head.pages) >= 3  # a list several index pages wide
    return source, store, clock


def _ports(source: Any, store: Any, clock: Clock, list_order: str | None = None) -> ConsumerPorts:
    return ConsumerPorts(_settings(list_order), source, store, MemoryQueue(), clock_ns=clock)


def _listed(store: MemoryStore, source: MemorySource, order: ListOrder) -> None:
    """The list holds exactly the table, in the list's order."""
    assert get_list(store, "articles") == source.rows(order)


def test_an_update_waits_on_four_round_trips_in_a_list_it_must_read() -> None:
    # Given a list of several index pages, none of whose nodes this consumer holds, and an
    # update of one row in place
    source, store, clock = _filled()
    source.put(_row(37, title="new"))
    lanes = Lanes()

    # When its change is applied, each call counted by what it waited on
    failed = apply_changes(
        "articles", [_change(37)], _ports(Traced(source, lanes), Traced(store, lanes), clock)
    )

    # Then the list holds the new row, and the chain it waited on is four round trips: the
    # index page and chunk were read beside the Supabase read, not after the row write, and
    # what the switch replaced is left on the new head for the next change to retire
    assert failed == {}
    _listed(store, source, ListOrder("id"))
    assert lanes.depth == 4, lanes.calls
    assert sorted(lanes.calls, key=lambda call: call[1]) == [
        ("get_heads", 1),
        ("read_rows", 1),  # Supabase, beside the heads
        ("get_nodes", 2),  # the index page (beside Supabase)
        ("write_rows", 2),
        ("get_nodes", 3),  # the chunk (beside Supabase, or the write on a slow answer)
        ("flip_head", 4),  # the patch's nodes and the switch
    ]
    head = store.get_head("articles")
    assert head is not None and head.retiring is not None and head.retiring.chunks


def test_the_next_change_retires_what_the_last_switch_replaced_beside_its_supabase_read() -> None:
    # Given a change whose switch left what it replaced on the new head
    source, store, clock = _filled()
    source.put(_row(37, title="new"))
    assert apply_changes("articles", [_change(37)], _ports(source, store, clock)) == {}
    left = store.get_head("articles")
    assert left is not None and left.retiring is not None
    source.put(_row(12, title="next"))
    lanes = Lanes()

    # When the next change of the table is applied
    failed = apply_changes(
        "articles", [_change(12)], _ports(Traced(source, lanes), Traced(store, lanes), clock)
    )

    # Then it retired those nodes and the version (its own retirement left in turn) without
    # waiting on it: the retirement ran beside the Supabase read, the chain is four round trips
    assert failed == {}
    _listed(store, source, ListOrder("id"))
    assert set(left.retiring.chunks) | set(left.retiring.pages) <= store.retired
    assert lanes.depth == 4, lanes.calls
    ended = dict(lanes.calls)
    assert ended["retire"] == 2 and ended["clear_retiring"] == 3  # after the heads, beside
    assert store.orphans("articles") == []


def test_a_message_without_bodies_has_its_nodes_read_beside_the_row_write() -> None:
    # Given a list ordered by a column, and an update whose message carries no body (so its
    # position is known only once Supabase answers)
    source, store, clock = _filled("rank")
    source.put(_row(37, title="new"))
    lanes = Lanes()

    # When its change is applied
    failed = apply_changes(
        "articles",
        [_change(37)],
        _ports(Traced(source, lanes), Traced(store, lanes), clock, "rank"),
    )

    # Then its nodes were read once Supabase answered, while the row write was in flight
    # (the same four round trips; under latency the Supabase read is the longer wait, which
    # a position in the message lets the reads ahead use), none after the write
    assert failed == {}
    _listed(store, source, ListOrder("id", "rank"))
    assert sorted(lanes.calls, key=lambda call: call[1]) == [
        ("get_heads", 1),
        ("read_rows", 1),
        ("get_nodes", 2),  # the index page, beside the row write
        ("write_rows", 2),
        ("get_nodes", 3),  # the chunk
        ("flip_head", 4),
    ]
    assert [name for name, _ in lanes.calls].index("get_nodes") > 1  # after Supabase's answer


def test_a_row_that_moved_to_another_chunk_converges() -> None:
    # Given a list ordered by rank, and a row whose rank moved it to the other end of the
    # list (another index page), its message carrying its new row and the old one
    source, store, clock = _filled("rank")
    old = _row(5)
    source.put(_row(5, rank=55, title="moved"))
    lanes = Lanes()

    # When its change is applied
    failed = apply_changes(
        "articles",
        [_change(5, record=_row(5, rank=55), old=old)],
        _ports(Traced(source, lanes), Traced(store, lanes), clock, "rank"),
    )

    # Then the row left its old chunk and is listed at its new place, and both places' nodes
    # were read ahead, beside the Supabase read
    assert failed == {}
    _listed(store, source, ListOrder("id", "rank"))
    ended = dict(lanes.calls)
    assert "get_index_page" not in ended and "get_chunk" not in ended


def test_a_row_that_moved_unannounced_is_found_in_its_old_chunk_by_the_plan() -> None:
    # Given a list ordered by rank, and a row moved far away, its message without bodies: what
    # is read ahead is only its new place
    source, store, clock = _filled("rank")
    source.put(_row(5, rank=55, title="moved"))
    lanes = Lanes()

    # When its change is applied
    failed = apply_changes(
        "articles",
        [_change(5)],
        _ports(Traced(source, lanes), Traced(store, lanes), clock, "rank"),
    )

    # Then the plan read the old place itself (from the row's position tag) and the row is
    # listed once, at its new place
    assert failed == {}
    _listed(store, source, ListOrder("id", "rank"))
    assert "get_chunk" in dict(lanes.calls)


class RivalAt:
    """The store, except that another consumer's change lands (its head switch included)
    just before this consumer's row write: after the nodes were read ahead for the head it
    read, before its plan."""

    def __init__(self, store: MemoryStore, rival: Callable[[], None]) -> None:
        self._store = store
        self._rival: Callable[[], None] | None = rival

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def write_rows(self, *args: Any, **kwargs: Any) -> Any:
        if self._rival is not None:
            rival, self._rival = self._rival, None
            rival()
        return self._store.write_rows(*args, **kwargs)


@pytest.mark.parametrize("rival_key", [38, 36, 3], ids=["same chunk", "near", "far"])
def test_a_head_switched_by_a_rival_between_the_read_ahead_and_the_plan_converges(
    rival_key: int,
) -> None:
    # Given a filled list, an update of row 37, and a rival consumer whose update of another
    # row switches the head after this one read the head and its nodes ahead
    source, store, clock = _filled()
    source.put(_row(37, title="mine"))
    source.put(_row(rival_key, title="rival"))

    def rival() -> None:
        assert apply_changes("articles", [_change(rival_key)], _ports(source, store, clock)) == {}

    before = len(store.published)

    # When this consumer's change is applied
    failed = apply_changes("articles", [_change(37)], _ports(source, RivalAt(store, rival), clock))

    # Then its switch lost, it planned again from the rival's head, and the list holds both
    assert failed == {}
    assert len(store.published) == before + 2
    _listed(store, source, ListOrder("id"))
    assert store.orphans("articles") == []


class LostOnce:
    """The store, except that the first call of ``method`` loses its answer: a write that
    applied (its answer lost after botocore's retries), a read that failed."""

    def __init__(self, store: MemoryStore, method: str) -> None:
        self._store, self._method = store, method
        self.lost = False

    def __getattr__(self, name: str) -> Any:
        if name == "start_get_heads":  # the heads through this store, as the real one reads
            return lambda table: self._store.start(lambda: self.get_heads(table))
        attribute = getattr(self._store, name)
        if name != self._method or self.lost:
            return attribute

        def lose(*args: Any, **kwargs: Any) -> Any:
            self.lost = True
            if name.startswith(("write", "flip", "retire", "clear", "prune")):
                attribute(*args, **kwargs)
            raise AnswerLost(f"{name}: answer lost")

        return lose


@pytest.mark.parametrize(
    "method",
    ["get_heads", "get_nodes", "write_rows", "flip_head", "retire", "clear_retiring"],
)
def test_a_lost_answer_on_any_call_of_the_chain_converges(method: str) -> None:
    # Given a filled list whose last change left its retirement on the head, and a store
    # that loses the answer of one call of the next change's chain
    source, store, clock = _filled()
    source.put(_row(36, title="before"))
    assert apply_changes("articles", [_change(36)], _ports(source, store, clock)) == {}
    source.put(_row(37, title="new"))
    lossy = LostOnce(store, method)

    # When the change is applied, and again if its record failed (SQS redelivers it)
    try:
        failed = apply_changes("articles", [_change(37)], _ports(source, lossy, clock))
    except AnswerLost:
        failed = {"37": AnswerLost("the record fails")}
    assert lossy.lost
    if method == "get_nodes":
        assert failed == {}  # a read ahead that failed is only a guess the plan makes up for
    if failed:
        assert apply_changes("articles", [_change(37)], _ports(source, store, clock)) == {}
    else:
        # a later publish finishes what the lost answer left (a head's retirement)
        source.put(_row(38, title="next"))
        assert apply_changes("articles", [_change(38)], _ports(source, store, clock)) == {}

    # Then the list holds the table, and nothing stored is left that no head reaches and that
    # never expires
    _listed(store, source, ListOrder("id"))
    assert store.orphans("articles") == []


def test_hints_are_the_keys_of_a_key_order_and_the_bodies_positions_of_a_column_order() -> None:
    # Given an update that changed a row's key, and one that moved a row in a column order
    rekeyed = Change.model_validate(
        {
            "type": "UPDATE",
            "schema": "public",
            "table": "articles",
            "key": 8,
            "old_key": 3,
            "received_at": "2026-11-29T00:00:00Z",
            "correlation_id": "c",
        }
    )
    moved = _change(5, record=_row(5, rank=55), old=_row(5))

    # When their positions are guessed
    by_key = hinted_positions([rekeyed], ListOrder("id"))
    by_rank = hinted_positions([moved, _change(6)], ListOrder("id", "rank"))

    # Then a key order needs no body; a column order takes both bodies, and has nothing to
    # guess from a message without them
    assert by_key == [(8,), (3,)]
    assert by_rank == [(55, 5), (5, 5)]
