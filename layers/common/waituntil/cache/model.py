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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any, Protocol, TypeVar

from waituntil.core.contracts import Row
from waituntil.core.errors import RowTooLarge, RowWriteFailed
from waituntil.core.list_order import ListOrder, Position

T = TypeVar("T")

# ----- rows ------------------------------------------------------------------------------------

# Nodes a head switch may write in its own transaction (``flip_head``): DynamoDB takes 4 MB in
# one, an item is at most 400 KB, and the head and its frozen version are two more items.
NODES_WITH_SWITCH = 6


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
    # Gone rows only: where a list holds the row (the read it was listed from, its position).
    # The full sync's deletes phase knows it; its tombstone keeps it as a position tag, so the
    # row can be unlisted even when its item had expired (TTL) or never existed.
    listed_at: tuple[int, Position] | None = None


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
    # The blob's "unclaimed" tag (set when it was put) may still be on it: a consumer died
    # between the item write and clearing the tag. Rewriting the row settles it.
    blob_unclaimed: bool = False
    blob_bytes: int = 0  # such a body's size as served (``cache.layout.blob_bytes``)
    policy: str = ""  # digest of the table policy it was read with (``TablePolicy``)


def position_tag(read_at_ns: int, position: Position) -> str:
    return f"{read_at_ns}|{json.dumps(list(position), separators=(',', ':'))}"


def parse_position_tag(tag: str) -> tuple[int, Position]:
    read_at, _, raw = tag.partition("|")
    return int(read_at), tuple(json.loads(raw))


class RowFailureReason(Enum):
    """Why one row's write failed: what the flows decide on, never the message's wording."""

    # Too large for an item and no blob store: no retry can store it. A full sync skips it
    # (counted in ``RowsNotStorable``); a change's record fails alone and ends in the DLQ.
    TOO_LARGE = "too-large"
    # DynamoDB or S3 failed for this row: a retry may store it, so its record is retried.
    DEPENDENCY_FAILED = "dependency-failed"


@dataclass(frozen=True)
class RowFailure:
    reason: RowFailureReason
    detail: str  # names the row and the cause; never the row's body

    def error(self) -> Exception:
        """The typed error a record fails with (the one mapping of reason to error)."""
        if self.reason is RowFailureReason.TOO_LARGE:
            return RowTooLarge(self.detail)
        return RowWriteFailed(self.detail)


@dataclass(frozen=True)
class RowWrites:
    """What a batch of conditional row writes did."""

    written: int = 0  # live rows written, stored out of line (in the blob store) included
    deleted: int = 0
    skipped_stale: int = 0
    stored_out_of_line: int = 0  # of ``written``: bodies kept in the blob store
    failures: dict[str, RowFailure] = field(default_factory=dict)  # key -> why that row failed
    # key -> the state its item held just after this write landed, from the write's own
    # answer: a read of the row at that moment, so a publish need not read it back. Rows
    # whose state the answer does not settle (a stale write, a body whose claim lost) are
    # left out and read again.
    states: dict[str, RowState] = field(default_factory=dict)


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
    blob_bytes: int = 0  # a blob row's body as served (JSON-escaped bytes), recorded at write

    def same_content(self, other: ListEntry) -> bool:
        return self.etag == other.etag and self.position == other.position

    @cached_property
    def size(self) -> int:
        """Bytes this row adds to its page as served (a row kept in the blob store counts at
        its full size: the reader puts it back in the page)."""
        return len(self.text.encode()) + 1 if self.text is not None else self.blob_bytes + 1

    @cached_property
    def response_bytes(self) -> int:
        """Bytes this row adds to a Lambda response, where the page is one JSON string."""
        if self.text is None:
            return self.blob_bytes + 1
        return len(json.dumps(self.text)) - 1  # the escaped text, less its quotes, plus a comma

    @cached_property
    def stored_bytes(self) -> int:
        """Bytes this row adds to its chunk item, uncompressed: its text in the body (``null``
        for a blob row) and its line of the chunk's ``meta``."""
        body = len(self.text.encode()) if self.text is not None else 4
        meta = [self.key, self.read_at_ns, list(self.position), self.etag, self.blob_key]
        return body + 2 + len(json.dumps(meta, ensure_ascii=False, separators=(",", ":"))) + 12


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
class Retiring:
    """What a version replaced and no longer uses: kept on its head until retired.

    The switch to a version and its predecessor's retirement are one step: the head item
    carries this until ``list_publish.retire_replaced`` has given every one of these nodes its
    grace period and cleared it. Whoever reads a head with this set (its publisher, the
    redelivery of its publisher's record, the next publisher, the sweep) finishes it first.
    """

    chunks: tuple[str, ...] = ()
    pages: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()  # version ids whose frozen item this version replaced
    trees: tuple[str, ...] = ()  # version ids none of whose nodes this version uses


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
    policy: str = ""  # digest of the table policy it was built with
    # The sync id of the rebuild building this version apart (``/<table>#next``): never served,
    # then switched to whole (``sync/rebuild``). None: the served lineage.
    rebuild: str | None = None
    retiring: Retiring | None = None  # what it replaced, until retired (head item only)

    @property
    def chunk_count(self) -> int:
        return sum(page.chunk_count for page in self.pages)


@dataclass(frozen=True)
class PublishAttempt:
    """One publish's new nodes, registered before they are written and forgotten once the
    publish is settled (its head switched and its predecessor retired, or its nodes released).
    What a killed publish leaves behind is found here by the sweep (``sync/orphans``)."""

    version: str  # "<clock ns>-<nonce>": the version it would publish
    chunks: tuple[str, ...]
    pages: tuple[str, ...]

    @property
    def started_ns(self) -> int:
        return int(self.version.split("-", 1)[0])


@dataclass(frozen=True)
class SyncCheckpoint:
    """How far a full sync of one table has come; lets a retry or a continuation resume."""

    table: str
    sync_id: str
    phase: str  # "rows": paging Supabase by key; "join": the fill's journal; "deletes"
    after: Any = None  # the last key (rows, join) or list position (deletes) done
    # How the rows phase writes (``sync/fill_journal``): "" conditionally, row by row;
    # "batched": a first fill's unconditional batched puts under the fill journal; "recheck":
    # the conditional pass that follows a journal the fill could not trust (overflowed).
    mode: str = ""


@dataclass(frozen=True)
class FillJournal:
    """The keys changed while a first fill puts its rows unconditionally (``/<table>#fill``).

    ``owner``: the fill that put rows under it (None: changes journaled, no fill yet);
    ``joined``: who closed it (the fill, once all its puts landed; or a rebuild that found
    that fill dead); ``tags``: per key, the list positions changes published while no fill
    owned the journal, which a fill's put must keep; ``overflowed``: a change could not add
    its keys (400 KB), so the fill re-checks every row; ``blocked``: a rebuild began, so no
    fill may put unconditionally any more.
    """

    keys: frozenset[str] = frozenset()
    tags: Mapping[str, frozenset[str]] = field(default_factory=dict)
    owner: str | None = None
    joined: str | None = None
    overflowed: bool = False
    blocked: bool = False


class JournalOutcome(Enum):
    """What a change's journal entry found (``CacheWrites.journal_changes``)."""

    # A fill puts rows unconditionally now: the change writes its rows conditionally as ever,
    # and leaves the list to the fill's join (which reads the keys again and publishes them).
    DEFERRED = "deferred"
    # No fill owns the journal yet: the change publishes as ever; its positions are kept.
    JOURNALED = "journaled"
    # The fill joined (all its puts landed): nothing to journal, the normal path is safe.
    CLOSED = "closed"


@dataclass(frozen=True)
class PositionRange:
    """A stretch of a list, in list order: ``lower`` (inclusive) to ``upper`` (exclusive); None
    is open-ended. The reconciler asks Supabase to count or list exactly this stretch."""

    lower: Position | None = None
    upper: Position | None = None


@dataclass(frozen=True)
class ChangeMark:
    """A row as the reconciler's scan sees it: its change column's value, its key, and where
    the table's list puts it."""

    changed: str
    key: Any  # as Supabase renders it (int or str): keyset paging compares it typed
    position: tuple[Any, ...] | None = None


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
    time less the overlap); None before the first. ``scan_after``: the key (JSON) of the last
    row a scan cut short by its budget read, at ``scan_from``: the next one goes on past it
    (rows of one bulk update share one time; without the key it would read the same ones).
    ``change_column``: the column the last check found (``""``: none), and when that was
    checked. ``last_ok_ns``: when a cycle last
    finished without a failure (``make status`` and the dashboard show its age).
    ``healed_total``: rows healed so far, by cycles and their follow-ups (``make heal`` reports
    what one cycle added). ``pending``: keys a scan is healing now, written before their rows
    are: a cycle killed between the row writes and the publish leaves items that look healed to
    the next scan, so the next cycle publishes these first.
    """

    table: str
    scan_from: str | None = None
    scan_after: str | None = None
    change_column: str | None = None
    column_checked_ns: int = 0
    last_ok_ns: int = 0
    healed_total: int = 0
    # The cached list's whole fingerprint, for the head version it was summed for.
    print_version: str | None = None
    print_count: int = 0
    print_fp: int = 0
    pending: tuple[str, ...] = ()


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
        past ``after``; reads the key, the column and the list's order column only (each mark
        knows its position in the list). ``ColumnMissing`` if the table has no such column."""
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


class ListNodeBatchReads(Protocol):
    """Many list nodes in one round trip (a prefetch of what a patch will load)."""

    def get_nodes(self, keys: Sequence[str]) -> dict[str, IndexPage | ListChunk]:
        """The nodes of ``keys`` found (expiring ones left out), by key."""
        ...


class ServingReads(Protocol):
    """What the read API and ``waituntil.read.cache_client`` read: rows and pages as served."""

    def get_row_body(self, table: str, key: str) -> tuple[RowState, str] | None:
        """A live row's state and its JSON text (from the blob store if kept there)."""
        ...

    def get_head(self, table: str) -> ListHead | None: ...

    def get_version(self, table: str, version: str) -> ListHead | None: ...

    def get_index_page(self, key: str) -> IndexPage | None: ...

    def get_served_chunk(self, key: str) -> ServedChunk | None: ...


class CacheReads(ListNodeReads, ListNodeBatchReads, ServingReads, Protocol):
    """Everything the consumer reads back from the cache."""

    def get_rows(self, table: str, keys: Sequence[str]) -> dict[str, RowState]: ...

    def get_next_head(self, table: str) -> ListHead | None:
        """The version a rebuild is building apart (``/<table>#next``), if any."""
        ...

    def get_heads(self, table: str) -> tuple[ListHead | None, ListHead | None]:
        """``get_head`` and ``get_next_head`` in one round trip (each read strongly
        consistent; in no set order between the two)."""
        ...

    def start_get_heads(self, table: str) -> Callable[[], tuple[ListHead | None, ListHead | None]]:
        """``get_heads`` begun now, answered by calling the result: the heads as read at some
        moment between the two calls, so the caller can wait on something else meanwhile."""
        ...

    def start(self, work: Callable[[], T]) -> Callable[[], T]:
        """``work`` (reads of this store) begun now beside the caller, answered (or raised)
        by calling the result: the caller waits on something else meanwhile."""
        ...

    def get_attempts(self, table: str) -> list[PublishAttempt]:
        """Publishes registered and not yet settled (in flight, or killed)."""
        ...


class CacheWrites(Protocol):
    def write_rows(
        self,
        table: str,
        fresh: Sequence[FreshRow],
        *,
        read_at_ns: int,
        order: ListOrder,
        policy: str,
    ) -> RowWrites: ...

    def write_nodes(
        self, table: str, chunks: Sequence[ListChunk], pages: Sequence[IndexPage]
    ) -> int: ...

    def flip_head(
        self,
        head: ListHead,
        base: ListHead | None,
        *,
        chunks: Sequence[ListChunk] = (),
        pages: Sequence[IndexPage] = (),
    ) -> bool:
        """Make ``head`` current if the current head is still ``base``; False if it moved.

        Idempotent under a resend: a switch that applied but whose answer was lost is True.
        ``head.rebuild`` set: the head of ``/<table>#next`` instead (``base`` from there too).
        ``chunks`` and ``pages`` (at most ``NODES_WITH_SWITCH``) are written in the same
        step: all of it applies, or none (a switch that lost leaves no node behind).
        """
        ...

    def promote_head(self, head: ListHead, base: ListHead | None, rebuilt: ListHead) -> bool:
        """Make ``head`` (the content of ``rebuilt``, the version a rebuild built apart) the
        served head if it is still ``base``, and end ``rebuilt`` in the same step."""
        ...

    def clear_retiring(self, head: ListHead) -> None:
        """``head.retiring`` is done: drop it from the head item (if still that version)."""
        ...

    def retire(
        self,
        table: str,
        chunk_keys: Sequence[str],
        page_keys: Sequence[str],
        version: str | None,
    ) -> None:
        """Nodes (and the version) no longer current: kept for the grace period, then expire.
        A node already expiring keeps its time (retiring twice never shortens the grace)."""
        ...

    def register_attempt(self, table: str, attempt: PublishAttempt) -> None: ...

    def end_attempt(self, table: str, attempt: PublishAttempt) -> None: ...

    def prune_positions(self, table: str, stale: Mapping[str, frozenset[str]]) -> None: ...

    def get_checkpoint(self, table: str) -> SyncCheckpoint | None: ...

    def put_checkpoint(self, checkpoint: SyncCheckpoint | None, table: str) -> None: ...


class FillWrites(Protocol):
    """A first fill's batched puts and its journal (``sync/fill_journal``)."""

    def put_rows(
        self,
        table: str,
        fresh: Sequence[FreshRow],
        *,
        read_at_ns: int,
        policy: str,
        tags: Mapping[str, frozenset[str]],
    ) -> RowWrites:
        """Store each live row unconditionally (batched), its position tag plus ``tags``'s;
        ``states`` is what each item holds now. A resend puts the same item. Rows too large
        for an item take the conditional path (their body goes to the blob store)."""
        ...

    def journal_changes(
        self, table: str, keys: Sequence[str], tags: Mapping[str, frozenset[str]]
    ) -> JournalOutcome:
        """Add a change's keys (and, while no fill owns the journal, the position tags its
        write adds) to the journal, unless it is joined."""
        ...

    def open_journal(self, table: str, sync_id: str, *, head_exists: bool) -> FillJournal | None:
        """Own the journal for fill ``sync_id`` (again, after a resend or a resume); None if
        it may not put unconditionally (joined, overflowed, a rebuild began, another fill owns
        it; or a list exists but no journal: written before journals were kept)."""
        ...

    def read_journal(self, table: str) -> FillJournal | None: ...

    def join_journal(self, table: str, sync_id: str) -> FillJournal | None:
        """Close the journal: fill ``sync_id``'s puts have all landed. The journal as closed,
        or None if another closed it (or it is gone): then the fill cannot trust it."""
        ...

    def block_fills(self, table: str) -> bool:
        """A rebuild begins: no fill may put unconditionally from now on. False while a live
        fill owns an open journal (the rebuild waits for its join)."""
        ...

    def end_journal(self, table: str) -> None: ...


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

    def add_healed(self, table: str, count: int) -> None:
        """Add ``count`` to the state's ``healed_total``, touching no other attribute: a
        follow-up counts without the reconcile lease, beside a cycle saving its state."""
        ...

    def get_fingerprints(self, node_keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        """The (row count, fingerprint) of list nodes summed earlier: nodes never change, so
        neither do their sums."""
        ...

    def put_fingerprints(self, prints: Mapping[str, tuple[int, int]]) -> None: ...


class CacheStorePort(CacheReads, CacheWrites, FillWrites, LeaseStore, HealStateStore, Protocol):
    """The whole cache, as the consumer's flows use it (``adapters/cache_store.CacheStore``)."""
