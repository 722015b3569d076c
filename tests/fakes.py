"""In-memory fakes of the consumer's ports, and a scheduler that interleaves consumers.

``MemoryStore`` keeps the same rules as ``adapters/cache_store.CacheStore`` (conditional row
writes on ``read_at_ns``, position tags kept on tombstones, immutable nodes, a head switched
only from the version it was read at, a switch that already applied answering True again) and
checks what the real one cannot: that a node is never rewritten, that no published version
refers to a node that was retired, and that nothing a head reaches is ever retired.
``MemorySource`` is a table whose rows change while consumers read it.
``Scheduler`` runs each consumer in a thread that stops before every port call until the test
lets it go on, so a test (hypothesis) decides the interleaving, and can crash a consumer there.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from waituntil.cache.fingerprint import combine, row_hash
from waituntil.cache.layout import dump_json, served_chunk_json, version_item_key
from waituntil.cache.model import (
    NODES_WITH_SWITCH,
    ChangeMark,
    FillJournal,
    FreshRow,
    HealState,
    IndexPage,
    JournalOutcome,
    ListChunk,
    ListHead,
    PositionRange,
    PublishAttempt,
    RangePrint,
    RowFailure,
    RowState,
    RowWrites,
    ServedChunk,
    SyncCheckpoint,
    position_tag,
)
from waituntil.core.contracts import Row
from waituntil.core.errors import ColumnMissing, DependencyUnavailable, FingerprintUnavailable
from waituntil.core.list_order import ListOrder, Position
from waituntil.core.whole_reads import read_whole

T = TypeVar("T")


class Crash(BaseException):
    """A consumer killed at a port call (Lambda timed out, or the container died). A
    BaseException, so no ``except Exception`` in the code under test can outlive it."""


class AnswerLost(DependencyUnavailable):
    """A store call whose answer never came, after the retries (what ``CacheStore`` raises)."""


# The store's writes: each can apply and lose its answer (``Paused`` with ``StoreFaults``).
STORE_WRITES = frozenset(
    {
        "write_rows",
        "write_nodes",
        "flip_head",
        "promote_head",
        "retire",
        "clear_retiring",
        "prune_positions",
        "put_checkpoint",
        "register_attempt",
        "end_attempt",
        "put_rows",
        "journal_changes",
        "open_journal",
        "join_journal",
        "block_fills",
        "end_journal",
    }
)


@dataclass
class StoreFaults:
    """Faults armed for the next store write, as AWS and botocore produce them:

    - ``"resent"``: the write applied, its answer was lost, botocore sent it again; the
      caller gets the second answer (what the write meets after itself);
    - ``"gave up"``: the write applied, and every answer was lost: the caller gets an error;
    - ``"failed"``: the write did not apply, and the caller gets an error.

    ``hit`` records which consumer each fault hit (a failed record there is expected).
    """

    armed: list[str] = field(default_factory=list)
    hit: list[tuple[int | None, str, str]] = field(default_factory=list)

    def take(self, method: str, consumer: int | None) -> str | None:
        if method not in STORE_WRITES or not self.armed:
            return None
        fault = self.armed.pop(0)
        self.hit.append((consumer, method, fault))
        return fault


@dataclass
class MemoryStore:
    rows: dict[tuple[str, str], RowState] = field(default_factory=dict)
    nodes: dict[str, IndexPage | ListChunk] = field(default_factory=dict)
    heads: dict[str, ListHead] = field(default_factory=dict)
    next_heads: dict[str, ListHead] = field(default_factory=dict)  # versions built apart
    versions: dict[tuple[str, str], ListHead] = field(default_factory=dict)
    retired: set[str] = field(default_factory=set)  # node and version keys given an expiry
    attempts: dict[str, set[PublishAttempt]] = field(default_factory=dict)
    checkpoints: dict[str, SyncCheckpoint] = field(default_factory=dict)
    published: list[ListHead] = field(default_factory=list)  # every head ever flipped to
    on_publish: Callable[[MemoryStore, ListHead], None] | None = None
    leases: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    heal_states: dict[str, HealState] = field(default_factory=dict)
    fingerprints: dict[str, tuple[int, int]] = field(default_factory=dict)
    seconds: float = 1_000_000.0  # the store's clock, for lease expiry
    journals: dict[str, FillJournal] = field(default_factory=dict)
    # How many keys and tags a journal item holds before an addition no longer fits (400 KB).
    journal_limit: int = 10_000
    puts: int = 0  # rows put unconditionally (``put_rows``)

    # ----- rows -----

    def write_rows(
        self,
        table: str,
        fresh: Sequence[FreshRow],
        *,
        read_at_ns: int,
        order: ListOrder,
        policy: str = "",
    ) -> RowWrites:
        written = deleted = stale = 0
        states: dict[str, RowState] = {}
        for row in fresh:
            old = self.rows.get((table, row.key))
            if old is not None and old.read_at_ns >= read_at_ns:
                stale += 1
                continue
            tags = old.positions if old is not None else frozenset()
            if row.body is None or row.position is None:
                if row.listed_at is not None:
                    tags = tags | {position_tag(*row.listed_at)}
                self.rows[(table, row.key)] = RowState(
                    key=row.key,
                    body=None,
                    read_at_ns=read_at_ns,
                    position=None,
                    positions=tags,
                    policy=policy,
                )
                deleted += 1
            else:
                self.rows[(table, row.key)] = RowState(
                    key=row.key,
                    body=row.body,
                    read_at_ns=read_at_ns,
                    position=row.position,
                    positions=tags | {position_tag(read_at_ns, row.position)},
                    policy=policy,
                )
                written += 1
            states[row.key] = self.rows[(table, row.key)]  # as the write's answer gives it
        return RowWrites(written=written, deleted=deleted, skipped_stale=stale, states=states)

    def put_rows(
        self,
        table: str,
        fresh: Sequence[FreshRow],
        *,
        read_at_ns: int,
        policy: str,
        tags: Mapping[str, frozenset[str]],
    ) -> RowWrites:
        """Unconditional puts: each item replaced whole, whatever it held (its tags too)."""
        states: dict[str, RowState] = {}
        for row in fresh:
            assert row.body is not None and row.position is not None, "a fill puts live rows"
            self.rows[(table, row.key)] = states[row.key] = RowState(
                key=row.key,
                body=row.body,
                read_at_ns=read_at_ns,
                position=row.position,
                positions=frozenset({position_tag(read_at_ns, row.position)})
                | tags.get(row.key, frozenset()),
                policy=policy,
            )
            self.puts += 1
        return RowWrites(written=len(states), states=states)

    # ----- a first fill's journal (the conditions of ``CacheStore``'s) -----

    def journal_changes(
        self, table: str, keys: Sequence[str], tags: Mapping[str, frozenset[str]]
    ) -> JournalOutcome:
        journal = self.journals.get(table, FillJournal())
        if journal.joined is not None:
            return JournalOutcome.CLOSED
        owned = journal.owner is not None
        added_tags = {} if owned else tags
        size = len(journal.keys | set(keys)) + sum(
            len(found) for found in {**journal.tags, **added_tags}.values()
        )
        if size > self.journal_limit:
            # Marked, its keys and tags dropped (the fill re-checks every row: none needed)
            self.journals[table] = replace(journal, overflowed=True, keys=frozenset(), tags={})
        else:
            merged = {key: journal.tags.get(key, frozenset()) for key in journal.tags}
            for key, found in added_tags.items():
                merged[key] = merged.get(key, frozenset()) | found
            self.journals[table] = replace(journal, keys=journal.keys | set(keys), tags=merged)
        return JournalOutcome.DEFERRED if owned else JournalOutcome.JOURNALED

    def open_journal(self, table: str, sync_id: str, *, head_exists: bool) -> FillJournal | None:
        journal = self.journals.get(table)
        if journal is None and head_exists:
            return None
        journal = journal or FillJournal()
        if (
            journal.blocked
            or journal.joined is not None
            or journal.overflowed
            or journal.owner not in (None, sync_id)
        ):
            return None
        self.journals[table] = replace(journal, owner=sync_id)
        return self.journals[table]

    def read_journal(self, table: str) -> FillJournal | None:
        return self.journals.get(table)

    def join_journal(self, table: str, sync_id: str) -> FillJournal | None:
        journal = self.journals.get(table)
        if journal is None or journal.owner != sync_id or journal.joined not in (None, sync_id):
            return None
        self.journals[table] = replace(journal, joined=sync_id)
        return self.journals[table]

    def block_fills(self, table: str) -> bool:
        journal = self.journals.get(table, FillJournal())
        if journal.owner is None or journal.joined is not None:
            self.journals[table] = replace(journal, blocked=True)
            return True
        if self.lease_holder(table, "sync") is not None:
            return False
        self.journals[table] = replace(journal, blocked=True, joined="rebuild", overflowed=True)
        return True

    def end_journal(self, table: str) -> None:
        self.journals.pop(table, None)

    def expire_tombstones(
        self, table: str, read_before_ns: int, keep: Collection[str] = ()
    ) -> list[str]:
        """DynamoDB's TTL: tombstones from reads before ``read_before_ns`` vanish, but those of
        the ``keep`` keys. (A real TTL is days: far longer than any consumer holds a read.)"""
        gone = [
            key
            for (name, key), state in self.rows.items()
            if name == table
            and state.body is None
            and state.read_at_ns < read_before_ns
            and key not in keep
        ]
        for key in gone:
            del self.rows[(table, key)]
        return gone

    def get_rows(self, table: str, keys: Sequence[str]) -> dict[str, RowState]:
        return {key: self.rows[(table, key)] for key in keys if (table, key) in self.rows}

    def get_row_body(self, table: str, key: str) -> tuple[RowState, str] | None:
        state = self.rows.get((table, key))
        if state is None or state.body is None:
            return None
        return state, state.body.text

    def prune_positions(self, table: str, stale: Mapping[str, frozenset[str]]) -> None:
        for key, tags in stale.items():
            state = self.rows[(table, key)]
            self.rows[(table, key)] = replace(state, positions=state.positions - tags)

    # ----- list nodes -----

    def get_head(self, table: str) -> ListHead | None:
        return self.heads.get(table)

    def get_next_head(self, table: str) -> ListHead | None:
        return self.next_heads.get(table)

    def get_heads(self, table: str) -> tuple[ListHead | None, ListHead | None]:
        return self.heads.get(table), self.next_heads.get(table)

    def start_get_heads(self, table: str) -> Callable[[], tuple[ListHead | None, ListHead | None]]:
        heads = self.get_heads(table)  # read now: a moment between the two calls
        return lambda: heads

    def start(self, work: Callable[[], T]) -> Callable[[], T]:
        # Run now (a moment between the two calls); an error is raised where it is awaited.
        try:
            done = work()
        except Exception as error:  # raised again by the answer
            failure = error

            def fail() -> T:
                raise failure

            return fail
        return lambda: done

    def get_nodes(self, keys: Sequence[str]) -> dict[str, IndexPage | ListChunk]:
        return {key: self.nodes[key] for key in keys if key in self.nodes}

    def get_version(self, table: str, version: str) -> ListHead | None:
        return self.versions.get((table, version))

    def get_index_page(self, key: str) -> IndexPage | None:
        node = self.nodes.get(key)
        assert node is None or isinstance(node, IndexPage)
        return node

    def get_chunk(self, key: str) -> ListChunk | None:
        node = self.nodes.get(key)
        assert node is None or isinstance(node, ListChunk)
        return node

    def get_served_chunk(self, key: str) -> ServedChunk | None:
        chunk = self.get_chunk(key)
        if chunk is None:
            return None
        return ServedChunk(key=key, body=served_chunk_json(chunk.entries))

    def write_nodes(
        self, table: str, chunks: Sequence[ListChunk], pages: Sequence[IndexPage]
    ) -> int:
        nodes: list[IndexPage | ListChunk] = [*chunks, *pages]
        for node in nodes:
            # A resend writes the same node again; nothing else may reuse a key.
            assert self.nodes.get(node.key, node) == node, f"node {node.key} rewritten"
            self.nodes[node.key] = node
        return len(chunks) + len(pages)

    def flip_head(
        self,
        head: ListHead,
        base: ListHead | None,
        *,
        chunks: Sequence[ListChunk] = (),
        pages: Sequence[IndexPage] = (),
    ) -> bool:
        assert len(chunks) + len(pages) <= NODES_WITH_SWITCH, "too many nodes for a transaction"
        return self._switch(head, base, [*chunks, *pages])

    def promote_head(self, head: ListHead, base: ListHead | None, rebuilt: ListHead) -> bool:
        ending = self.next_heads.get(head.table)
        if (ending.version if ending else None) != rebuilt.version:
            return (head.table, head.version) in self.versions
        if not self._switch(head, base):
            return False
        del self.next_heads[head.table]
        return True

    def _switch(
        self, head: ListHead, base: ListHead | None, nodes: Sequence[IndexPage | ListChunk] = ()
    ) -> bool:
        if (head.table, head.version) in self.versions:
            return True  # applied before (its answer was lost): the frozen version proves it
        heads = self.next_heads if head.rebuild else self.heads
        current = heads.get(head.table)
        if (current.version if current else None) != (base.version if base else None):
            return False  # one transaction: the nodes it carried are not written either
        for node in nodes:
            assert self.nodes.get(node.key, node) == node, f"node {node.key} rewritten"
            self.nodes[node.key] = node
        for key in self.node_keys(head):
            assert key in self.nodes, f"head refers to missing node {key}"
            assert key not in self.retired, f"head refers to retired node {key}"
        self.versions[(head.table, head.version)] = replace(head, retiring=None)
        heads[head.table] = head
        if head.rebuild:
            return True
        self.published.append(head)
        if self.on_publish is not None:
            self.on_publish(self, head)
        return True

    def clear_retiring(self, head: ListHead) -> None:
        heads = self.next_heads if head.rebuild else self.heads
        current = heads.get(head.table)
        if current is not None and current.version == head.version:
            heads[head.table] = replace(current, retiring=None)

    def retire(
        self, table: str, chunk_keys: Sequence[str], page_keys: Sequence[str], version: str | None
    ) -> None:
        live = self.live_keys(table)
        keys = [*chunk_keys, *page_keys]
        if version is not None:
            keys.append(version_item_key(table, version))
        for key in keys:
            # Only what no head reaches: a reader mid-way keeps it for the grace period, and
            # a head never loses one.
            assert key not in live, f"retired {key}, which a head reaches"
            if key in self.nodes or key.startswith(f"/{table}@"):
                self.retired.add(key)

    def register_attempt(self, table: str, attempt: PublishAttempt) -> None:
        self.attempts.setdefault(table, set()).add(attempt)

    def end_attempt(self, table: str, attempt: PublishAttempt) -> None:
        self.attempts.get(table, set()).discard(attempt)

    def get_attempts(self, table: str) -> list[PublishAttempt]:
        return sorted(self.attempts.get(table, set()), key=lambda attempt: attempt.version)

    def node_keys(self, head: ListHead) -> list[str]:
        keys: list[str] = []
        for page_ref in head.pages:
            keys.append(page_ref.key)
            page = self.get_index_page(page_ref.key)
            assert page is not None, f"head refers to missing index page {page_ref.key}"
            keys += [ref.key for ref in page.chunks]
        return keys

    def live_keys(self, table: str) -> set[str]:
        """What the heads of ``table`` reach: their versions and nodes."""
        live: set[str] = set()
        for head in (self.heads.get(table), self.next_heads.get(table)):
            if head is not None:
                live.add(version_item_key(table, head.version))
                live.update(self.node_keys(head))
        return live

    def orphans(self, table: str) -> list[str]:
        """Stored nodes and versions that no head reaches, that never expire, and that no
        head carries to retire (``carried``: whoever next reads that head retires them)."""
        live = self.live_keys(table)
        carried = self.carried(table)
        assert not carried & live, f"a head carries to retire what a head reaches: {carried & live}"
        stored = [key for key in self.nodes if key.startswith(f"/{table}#")]
        stored += [version_item_key(table, version) for t, version in self.versions if t == table]
        return sorted(
            key
            for key in stored
            if key not in live and key not in self.retired and key not in carried
        )

    def carried(self, table: str) -> set[str]:
        """What the current heads carry to retire (``ListHead.retiring``; trees aside)."""
        heads = (self.heads.get(table), self.next_heads.get(table))
        return carried_keys(table, [head for head in heads if head is not None])

    # ----- full sync -----

    def get_checkpoint(self, table: str) -> SyncCheckpoint | None:
        return self.checkpoints.get(table)

    def put_checkpoint(self, checkpoint: SyncCheckpoint | None, table: str) -> None:
        if checkpoint is None:
            self.checkpoints.pop(table, None)
        else:
            self.checkpoints[table] = checkpoint

    # ----- leases and the reconciler's state (time is ``seconds``: tests move it on) -----

    def acquire_lease(self, table: str, kind: str, owner: str, ttl_s: int) -> bool:
        held = self.leases.get((table, kind))
        if held is not None and held[1] > self.seconds and held[0] != owner:
            return False
        self.leases[(table, kind)] = (owner, self.seconds + ttl_s)
        return True

    def release_lease(self, table: str, kind: str, owner: str) -> None:
        held = self.leases.get((table, kind))
        if held is not None and held[0] == owner:
            del self.leases[(table, kind)]

    def lease_holder(self, table: str, kind: str) -> str | None:
        held = self.leases.get((table, kind))
        return held[0] if held is not None and held[1] > self.seconds else None

    def get_heal_state(self, table: str) -> HealState | None:
        return self.heal_states.get(table)

    def put_heal_state(self, state: HealState) -> None:
        self.heal_states[state.table] = state

    def add_healed(self, table: str, count: int) -> None:
        state = self.heal_states.get(table) or HealState(table)
        self.heal_states[table] = replace(state, healed_total=state.healed_total + count)

    def get_fingerprints(self, node_keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        return {key: self.fingerprints[key] for key in node_keys if key in self.fingerprints}

    def put_fingerprints(self, prints: Mapping[str, tuple[int, int]]) -> None:
        for key, value in prints.items():
            node = self.nodes.get(key)
            # A node's sum never changes: it is written for a node that exists, as it is.
            assert node is not None, f"fingerprint of a node never written: {key}"
            assert self.fingerprints.get(key, value) == value, f"{key}'s fingerprint changed"
            self.fingerprints[key] = value


class FailingRows:
    """Any store (fake or real) whose row writes fail for the keys ``fault`` names, as a
    DynamoDB or S3 error on one row does: those rows are not written, the others are."""

    def __init__(self, store: Any, fault: Callable[[str], RowFailure | None]) -> None:
        self._store = store
        self._fault = fault

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def write_rows(
        self,
        table: str,
        fresh: Sequence[FreshRow],
        *,
        read_at_ns: int,
        order: ListOrder,
        policy: str = "",
    ) -> RowWrites:
        failures: dict[str, RowFailure] = {}
        kept: list[FreshRow] = []
        for row in fresh:
            failure = self._fault(row.key)
            if failure is None:
                kept.append(row)
            else:
                failures[row.key] = failure
        writes: RowWrites = self._store.write_rows(
            table, kept, read_at_ns=read_at_ns, order=order, policy=policy
        )
        return replace(writes, failures={**writes.failures, **failures})

    def put_rows(
        self,
        table: str,
        fresh: Sequence[FreshRow],
        *,
        read_at_ns: int,
        policy: str,
        tags: Mapping[str, frozenset[str]],
    ) -> RowWrites:
        failures = {row.key: f for row in fresh if (f := self._fault(row.key)) is not None}
        kept = [row for row in fresh if row.key not in failures]
        writes: RowWrites = self._store.put_rows(
            table, kept, read_at_ns=read_at_ns, policy=policy, tags=tags
        )
        return replace(writes, failures={**writes.failures, **failures})


@dataclass
class MemorySource:
    """One Supabase table: rows by primary key, and every body each key ever had.

    ``max_rows``: the project's max-rows setting, which cuts every answer short, silently (an
    ``in.(...)`` read of more keys answers with only some of the rows). Reads by key go through
    ``read_whole`` as ``SupabaseSource``'s do, so the flows on fakes see what they see.
    """

    primary_key: str = "id"
    table: dict[Any, Row] = field(default_factory=dict)
    history: dict[str, set[str]] = field(default_factory=dict)  # key -> every JSON it had
    rows_read: int = 0
    max_rows: int | None = None
    order: ListOrder | None = None
    requests: int = 0  # every request: reads by key, counts, key ranges, scans
    fingerprint_function: bool = True  # the project installed the migration's SQL function

    def put(self, row: Row) -> None:
        self.table[row[self.primary_key]] = row
        self.history.setdefault(str(row[self.primary_key]), set()).add(dump_json(row))

    def delete(self, key: Any) -> None:
        self.table.pop(key, None)

    def read_rows(self, table: str, keys: Sequence[str]) -> list[Row]:
        rows = list(read_whole(self._in_request, keys).values())
        self.rows_read += len(rows)
        return rows

    def read_page(self, table: str, after: Any, limit: int) -> list[Row]:
        keys = sorted(key for key in self.table if after is None or key > after)
        keys = self._cut(keys[:limit])
        self.rows_read += len(keys)
        return [dict(self.table[key]) for key in keys]

    def existing_keys(self, table: str, keys: Sequence[str]) -> set[str]:
        return set(read_whole(self._in_request, keys))

    def _in_request(self, keys: Sequence[str]) -> dict[str, Row]:
        """One ``in.(...)`` read: the rows of ``keys`` that exist, cut to max-rows."""
        wanted = set(keys)
        self.requests += 1
        found = [key for key in self.table if str(key) in wanted]
        return {str(key): dict(self.table[key]) for key in self._cut(found)}

    def _cut(self, keys: list[Any]) -> list[Any]:
        return keys if self.max_rows is None else keys[: self.max_rows]

    def rows(self, order: ListOrder) -> list[Row]:
        return sorted(self.table.values(), key=lambda row: order.sort_key(order.position(row)))

    # ----- what the reconciler asks (``order``: the list's; default by key) -----

    def _order(self) -> ListOrder:
        return self.order or ListOrder(self.primary_key)

    def _in(self, row: Row, bounds: PositionRange) -> bool:
        order = self._order()
        at = order.sort_key(order.position(row))
        if bounds.lower is not None and at < order.sort_key(tuple(bounds.lower)):
            return False
        return bounds.upper is None or at < order.sort_key(tuple(bounds.upper))

    def count_rows(self, table: str, ranges: Sequence[PositionRange]) -> list[int]:
        self.requests += len(ranges)
        return [sum(self._in(row, bounds) for row in self.table.values()) for bounds in ranges]

    def positions_in_range(self, table: str, bounds: PositionRange, limit: int) -> list[Position]:
        self.requests += 1
        order = self._order()
        found = [order.position(row) for row in self.rows(order) if self._in(row, bounds)]
        self.rows_read += len(found[:limit])
        return found[:limit]

    def changed_since(
        self,
        table: str,
        column: str,
        since: str,
        before: str,
        after: ChangeMark | None,
        limit: int,
    ) -> list[ChangeMark]:
        self.requests += 1
        if self.table and not any(column in row for row in self.table.values()):
            raise ColumnMissing(f"column {table}.{column} does not exist")
        low, high = _moment(since), _moment(before)
        marks = sorted(
            (_moment(row[column]), key, row[column])
            for key, row in self.table.items()
            if row.get(column) is not None and low <= _moment(row[column]) < high
        )
        if after is not None:
            floor = (_moment(after.changed), after.key)
            marks = [mark for mark in marks if (mark[0], mark[1]) > floor]
        self.rows_read += len(marks[:limit])
        order = self._order()
        return [
            ChangeMark(changed=text, key=key, position=order.position(self.table[key]))
            for _, key, text in marks[:limit]
        ]

    def fingerprint_ranges(
        self, table: str, ranges: Sequence[PositionRange], *, with_rows: bool = False
    ) -> list[RangePrint]:
        if not self.fingerprint_function:
            raise FingerprintUnavailable("waituntil_fingerprint is not installed")
        self.requests += len(ranges)
        prints = []
        for bounds in ranges:
            hashes = {
                str(row[self.primary_key]): row_hash(dump_json(row))
                for row in self.table.values()
                if self._in(row, bounds)
            }
            if with_rows:
                self.rows_read += len(hashes)
            prints.append(
                RangePrint(len(hashes), combine(hashes.values()), hashes if with_rows else None)
            )
        return prints


@dataclass
class MemoryQueue:
    bodies: list[str] = field(default_factory=list)
    delays: dict[int, int] = field(default_factory=dict)  # message number -> its delay (s)
    visibility: dict[str, int] = field(default_factory=dict)  # receipt handle -> delay (s)
    visibility_refused: bool = False  # ChangeMessageVisibility fails (SQS down, IAM)

    def publish(self, body: str) -> str:
        self.bodies.append(body)
        return f"m{len(self.bodies)}"

    def publish_later(self, body: str, delay_s: int) -> str:
        self.delays[len(self.bodies)] = delay_s
        return self.publish(body)

    def change_visibility(self, delays: Mapping[str, int]) -> list[str]:
        if self.visibility_refused:
            return list(delays)
        self.visibility.update(delays)
        return []


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ----- interleaving ------------------------------------------------------------------------------


class Scheduler:
    """Consumers in threads that pause before each port call until ``step`` lets one go on."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._waiting: dict[int, threading.Event] = {}
        self._crash: set[int] = set()
        self._done: dict[int, BaseException | None] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._local = threading.local()
        self._next_id = 0

    def current(self) -> int | None:
        """The consumer whose thread this is (None: the test's own thread)."""
        consumer: int | None = getattr(self._local, "consumer", None)
        return consumer

    def pause(self) -> None:
        """Called by a consumer thread before a port call."""
        consumer = getattr(self._local, "consumer", None)
        if consumer is None:
            return  # not a scheduled thread (the test's own setup and checks)
        event = threading.Event()
        with self._lock:
            self._waiting[consumer] = event
            self._lock.notify_all()
        event.wait()
        if consumer in self._crash:
            raise Crash(f"consumer {consumer} killed")

    def start(self, work: Callable[[], Any]) -> int:
        consumer = self._next_id
        self._next_id += 1

        def run() -> None:
            self._local.consumer = consumer
            error: BaseException | None = None
            try:
                self.pause()  # wait for the first step like any other call
                work()
            except BaseException as caught:  # reported to the test through finished()
                error = caught
            with self._lock:
                self._done[consumer] = error
                self._lock.notify_all()

        thread = threading.Thread(target=run, daemon=True)
        self._threads[consumer] = thread
        thread.start()
        with self._lock:
            self._lock.wait_for(lambda: consumer in self._waiting, timeout=10)
        return consumer

    @property
    def waiting(self) -> list[int]:
        with self._lock:
            return sorted(self._waiting)

    def step(self, consumer: int, *, crash: bool = False) -> None:
        """Let ``consumer`` run to its next port call (or to its end)."""
        with self._lock:
            event = self._waiting.pop(consumer)
            if crash:
                self._crash.add(consumer)
        event.set()
        with self._lock:
            finished = self._lock.wait_for(
                lambda: consumer in self._waiting or consumer in self._done, timeout=30
            )
        assert finished, f"consumer {consumer} neither paused nor finished"

    def finished(self, consumer: int) -> bool:
        with self._lock:
            return consumer in self._done

    def error(self, consumer: int) -> BaseException | None:
        with self._lock:
            return self._done.get(consumer)


class Paused:
    """A port whose every method pauses on the scheduler first. ``on_flip`` sees each head
    that a ``flip_head`` or ``promote_head`` made current; ``faults`` (a store's) are applied
    to the store's writes."""

    def __init__(
        self,
        target: Any,
        scheduler: Scheduler,
        on_flip: Callable[[Any, ListHead], None] | None = None,
        faults: StoreFaults | None = None,
    ) -> None:
        self._target = target
        self._scheduler = scheduler
        self._on_flip = on_flip
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._scheduler.pause()
            fault = None
            if self._faults is not None:
                fault = self._faults.take(name, self._scheduler.current())
            if fault == "failed":
                raise AnswerLost(f"{name} failed and did not apply")
            result = attribute(*args, **kwargs)
            if fault == "resent":
                result = attribute(*args, **kwargs)
            switched = name in ("flip_head", "promote_head") and result
            if switched and self._on_flip is not None:
                self._on_flip(self._target, args[0])
            if fault == "gave up":
                raise AnswerLost(f"{name} applied, and its answer was lost")
            return result

        return call


def carried_keys(table: str, heads: Sequence[ListHead]) -> set[str]:
    """The nodes and versions ``heads`` carry to retire (``ListHead.retiring``): a change's
    publish leaves them to the next reader of its head (the next change, a publish, the sweep).
    A promotion's trees are not listed: its own switch retires them at once."""
    keys: set[str] = set()
    for head in heads:
        if head.retiring is not None:
            keys |= {*head.retiring.chunks, *head.retiring.pages}
            keys |= {version_item_key(table, version) for version in head.retiring.versions}
    return keys


def listed_rows(store: Any, head: ListHead) -> list[Row]:
    rows: list[Row] = []
    for page_ref in head.pages:
        page = store.get_index_page(page_ref.key)
        for ref in page.chunks:
            rows += json.loads(store.get_served_chunk(ref.key).body)
    return rows
