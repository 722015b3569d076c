"""Patch a published list with the winning states of a few rows: pure planning, no I/O.

Over 300 lines on purpose: the plan, the tree it walks and the node sizing keep one set of
invariants (I2, I4, below) and change together.

A patch reads only the nodes that hold a touched row (or will), and writes only the chunks
whose content changed plus the index pages above them and a new head. Every node it did not
touch is carried over by key. Cost therefore follows the change, not the table.

Rules that make concurrent patches safe (``list_publish.publish_list`` retries a patch whose
base moved):
- the new entries come from the row items' winning states, read after the base head, so a
  published version never holds a row older than its base held (I2, I4);
- an entry newer than the state at hand is kept (a defensive check; it never happens when the
  caller reads states after the head);
- an entry whose content is unchanged is not rewritten, and a patch that changes nothing
  publishes nothing;
- a version is built with one table policy (its digest is on the head): a row state read
  with another policy is never listed, and a position of another order never located.

A chunk is one page of the read API and one DynamoDB item, so it is sized three ways: about
``chunk_bytes`` of rows as served (patch cost, page size), and never more than a Lambda response
carries (``MAX_CHUNK_RESPONSE_BYTES``: rows kept in the blob store count at their full size, the
reader puts them back) nor than an item holds (``MAX_CHUNK_ITEM_BYTES``: every attribute of the
chunk item, uncompressed). Only a single row can pass a limit, alone in its chunk.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from waituntil.cache.layout import chunk_node_key, index_node_key, served_chunk_json
from waituntil.cache.model import (
    ChunkRef,
    IndexPage,
    IndexRef,
    ListChunk,
    ListEntry,
    ListHead,
    ListNodeBatchReads,
    ListNodeReads,
    Retiring,
    RowState,
    parse_position_tag,
)
from waituntil.core.errors import ListNodeMissing
from waituntil.core.list_order import ListOrder, Position

# A page is served as one JSON string in a Lambda response (6 MB at most); the reader refuses a
# body over 6,000,000 bytes (``read.response``). A chunk stays a further 1 MB under that.
MAX_CHUNK_RESPONSE_BYTES = 5_000_000
# DynamoDB refuses an item over 400 KB (409,600 bytes; moto refuses over 405,000). A chunk item
# counted uncompressed, every attribute included, stays under this (compression only shrinks it).
MAX_CHUNK_ITEM_BYTES = 380_000
# The chunk item besides its rows: pk, kind, attribute names, the two arrays' brackets.
CHUNK_ITEM_OVERHEAD = 200


@dataclass(frozen=True)
class ListSizes:
    """Chunk and index page sizes; ``docs/BENCHMARKS.md`` shows how they were chosen."""

    chunk_bytes: int = 64_000  # target served bytes of one chunk (one page of the read API)
    index_refs: int = 128  # most chunk refs in one index page
    max_response_bytes: int = MAX_CHUNK_RESPONSE_BYTES  # hard limits, see the module's doc
    max_item_bytes: int = MAX_CHUNK_ITEM_BYTES

    @property
    def max_chunk_bytes(self) -> int:
        return 2 * self.chunk_bytes

    @property
    def min_chunk_bytes(self) -> int:
        return self.chunk_bytes // 2


@dataclass(frozen=True)
class PatchPlan:
    """What one publish writes; ``head`` None means the list already says all of it."""

    head: ListHead | None
    chunks: tuple[ListChunk, ...] = ()
    pages: tuple[IndexPage, ...] = ()
    retired_chunks: tuple[str, ...] = ()
    retired_pages: tuple[str, ...] = ()
    # Per touched key: the read the version now holds (None: not listed). Position tags older
    # than this can never be needed again (I4), so they are pruned after the publish.
    listed_read_at: dict[str, int] = field(default_factory=dict)


def entry_of(state: RowState, policy: str = "") -> ListEntry | None:
    """The list entry of a row state; None when gone, or read with another table policy (it
    must not be listed until a read with the policy in force replaces it)."""
    if state.body is None or state.position is None or state.policy != policy:
        return None
    return ListEntry(
        key=state.key,
        read_at_ns=state.read_at_ns,
        position=state.position,
        etag=state.body.etag,
        text=None if state.blob_key else state.body.text,
        blob_key=state.blob_key,
        blob_bytes=state.blob_bytes,
    )


def candidate_positions(state: RowState, order: ListOrder, policy: str = "") -> list[Position]:
    """Every place the row may be listed now: its tags, and where its state puts it.

    Tags written under another order (a key order's ``[key]`` in a column order's list) are
    skipped: a list is built in one order, so they cannot say where it holds the row.
    """
    arity = 1 if order.by_key else 2
    positions = [parse_position_tag(tag)[1] for tag in sorted(state.positions)]
    if state.position is not None and state.policy == policy:
        positions.append(state.position)
    return [position for position in positions if len(position) == arity]


def plan_patch(
    reads: ListNodeReads,
    table: str,
    base: ListHead | None,
    states: Mapping[str, RowState],
    order: ListOrder,
    sizes: ListSizes,
    *,
    now_ns: int,
    nonce: str,
    complete: bool | None = None,
    policy: str = "",
    rebuild: str | None = None,
) -> PatchPlan:
    """The nodes and head that make ``base`` hold ``states`` (winning row states by key).

    ``base`` must have been built with ``policy`` (None: a fresh version; ``rebuild``: the id
    of the rebuild it is built apart for). The new head carries what it replaced in
    ``retiring`` until it is retired.
    """
    names = _Names(table, nonce)
    base_pages = list(base.pages) if base is not None else []
    tree = _Tree(reads, base_pages, order)

    # Load every chunk that may hold a touched row now, or will hold it.
    for state in states.values():
        for position in candidate_positions(state, order, policy):
            tree.load(tree.locate(position))
    old: dict[str, tuple[tuple[int, int], ListEntry]] = {}
    for location, entries in tree.chunks.items():
        for entry in entries:
            if entry.key in states:
                old[entry.key] = (location, entry)

    listed: dict[str, int] = {}
    for key, state in states.items():
        new = entry_of(state, policy)
        found = old.get(key)
        if found is not None and found[1].read_at_ns > state.read_at_ns:
            # Never replace a newer listed row with an older state (I4).
            listed[key] = found[1].read_at_ns
            continue
        if found is not None and new is not None and found[1].same_content(new):
            listed[key] = found[1].read_at_ns
            continue
        listed[key] = state.read_at_ns
        if found is not None:
            tree.remove(found[0], key)
        if new is not None:
            tree.insert(tree.locate(new.position), new)

    same_flag = complete is None or (base.complete if base else True) == complete
    if not tree.modified and same_flag and base is not None:
        return PatchPlan(head=None, listed_read_at=listed)
    tree.merge_small(sizes)

    new_refs: list[IndexRef] = []
    new_chunks: list[ListChunk] = []
    new_pages: list[IndexPage] = []
    retired_chunks: list[str] = []
    retired_pages: list[str] = []
    for page_number in range(tree.page_count):
        if page_number not in tree.modified_pages:
            if page_number < len(base_pages):
                new_refs.append(base_pages[page_number])
            continue
        refs = tree.refs(page_number)
        page_refs: list[ChunkRef] = []
        chunk_number = 0
        while chunk_number < max(len(refs), 1):
            if (page_number, chunk_number) not in tree.modified:
                page_refs.append(refs[chunk_number])
                chunk_number += 1
                continue
            run: list[ListEntry] = []
            while (page_number, chunk_number) in tree.modified:
                run += tree.chunks[(page_number, chunk_number)]
                if chunk_number < len(refs):
                    retired_chunks.append(refs[chunk_number].key)
                chunk_number += 1
            run.sort(key=lambda entry: order.sort_key(entry.position))
            for piece in _split_entries(run, sizes):
                chunk = ListChunk(key=names.chunk(), entries=tuple(piece))
                new_chunks.append(chunk)
                page_refs.append(chunk_ref(chunk))
        if page_number < len(base_pages):
            retired_pages.append(base_pages[page_number].key)
        for group in _split_refs(page_refs, sizes.index_refs):
            node = IndexPage(key=names.page(), chunks=tuple(group))
            new_pages.append(node)
            new_refs.append(_index_ref(node))

    read_at = max([state.read_at_ns for state in states.values()], default=0)
    head = ListHead(
        table=table,
        version=f"{now_ns}-{nonce}",
        pages=tuple(new_refs),
        row_count=sum(ref.row_count for ref in new_refs),
        list_bytes=_list_bytes(new_refs),
        etag=_digest(ref.key for ref in new_refs),
        read_at_ns=max(read_at, base.read_at_ns if base else 0),
        modified_at_ns=now_ns,
        complete=(base.complete if base is not None else True) if complete is None else complete,
        policy=policy,
        rebuild=base.rebuild if base is not None else rebuild,
        retiring=Retiring(
            chunks=tuple(retired_chunks),
            pages=tuple(retired_pages),
            versions=(base.version,) if base is not None else (),
        )
        if base is not None
        else None,
    )
    return PatchPlan(
        head=head,
        chunks=tuple(new_chunks),
        pages=tuple(new_pages),
        retired_chunks=tuple(retired_chunks),
        retired_pages=tuple(retired_pages),
        listed_read_at=listed,
    )


Location = tuple[int, int]  # (index page number, chunk number within it) in the base version


class _Tree:
    """The base version's nodes that a patch loaded, and what the patch changed in them."""

    def __init__(self, reads: ListNodeReads, pages: list[IndexRef], order: ListOrder) -> None:
        self._reads = reads
        self._pages = pages
        self._order = order
        self._page_firsts = [order.sort_key(ref.first) for ref in pages]
        self._loaded_pages: dict[int, IndexPage] = {}
        self._chunk_firsts: dict[int, list[tuple[Any, ...]]] = {}
        self.chunks: dict[Location, list[ListEntry]] = {}
        self.modified: set[Location] = set()

    @property
    def page_count(self) -> int:
        return max(len(self._pages), 1)

    @property
    def modified_pages(self) -> set[int]:
        return {page for page, _ in self.modified}

    def refs(self, page_number: int) -> tuple[ChunkRef, ...]:
        if not self._pages:
            return ()
        if page_number not in self._loaded_pages:
            self._loaded_pages[page_number] = _load_page(self._reads, self._pages[page_number].key)
        return self._loaded_pages[page_number].chunks

    def locate(self, position: Position) -> Location:
        sort_key = self._order.sort_key(position)
        page = max(0, bisect_right(self._page_firsts, sort_key) - 1) if self._pages else 0
        if page not in self._chunk_firsts:
            self._chunk_firsts[page] = [self._order.sort_key(ref.first) for ref in self.refs(page)]
        return page, max(0, bisect_right(self._chunk_firsts[page], sort_key) - 1)

    def load(self, location: Location) -> list[ListEntry]:
        if location not in self.chunks:
            refs = self.refs(location[0])
            entries = _load_chunk(self._reads, refs[location[1]].key) if refs else ()
            self.chunks[location] = list(entries)
        return self.chunks[location]

    def remove(self, location: Location, key: str) -> None:
        self.chunks[location] = [entry for entry in self.chunks[location] if entry.key != key]
        self.modified.add(location)

    def insert(self, location: Location, entry: ListEntry) -> None:
        self.load(location).append(entry)
        self.modified.add(location)

    def merge_small(self, sizes: ListSizes) -> None:
        """A chunk shrunk below half the target takes in a neighbour (re-split if too big)."""
        for page, number in sorted(self.modified):
            refs = self.refs(page)
            if len(refs) < 2 or _size(self.chunks[(page, number)]) >= sizes.min_chunk_bytes:
                continue
            neighbour = (page, number + 1 if number + 1 < len(refs) else number - 1)
            self.load(neighbour)
            self.modified.add(neighbour)


def nodes_holding(
    reads: ListNodeBatchReads,
    heads: Sequence[ListHead],
    positions: Iterable[Position],
    order: ListOrder,
    known: Mapping[str, IndexPage | ListChunk] | None = None,
) -> dict[str, IndexPage | ListChunk]:
    """The index pages and chunks of ``heads`` where ``positions`` are, or would go: what a
    patch of rows at those positions loads first (``_Tree.locate``), read in two batches
    (the pages, then their chunks) and added to ``known``. Nodes never change, so what this
    returns is right for any head that reaches it, however late the patch is planned."""
    nodes: dict[str, IndexPage | ListChunk] = dict(known or {})
    arity = 1 if order.by_key else 2
    wanted = [position for position in positions if len(position) == arity]
    on_page: dict[str, list[Position]] = {}
    for head in heads:
        if not head.pages:
            continue
        firsts = [ref.first for ref in head.pages]
        for position in wanted:
            key = head.pages[locate(firsts, position, order)].key
            on_page.setdefault(key, []).append(position)
    missing = [key for key in on_page if key not in nodes]
    if missing:
        nodes.update(reads.get_nodes(missing))
    chunk_keys: list[str] = []
    for key, held in on_page.items():
        page = nodes.get(key)
        if not isinstance(page, IndexPage) or not page.chunks:
            continue  # gone (the head moved on and it expired): the patch finds out itself
        firsts = [ref.first for ref in page.chunks]
        chunk_keys += [page.chunks[locate(firsts, position, order)].key for position in held]
    missing = [key for key in dict.fromkeys(chunk_keys) if key not in nodes]
    if missing:
        nodes.update(reads.get_nodes(missing))
    return nodes


def locate(firsts: Sequence[Position], position: Position, order: ListOrder) -> int:
    """Which of the nodes starting at ``firsts`` holds ``position`` (the first if before all)."""
    keys = [order.sort_key(first) for first in firsts]
    return max(0, bisect_right(keys, order.sort_key(position)) - 1)


# ----- loading, sizes and refs ----------------------------------------------------------------


def _load_page(reads: ListNodeReads, key: str) -> IndexPage:
    page = reads.get_index_page(key)
    if page is None:
        raise ListNodeMissing(f"index page {key} of the base version is gone")
    return page


def _load_chunk(reads: ListNodeReads, key: str) -> tuple[ListEntry, ...]:
    chunk = reads.get_chunk(key)
    if chunk is None:
        raise ListNodeMissing(f"chunk {key} of the base version is gone")
    return chunk.entries


def _size(entries: Iterable[ListEntry]) -> int:
    return 1 + sum(entry.size for entry in entries)


@dataclass
class _Measure:
    """A chunk's running size three ways (served, in a Lambda response, as an item)."""

    served: int = 1
    response: int = 4  # the array's brackets, and the quotes of the JSON string it travels in
    stored: int = CHUNK_ITEM_OVERHEAD
    rows: int = 0

    @classmethod
    def of(cls, entries: Iterable[ListEntry]) -> _Measure:
        measure = cls()
        for entry in entries:
            measure.add(entry)
        return measure

    def add(self, entry: ListEntry) -> None:
        self.served += entry.size
        self.response += entry.response_bytes
        self.stored += entry.stored_bytes
        self.rows += 1

    def fits(self, entry: ListEntry | None, sizes: ListSizes, target: int) -> bool:
        """Whether ``entry`` (None: nothing) can join without passing ``target`` served bytes
        or either hard limit. An empty chunk takes any one row."""
        if entry is None:
            served, response, stored = self.served, self.response, self.stored
        elif self.rows == 0:
            return True
        else:
            served = self.served + entry.size
            response = self.response + entry.response_bytes
            stored = self.stored + entry.stored_bytes
        return (
            served <= target
            and response <= sizes.max_response_bytes
            and stored <= sizes.max_item_bytes
        )


def _split_entries(run: list[ListEntry], sizes: ListSizes) -> list[list[ListEntry]]:
    """Pieces of about ``chunk_bytes`` within the hard limits; a small tail joins the piece
    before it when both fit in one."""
    if not run:
        return []
    if _Measure.of(run).fits(None, sizes, sizes.max_chunk_bytes):
        return [run]
    pieces: list[list[ListEntry]] = [[]]
    measure = _Measure()
    for entry in run:
        if not measure.fits(entry, sizes, sizes.chunk_bytes):
            pieces.append([])
            measure = _Measure()
        pieces[-1].append(entry)
        measure.add(entry)
    if len(pieces) > 1 and _size(pieces[-1]) < sizes.min_chunk_bytes:
        joined = pieces[-2] + pieces[-1]
        if _Measure.of(joined).fits(None, sizes, sizes.max_chunk_bytes):
            pieces[-2:] = [joined]
    return pieces


def _split_refs(refs: list[ChunkRef], most: int) -> list[list[ChunkRef]]:
    if not refs:
        return []
    if len(refs) <= most:
        return [refs]
    half = max(1, most // 2)
    return [refs[start : start + half] for start in range(0, len(refs), half)]


def chunk_ref(chunk: ListChunk) -> ChunkRef:
    served = served_chunk_json(chunk.entries)
    blobs = [entry.blob_key or "" for entry in chunk.entries]
    return ChunkRef(
        key=chunk.key,
        etag=_digest([served, *blobs]),
        first=chunk.entries[0].position,
        row_count=len(chunk.entries),
        size=len(served.encode()),
    )


def _index_ref(page: IndexPage) -> IndexRef:
    return IndexRef(
        key=page.key,
        first=page.chunks[0].first,
        chunk_count=len(page.chunks),
        row_count=sum(ref.row_count for ref in page.chunks),
        size=sum(ref.size for ref in page.chunks),
    )


def _list_bytes(refs: Sequence[IndexRef]) -> int:
    # The whole list as one JSON array: each chunk's array without its brackets, joined.
    chunks = sum(ref.chunk_count for ref in refs)
    inner = sum(ref.size - 2 for ref in refs) + max(chunks - 1, 0)
    return 2 + max(inner, 0)


def _digest(parts: Iterable[str]) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(part.encode())
        sha.update(b"\x00")
    return sha.hexdigest()[:32]


@dataclass
class _Names:
    """Unique node keys: nothing ever overwrites a node a published version refers to."""

    table: str
    nonce: str
    counter: int = 0

    def chunk(self) -> str:
        self.counter += 1
        return chunk_node_key(self.table, f"{self.nonce}.{self.counter}")

    def page(self) -> str:
        self.counter += 1
        return index_node_key(self.table, f"{self.nonce}.{self.counter}")
