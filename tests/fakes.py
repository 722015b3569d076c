"""In-memory fakes of the consumer's ports, and a scheduler that interleaves consumers.

``MemoryStore`` keeps the same rules as ``adapters/cache_store.CacheStore`` (conditional row
writes on ``read_at_ns``, position tags kept on tombstones, immutable nodes, a head flipped only
from the version it was read at) and checks what the real one cannot: that a node is never
rewritten, and that no published version refers to a node that was discarded or retired.
``MemorySource`` is a table whose rows change while consumers read it.
``Scheduler`` runs each consumer in a thread that stops before every port call until the test
lets it go on, so a test (hypothesis) decides the interleaving, and can crash a consumer there.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from waituntil.cache.layout import dump_json, served_chunk_json
from waituntil.cache.model import (
    FreshRow,
    IndexPage,
    ListChunk,
    ListHead,
    RowFailure,
    RowState,
    RowWrites,
    ServedChunk,
    SyncCheckpoint,
    position_tag,
)
from waituntil.core.contracts import Row
from waituntil.core.list_order import ListOrder
from waituntil.core.whole_reads import read_whole


class Crash(BaseException):
    """A consumer killed at a port call (Lambda timed out, or the container died). A
    BaseException, so no ``except Exception`` in the code under test can outlive it."""


@dataclass
class MemoryStore:
    rows: dict[tuple[str, str], RowState] = field(default_factory=dict)
    nodes: dict[str, IndexPage | ListChunk] = field(default_factory=dict)
    heads: dict[str, ListHead] = field(default_factory=dict)
    versions: dict[tuple[str, str], ListHead] = field(default_factory=dict)
    retired: set[str] = field(default_factory=set)
    checkpoints: dict[str, SyncCheckpoint] = field(default_factory=dict)
    published: list[ListHead] = field(default_factory=list)  # every head ever flipped to
    on_publish: Callable[[MemoryStore, ListHead], None] | None = None

    # ----- rows -----

    def write_rows(
        self, table: str, fresh: Sequence[FreshRow], *, read_at_ns: int, order: ListOrder
    ) -> RowWrites:
        written = deleted = stale = 0
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
                    key=row.key, body=None, read_at_ns=read_at_ns, position=None, positions=tags
                )
                deleted += 1
            else:
                self.rows[(table, row.key)] = RowState(
                    key=row.key,
                    body=row.body,
                    read_at_ns=read_at_ns,
                    position=row.position,
                    positions=tags | {position_tag(read_at_ns, row.position)},
                )
                written += 1
        return RowWrites(written=written, deleted=deleted, skipped_stale=stale)

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
            assert node.key not in self.nodes, f"node {node.key} written twice"
            self.nodes[node.key] = node
        return len(chunks) + len(pages)

    def flip_head(self, head: ListHead, base: ListHead | None) -> bool:
        current = self.heads.get(head.table)
        if (current.version if current else None) != (base.version if base else None):
            return False
        for page_ref in head.pages:
            page = self.get_index_page(page_ref.key)
            assert page is not None, f"head refers to missing index page {page_ref.key}"
            assert page_ref.key not in self.retired, "head refers to a retired index page"
            for ref in page.chunks:
                assert ref.key in self.nodes, f"head refers to missing chunk {ref.key}"
                assert ref.key not in self.retired, "head refers to a retired chunk"
        self.versions[(head.table, head.version)] = head
        self.heads[head.table] = head
        self.published.append(head)
        if self.on_publish is not None:
            self.on_publish(self, head)
        return True

    def retire(
        self, table: str, chunk_keys: Sequence[str], page_keys: Sequence[str], version: str | None
    ) -> None:
        current = self.heads[table]
        live = set(self.node_keys(current))
        for key in [*chunk_keys, *page_keys]:
            # Only nodes of a version that is no longer current: a reader mid-way keeps them
            # for the grace period, and the current version never loses one.
            assert key not in live, f"retired {key}, which the current version uses"
            self.retired.add(key)

    def discard(self, chunk_keys: Sequence[str], page_keys: Sequence[str]) -> None:
        for key in [*chunk_keys, *page_keys]:
            for head in self.heads.values():
                assert key not in self.node_keys(head), "discarded a node of the current list"
            self.nodes.pop(key, None)

    def node_keys(self, head: ListHead) -> list[str]:
        keys: list[str] = []
        for page_ref in head.pages:
            keys.append(page_ref.key)
            page = self.get_index_page(page_ref.key)
            assert page is not None
            keys += [ref.key for ref in page.chunks]
        return keys

    # ----- full sync -----

    def get_checkpoint(self, table: str) -> SyncCheckpoint | None:
        return self.checkpoints.get(table)

    def put_checkpoint(self, checkpoint: SyncCheckpoint | None, table: str) -> None:
        if checkpoint is None:
            self.checkpoints.pop(table, None)
        else:
            self.checkpoints[table] = checkpoint


class FailingRows:
    """Any store (fake or real) whose row writes fail for the keys ``fault`` names, as a
    DynamoDB or S3 error on one row does: those rows are not written, the others are."""

    def __init__(self, store: Any, fault: Callable[[str], RowFailure | None]) -> None:
        self._store = store
        self._fault = fault

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def write_rows(
        self, table: str, fresh: Sequence[FreshRow], *, read_at_ns: int, order: ListOrder
    ) -> RowWrites:
        failures: dict[str, RowFailure] = {}
        kept: list[FreshRow] = []
        for row in fresh:
            failure = self._fault(row.key)
            if failure is None:
                kept.append(row)
            else:
                failures[row.key] = failure
        writes: RowWrites = self._store.write_rows(table, kept, read_at_ns=read_at_ns, order=order)
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
    requests: int = 0

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


@dataclass
class MemoryQueue:
    bodies: list[str] = field(default_factory=list)

    def publish(self, body: str) -> str:
        self.bodies.append(body)
        return f"m{len(self.bodies)}"


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
    that a ``flip_head`` made current."""

    def __init__(
        self,
        target: Any,
        scheduler: Scheduler,
        on_flip: Callable[[Any, ListHead], None] | None = None,
    ) -> None:
        self._target = target
        self._scheduler = scheduler
        self._on_flip = on_flip

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._scheduler.pause()
            result = attribute(*args, **kwargs)
            if name == "flip_head" and result and self._on_flip is not None:
                self._on_flip(self._target, args[0])
            return result

        return call


def listed_rows(store: Any, head: ListHead) -> list[Row]:
    rows: list[Row] = []
    for page_ref in head.pages:
        page = store.get_index_page(page_ref.key)
        for ref in page.chunks:
            rows += json.loads(store.get_served_chunk(ref.key).body)
    return rows
