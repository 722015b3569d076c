"""The reconciler's range comparison: deletes (and inserts the change column missed), found by
counting, at a cost that follows the differences; with fingerprints, updates too.

The cache already knows, for every node of its list, where the node starts and how many rows it
holds: the head knows its index pages, a page its chunks, a chunk its rows. A node's range runs
from its first position to the next node's. Supabase counts any such range in one ``HEAD`` with
``Prefer: count=exact``. Where the two counts agree the range is taken as equal; where they
differ it is cut in two at the cache's node boundary nearest its middle (one count for the left
part, the right one follows by subtraction), down through pages and chunks to single rows, until
the rows that differ can be listed by reading only the keys of a small range (range-based set
reconciliation, as Negentropy does with counts and fingerprints). d differences among n rows
cost O(d log n) counts and about d rows read.

What counts cannot see: a lost delete and a lost insert in one range cancel out, and an update
changes no count. The change column's scan (``heal_scan``) finds inserts and updates; a table
with ``"fingerprint": true`` compares, with each count, the sum of its rows' hashes
(``cache.fingerprint``; the database computes its side with the SQL function of
``supabase/migrations``), which sees both. What is left is the scheduled full resync's.

Nothing is written here but the nodes' fingerprints: the keys found go back to the cycle
(``reconcile``), which checks them again by key after the settle time and heals what still
differs.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from waituntil.cache.fingerprint import MODULUS, row_hash
from waituntil.cache.model import CacheStorePort, ListHead, PositionRange
from waituntil.core.errors import ReconcileFailed
from waituntil.core.list_order import ListOrder, Position
from waituntil.sync.ports import ConsumerPorts

# A range where Supabase has rows the cache lacks (or, with fingerprints, rows that differ),
# this small (Supabase's count), is settled by reading its keys (or its rows' hashes): a few
# rows read instead of a few more requests.
LEAF_ROWS = 8


@dataclass(frozen=True)
class _Node:
    """One part of the cached list: an index page, a chunk, or a single row (``key``)."""

    first: Position
    count: int
    page: str | None = None
    chunk: str | None = None
    key: str | None = None
    text: str | None = None  # a row's cached JSON (None: kept in the blob store)


@dataclass
class _Range:
    nodes: list[_Node]  # siblings, in list order, covering [lower, upper)
    lower: Position | None
    upper: Position | None
    supabase: int  # Supabase's count of [lower, upper)
    supabase_fp: int | None = None  # and its fingerprint, for a table that has them

    @property
    def cached(self) -> int:
        return sum(node.count for node in self.nodes)

    @property
    def bounds(self) -> PositionRange:
        return PositionRange(self.lower, self.upper)


@dataclass
class RangeResult:
    keys: set[str] = field(default_factory=set)  # keys that differ (to check again by key)
    requests: int = 0
    rounds: int = 0  # requests one after another (one level's counts go out together)
    rows_read: int = 0
    complete: bool = True  # False: out of budget with ranges still unresolved
    too_many: bool = False  # more differences than a cycle may read: the backstop's job


def find_differences(
    table: str,
    head: ListHead,
    supabase_total: int,
    ports: ConsumerPorts,
    *,
    max_requests: int,
    max_keys: int,
    supabase_fp: int | None = None,
    uncounted: Sequence[Position] = (),
) -> RangeResult:
    """Compare ``head``'s list with Supabase range by range, from the whole table (whose count
    is ``supabase_total``, and fingerprint ``supabase_fp`` if compared) down to the rows that
    differ. ``uncounted``: positions of rows Supabase counts that the list is not expected to
    hold yet (too young: their webhook may still come); counts compared leave them out."""
    order = ports.list_order(table)
    tree = _Tree(ports.store, table)
    result = RangeResult()
    roots = [_Node(first=page.first, count=page.row_count, page=page.key) for page in head.pages]
    young = sorted(order.sort_key(tuple(position)) for position in uncounted)
    frontier = [_Range(roots, None, None, supabase_total - len(young), supabase_fp)]
    prints = supabase_fp is not None
    while frontier:
        halves: list[tuple[_Range, _Range]] = []
        for part in frontier:
            split = _settle(part, tree, order, table, ports, result, max_keys)
            if split is not None:
                halves.append(split)
        if not halves:
            break
        if result.requests + len(halves) > max_requests:
            result.complete = False
            break
        bounds = [left.bounds for left, _ in halves]
        if prints:
            measured = [
                (p.count, p.fingerprint) for p in ports.source.fingerprint_ranges(table, bounds)
            ]
        else:
            counts = ports.source.count_rows(table, bounds)
            measured = [
                (count - _within(young, order, part), 0)
                for count, part in zip(counts, bounds, strict=True)
            ]
        result.requests += len(halves)
        result.rounds += 1
        frontier = []
        for (left, right), (count, fingerprint) in zip(halves, measured, strict=True):
            # The right part's count (and fingerprint: sums add up) follows from its parent's.
            # Counts taken at different moments may disagree while rows change: a range taken
            # as equal by mistake is found by the next cycle, one taken as differing costs a
            # few requests.
            right.supabase = max(left.supabase - count, 0)
            left.supabase = count
            if prints:
                assert left.supabase_fp is not None
                right.supabase_fp = (left.supabase_fp - fingerprint) % MODULUS
                left.supabase_fp = fingerprint
            frontier += [left, right]
    tree.save()
    return result


def _settle(
    part: _Range,
    tree: _Tree,
    order: ListOrder,
    table: str,
    ports: ConsumerPorts,
    result: RangeResult,
    max_keys: int,
) -> tuple[_Range, _Range] | None:
    """Settle one range: equal, read, or cut in two (returned, the left part's count to ask)."""
    prints = part.supabase_fp is not None
    while True:
        cached, supabase = part.cached, part.supabase
        if supabase == cached and (not prints or tree.fingerprint(part.nodes) == part.supabase_fp):
            return None
        if supabase == 0:
            # Supabase has none of them: every cached row of the range is to be checked.
            result.keys |= set(tree.keys(part.nodes))
            return None
        if len(part.nodes) == 1 and part.nodes[0].key is None:
            part.nodes = tree.children(part.nodes[0])
            continue
        # Read the range's keys when that costs at most about two rows per difference: the
        # differences are most of it, or Supabase holds rows the cache lacks (or, with
        # fingerprints, rows that differ) in a small range, or around a single cached row. Rows
        # the cache holds and Supabase no longer has are otherwise cut down to ranges Supabase
        # counts 0 in: found with counts, no row read.
        gained = supabase > cached or (prints and supabase == cached)
        if (
            supabase <= 2 * abs(cached - supabase)
            or (gained and supabase <= LEAF_ROWS)
            or (gained and len(part.nodes) <= 1)
        ):
            if supabase > max_keys - result.rows_read:
                result.too_many = True
                return None
            if prints:
                _read_hashes(part, tree, table, ports, result)
            else:
                _read_keys(part, tree, table, ports, result)
            return None
        return _halves(part)


def _within(young: list[tuple[Any, ...]], order: ListOrder, bounds: PositionRange) -> int:
    """How many of the sorted sort keys ``young`` fall in ``bounds``."""
    if not young:
        return 0
    low = 0 if bounds.lower is None else bisect_left(young, order.sort_key(tuple(bounds.lower)))
    high = (
        len(young)
        if bounds.upper is None
        else bisect_left(young, order.sort_key(tuple(bounds.upper)))
    )
    return max(high - low, 0)


def _halves(part: _Range) -> tuple[_Range, _Range]:
    """Cut at the node boundary nearest the middle of the cached rows."""
    total, running, cut = part.cached, 0, 1
    best = total
    for index, node in enumerate(part.nodes[:-1], start=1):
        running += node.count
        if abs(2 * running - total) < best:
            best, cut = abs(2 * running - total), index
    middle = part.nodes[cut].first
    left = _Range(part.nodes[:cut], part.lower, middle, part.supabase, part.supabase_fp)
    fingerprint = 0 if part.supabase_fp is not None else None
    right = _Range(part.nodes[cut:], middle, part.upper, 0, fingerprint)
    return left, right


def _read_keys(
    part: _Range, tree: _Tree, table: str, ports: ConsumerPorts, result: RangeResult
) -> None:
    """List the range's keys in Supabase (keyset pages) and diff them with the cache's."""
    found: list[str] = []
    lower = part.lower
    page = ports.settings.page_size
    while True:
        positions = ports.source.positions_in_range(
            table, PositionRange(lower, part.upper), page + (1 if found else 0)
        )
        result.requests += 1
        result.rounds += 1
        result.rows_read += len(positions)
        if found and positions:
            positions = positions[1:]  # the lower bound is inclusive: the last row again
        if not positions:
            break
        found += [str(position[-1]) for position in positions]
        lower = positions[-1]
        if len(found) >= part.supabase and len(positions) < page:
            break  # all the count promised (a short page alone may be max-rows cutting it)
    cached = set(tree.keys(part.nodes))
    result.keys |= cached.symmetric_difference(found)


def _read_hashes(
    part: _Range, tree: _Tree, table: str, ports: ConsumerPorts, result: RangeResult
) -> None:
    """The range's rows' hashes from the database, diffed with the cache's: a key on one side
    only, or whose hashes differ."""
    (answer,) = ports.source.fingerprint_ranges(table, [part.bounds], with_rows=True)
    result.requests += 1
    result.rounds += 1
    result.rows_read += answer.count
    theirs = answer.rows or {}
    ours = tree.hashes(part.nodes)
    result.keys |= {key for key in set(theirs) | set(ours) if theirs.get(key) != ours.get(key)}


class _Tree:
    """The cached list's nodes, loaded as the comparison descends into them, and their
    fingerprints: summed once per node (nodes never change) and kept beside it."""

    def __init__(self, store: CacheStorePort, table: str) -> None:
        self._store = store
        self._table = table
        self._prints: dict[str, tuple[int, int]] = {}
        self._new: dict[str, tuple[int, int]] = {}

    def children(self, node: _Node) -> list[_Node]:
        if node.page is not None:
            page = self._store.get_index_page(node.page)
            if page is None:
                raise ReconcileFailed(f"index page {node.page} expired during the comparison")
            return [_Node(ref.first, ref.row_count, chunk=ref.key) for ref in page.chunks]
        assert node.chunk is not None
        chunk = self._store.get_chunk(node.chunk)
        if chunk is None:
            raise ReconcileFailed(f"chunk {node.chunk} expired during the comparison")
        return [_Node(entry.position, 1, key=entry.key, text=entry.text) for entry in chunk.entries]

    def keys(self, nodes: Sequence[_Node]) -> list[str]:
        keys: list[str] = []
        for node in nodes:
            keys += [node.key] if node.key is not None else self.keys(self.children(node))
        return keys

    def hashes(self, nodes: Sequence[_Node]) -> dict[str, int]:
        hashes: dict[str, int] = {}
        for node in nodes:
            if node.key is not None:
                hashes[node.key] = self._row_hash(node)
            else:
                hashes.update(self.hashes(self.children(node)))
        return hashes

    def fingerprint(self, nodes: Sequence[_Node]) -> int:
        """The sum of the rows' hashes under ``nodes``, from the nodes' kept sums where there
        are some (one read for all of them), else from the nodes themselves."""
        wanted = [node.page or node.chunk for node in nodes if node.key is None]
        missing = [key for key in wanted if key is not None and key not in self._prints]
        if missing:
            self._prints.update(self._store.get_fingerprints(missing))
        total = 0
        for node in nodes:
            total += self._node_print(node)
        return total % MODULUS

    def _node_print(self, node: _Node) -> int:
        if node.key is not None:
            return self._row_hash(node)
        name = node.page or node.chunk
        assert name is not None
        if name not in self._prints:
            children = self.children(node)
            value = (node.count, self.fingerprint(children))
            self._prints[name] = self._new[name] = value
        return self._prints[name][1]

    def _row_hash(self, node: _Node) -> int:
        assert node.key is not None
        text = node.text
        if text is None:  # the body is in the blob store
            found = self._store.get_row_body(self._table, node.key)
            text = found[1] if found is not None else "null"
        return row_hash(text)

    def save(self) -> None:
        """Keep the sums computed this cycle beside their nodes, for the next cycles."""
        if self._new:
            self._store.put_fingerprints(self._new)
            self._new = {}


def cached_fingerprint(store: CacheStorePort, table: str, head: ListHead) -> int:
    """The whole cached list's fingerprint (from its index pages' kept sums)."""
    tree = _Tree(store, table)
    roots = [_Node(first=page.first, count=page.row_count, page=page.key) for page in head.pages]
    value = tree.fingerprint(roots)
    tree.save()
    return value
