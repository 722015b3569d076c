"""The cache's domain model: what a row and a list version are, and the ports the logic needs.

Over 300 lines on purpose: these types and the ports over them are one vocabulary, imported
alike by the consumer's flows, the read side and the adapters; split, each part needs the rest.

Pure: no I/O, no boto3, no adapters. ``list_patch`` and the consumer's flows work on these types;
``adapters/cache_store`` turns them into DynamoDB items (through ``cache.layout``).

A list version is a tree three levels deep, every node immutable once written:

- the **head** (``ListHead``): which version is current, its totals, and the ordered refs of its
  index pages. The only mutable item: a publish flips it conditionally on the version it read.
- **index pages** (``IndexPage``): up to ``INDEX_PAGE_REFS`` chunk refs each, in list order.
- **chunks** (``ListChunk``): a JSON array of rows in list order; one chunk = one page of the
  read API.

Nodes have unique keys and are never rewritten, so a new version reuses every node a patch did
not touch (by key), and a reader that pinned a version sees the same nodes until they expire.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from waituntil.core.contracts import Row
from waituntil.core.list_order import ListOrder, Position

# ----- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowBody:
    """A row as the cache serves it: compact JSON text and its content hash."""

    text: str
    etag: str


@dataclass(frozen=True)
class FreshRow:
    """What one Supabase read says a touched key is now: a body, or gone (None)."""

    key: str
    body: RowBody | None
    position: Position | None  # None when gone


@dataclass(frozen=True)
class RowState:
    """A row item as stored: the state of the newest read that won (a tombstone if gone).

    ``positions`` are the places this row may hold in a published list, one per state since the
    last publish that pruned them ("<read_at_ns>|<json position>"). A row whose order column
    changed is found in its old chunk through them.
    """

    key: str
    body: RowBody | None  # None: tombstone
    read_at_ns: int
    position: Position | None
    positions: frozenset[str] = frozenset()
    blob_key: str | None = None  # the body lives in the blob store (too large for an item)


def position_tag(read_at_ns: int, position: Position) -> str:
    return f"{read_at_ns}|{json.dumps(list(position), separators=(',', ':'))}"


def parse_position_tag(tag: str) -> tuple[int, Position]:
    read_at, _, raw = tag.partition("|")
    return int(read_at), tuple(json.loads(raw))


@dataclass(frozen=True)
class RowWrites:
    """What a batch of conditional row writes did."""

    written: int = 0
    deleted: int = 0
    skipped_stale: int = 0
    stored_out_of_line: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # key -> why that row failed


# ----- the list --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListEntry:
    """One row inside a chunk: its key, the read it came from, its place, its body."""

    key: str
    read_at_ns: int
    position: Position
    etag: str
    text: str | None  # None: the body is in the blob store under ``blob_key``
    blob_key: str | None = None

    def same_content(self, other: ListEntry) -> bool:
        return self.etag == other.etag and self.position == other.position

    @property
    def size(self) -> int:
        return len(self.text.encode()) + 1 if self.text is not None else 64


@dataclass(frozen=True)
class ChunkRef:
    """What an index page knows of one chunk."""

    key: str
    etag: str  # content hash of the served JSON array
    first: Position  # the first row's position: a chunk's range ends where the next begins
    row_count: int
    size: int  # bytes of the served JSON array


@dataclass(frozen=True)
class ListChunk:
    key: str
    entries: tuple[ListEntry, ...]


@dataclass(frozen=True)
class ServedChunk:
    """A chunk as the read API sends it: the JSON array, out-of-line rows resolved."""

    key: str
    body: str


@dataclass(frozen=True)
class IndexRef:
    key: str
    first: Position
    chunk_count: int
    row_count: int
    size: int


@dataclass(frozen=True)
class IndexPage:
    key: str
    chunks: tuple[ChunkRef, ...]


@dataclass(frozen=True)
class ListHead:
    """One published version of a table's list; the head item holds the current one."""

    table: str
    version: str
    pages: tuple[IndexRef, ...]
    row_count: int
    list_bytes: int
    etag: str
    read_at_ns: int  # the newest read any of its rows came from
    modified_at_ns: int  # when this version was published
    complete: bool = True  # False while the first fill of the table has not finished

    @property
    def chunk_count(self) -> int:
        return sum(page.chunk_count for page in self.pages)


@dataclass(frozen=True)
class SyncCheckpoint:
    """How far a full sync of one table has come; lets a retry or a continuation resume."""

    table: str
    sync_id: str
    phase: str  # "rows": paging Supabase by key; "deletes": checking the list's keys
    after: Any = None  # the last key (rows) or list position (deletes) done


@dataclass(frozen=True)
class PositionRange:
    """A stretch of a list, in list order: ``lower`` (inclusive) to ``upper`` (exclusive); None
    is open-ended. The reconciler asks Supabase to count or list exactly this stretch."""

    lower: Position | None = None
    upper: Position | None = None


@dataclass(frozen=True)
class ChangeMark:
    """A row as the reconciler's scan sees it: its change column's value and its key."""

    changed: str
    key: Any  # as Supabase renders it (int or str): keyset paging compares it typed


@dataclass(frozen=True)
class RangePrint:
    """What the database's fingerprint function says of a range: its row count, the sum of its
    rows' hashes modulo 2^64 (``cache.fingerprint``), and each row's hash when asked."""

    count: int
    fingerprint: int
    rows: dict[str, int] | None = None  # key -> row hash


@dataclass(frozen=True)
class HealState:
    """What the reconciler keeps per table between cycles (``/<table>#heal``).

    ``scan_from``: where the next scan of the change column starts (the last complete scan's
    time less the overlap); None before the first. ``change_column``: the column the last check
    found (``""``: none), and when that was checked. ``last_ok_ns``: when a cycle last
    finished without a failure (``make status`` and the dashboard show its age).
    ``healed_total``: rows healed so far, by cycles and their follow-ups (``make heal`` reports
    what one cycle added).
    """

    table: str
    scan_from: str | None = None
    change_column: str | None = None
    column_checked_ns: int = 0
    last_ok_ns: int = 0
    healed_total: int = 0
    # The cached list's whole fingerprint, for the head version it was summed for.
    print_version: str | None = None
    print_count: int = 0
    print_fp: int = 0


@dataclass(frozen=True)
class PublishResult:
    outcome: str  # "created" (the first version) | "published" | "unchanged"
    chunks_written: int = 0
    index_pages_written: int = 0
    attempts: int = 1
    complete: bool = True  # whether the list, as it now stands, is complete (I6)


# ----- ports -----------------------------------------------------------------------------------


class TableSource(Protocol):
    """Supabase, the source of truth, as the consumer reads it."""

    def read_rows(self, table: str, keys: Sequence[str]) -> list[Row]:
        """The rows whose key is one of ``keys`` (absent: deleted or hidden)."""
        ...

    def read_page(self, table: str, after: Any, limit: int) -> list[Row]:
        """Up to ``limit`` rows with key > ``after`` (None: from the start), in key order."""
        ...

    def existing_keys(self, table: str, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` exist now (reads the key column only)."""
        ...

    def count_rows(self, table: str, ranges: Sequence[PositionRange]) -> list[int]:
        """How many rows lie in each of ``ranges`` of the table's list order: one count per
        range (no rows), asked in parallel where the source can."""
        ...

    def positions_in_range(self, table: str, bounds: PositionRange, limit: int) -> list[Position]:
        """Up to ``limit`` row positions in ``bounds``, in list order (reads the key and the
        order column only)."""
        ...

    def changed_since(
        self,
        table: str,
        column: str,
        since: str,
        before: str,
        after: ChangeMark | None,
        limit: int,
    ) -> list[ChangeMark]:
        """Up to ``limit`` rows with ``since <= column < before``, in (column, key) order,
        past ``after``; reads the key and the column only. ``ColumnMissing`` if the table has
        no such column."""
        ...

    def fingerprint_ranges(
        self, table: str, ranges: Sequence[PositionRange], *, with_rows: bool = False
    ) -> list[RangePrint]:
        """The database's count and fingerprint of each range (and its rows' hashes), by its
        optional SQL function; ``FingerprintUnavailable`` if the project has not installed it."""
        ...


class ListNodeReads(Protocol):
    """What a patch reads of the base version: index pages and chunks, by key."""

    def get_index_page(self, key: str) -> IndexPage | None: ...

    def get_chunk(self, key: str) -> ListChunk | None: ...


class ServingReads(Protocol):
    """What the read API and ``waituntil.read.cache_client`` read: rows and pages as served."""

    def get_row_body(self, table: str, key: str) -> tuple[RowState, str] | None:
        """A live row's state and its JSON text (from the blob store if kept there)."""
        ...

    def get_head(self, table: str) -> ListHead | None: ...

    def get_version(self, table: str, version: str) -> ListHead | None: ...

    def get_index_page(self, key: str) -> IndexPage | None: ...

    def get_served_chunk(self, key: str) -> ServedChunk | None: ...


class CacheReads(ListNodeReads, ServingReads, Protocol):
    """Everything the consumer reads back from the cache."""

    def get_rows(self, table: str, keys: Sequence[str]) -> dict[str, RowState]: ...


class CacheWrites(Protocol):
    def write_rows(
        self, table: str, fresh: Sequence[FreshRow], *, read_at_ns: int, order: ListOrder
    ) -> RowWrites: ...

    def write_nodes(
        self, table: str, chunks: Sequence[ListChunk], pages: Sequence[IndexPage]
    ) -> int: ...

    def flip_head(self, head: ListHead, base: ListHead | None) -> bool:
        """Make ``head`` current if the current head is still ``base``; False if it moved."""
        ...

    def retire(
        self,
        table: str,
        chunk_keys: Sequence[str],
        page_keys: Sequence[str],
        version: str | None,
    ) -> None:
        """Nodes (and the version) no longer current: kept for the grace period, then expire."""
        ...

    def discard(self, chunk_keys: Sequence[str], page_keys: Sequence[str]) -> None:
        """Nodes written for a publish that lost its race: no version ever referenced them."""
        ...

    def prune_positions(self, table: str, stale: Mapping[str, frozenset[str]]) -> None: ...

    def get_checkpoint(self, table: str) -> SyncCheckpoint | None: ...

    def put_checkpoint(self, checkpoint: SyncCheckpoint | None, table: str) -> None: ...


class LeaseStore(Protocol):
    """Leases (H5): at most one holder per table and kind, until it releases or it expires."""

    def acquire_lease(self, table: str, kind: str, owner: str, ttl_s: int) -> bool:
        """Hold (or renew) the lease for ``ttl_s`` seconds if it is free, expired, or already
        ``owner``'s; False if another holds it. Safe to resend: the owner's own lease renews."""
        ...

    def release_lease(self, table: str, kind: str, owner: str) -> None:
        """Give the lease up, if ``owner`` still holds it."""
        ...

    def lease_holder(self, table: str, kind: str) -> str | None:
        """Who holds the lease now (None: free or expired)."""
        ...


class HealStateStore(Protocol):
    def get_heal_state(self, table: str) -> HealState | None: ...

    def put_heal_state(self, state: HealState) -> None: ...

    def get_fingerprints(self, node_keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        """The (row count, fingerprint) of list nodes summed earlier: nodes never change, so
        neither do their sums."""
        ...

    def put_fingerprints(self, prints: Mapping[str, tuple[int, int]]) -> None: ...


class CacheStorePort(CacheReads, CacheWrites, LeaseStore, HealStateStore, Protocol):
    """The whole cache, as the consumer's flows use it (``adapters/cache_store.CacheStore``)."""
