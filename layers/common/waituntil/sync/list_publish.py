"""Publish a table's list: make it hold the winning state of some keys, optimistically.

``list_patch`` plans a patch (pure); this runs it against the store: read the head and the row
states, write the plan's nodes, switch the head if it is still the one read, else start over.

A publish is settled in one step with the switch: the new head carries what it replaced
(``ListHead.retiring``) until that is retired, and whoever next reads the head finishes it, so
a kill or a lost answer after the switch still retires the old version (a change's publish
leaves it to the next change on purpose, which retires it beside its Supabase read). Its nodes are
registered before they are written (``PublishAttempt``), so a publish killed before its switch
leaves nothing the sweep cannot find (``list_retire``).
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from aws_lambda_powertools.metrics import MetricUnit

from waituntil.cache.list_patch import ListSizes, plan_patch
from waituntil.cache.model import (
    NODES_WITH_SWITCH,
    CacheStorePort,
    IndexPage,
    ListChunk,
    ListHead,
    PublishAttempt,
    PublishResult,
    RowState,
    parse_position_tag,
)
from waituntil.core.errors import ListContended, ListNodeMissing, RebuildSuperseded
from waituntil.core.list_order import ListOrder
from waituntil.core.observability import metrics
from waituntil.sync.list_prefetch import KnownNodes
from waituntil.sync.list_retire import release_lost, retire_replaced
from waituntil.sync.ports import ConsumerPorts
from waituntil.sync.rebuild import ensure_rebuild

# A publish that keeps losing the race to other consumers gives up and lets SQS retry.
PUBLISH_ATTEMPTS = 12
# A lost switch's wait: 20 ms, doubling, at most 0.4 s (12 attempts wait 1.7 s on average).
BACKOFF_BASE_S = 0.02
BACKOFF_CAP_S = 0.4


@dataclass(frozen=True)
class ReadBefore:
    """What a change's publish knows already: both heads, read before its row writes were
    sent, and the states those writes answered (``RowWrites.states``). Each state is a read
    of its row made after the heads were read, which is all a publish's reads must be."""

    served: ListHead | None
    rebuilt: ListHead | None
    states: Mapping[str, RowState]
    # List nodes read ahead (``list_prefetch``): right for any head that reaches them.
    nodes: Mapping[str, IndexPage | ListChunk] = field(default_factory=dict)
    # Heads (by version) whose retirement (``ListHead.retiring``) was finished beside the
    # Supabase read (``list_prefetch.ReadAhead``): a publish from one of them has none to do.
    settled: frozenset[str] = frozenset()


def publish_rows(
    table: str,
    keys: Sequence[str],
    ports: ConsumerPorts,
    *,
    complete: bool | None = None,
    known: ReadBefore | None = None,
) -> PublishResult:
    """Publish ``keys`` to the table's list; a rebuild's own sync, to the version it builds.

    While a rebuild builds a version apart, every change goes to that version first, then to
    the served one: the version the rebuild switches to misses no change made meanwhile. A
    served list built with another table policy is not patched: a rebuild replaces it.

    Position tags are pruned once, after both: a tag one version no longer needs may still
    locate the row in the other. A rebuild's own pages prune nothing (the served version,
    which they do not patch, may still need every tag).
    """
    policy = ports.policy(table)

    def publish(
        head: str, complete: bool | None = None, base: ListHead | None = None
    ) -> _Published:
        return _publish(
            ports.store,
            table,
            keys,
            order=ports.list_order(table),
            sizes=ports.list_sizes,
            clock_ns=ports.clock_ns,
            complete=complete,
            policy=policy,
            head=head,
            first=None if known is None else (base, known.states),
            read_ahead=known.nodes if known is not None else None,
            settled=known.settled if known is not None else frozenset(),
            # A change leaves what its switch replaced on the new head, for the next change to
            # retire beside its own Supabase read: off the critical path of both.
            retire_later=known is not None,
            # A change's patch of a rebuild's version is not the rebuild's progress: the time
            # it was last modified stays the rebuild's own, by which a dead one is told.
            keep_modified=bool(head) and ports.rebuild is None,
        )

    if ports.rebuild is not None:
        return publish(ports.rebuild).result
    floors: list[dict[str, int]] = []
    rebuilt = known.rebuilt if known is not None else ports.store.get_next_head(table)
    if rebuilt is not None and rebuilt.rebuild and rebuilt.policy == policy:
        try:
            floors.append(publish(rebuilt.rebuild, base=rebuilt).listed)
        except RebuildSuperseded:
            # Switched to (the served publish below reaches it), or replaced by a newer
            # rebuild (which began after these rows were written, so it reads them itself).
            floors.append({})
    served = publish("", complete, base=known.served if known is not None else None)
    if served.result.outcome == "rebuilding":
        # Read again: this very publish may have switched the rebuild's version since.
        ensure_rebuild(table, ports, ports.store.get_next_head(table))
    else:
        floors.append(served.listed)
    listed = {
        key: min(floor.get(key, -1) for floor in floors)
        for key in served.states
        if floors and all(key in floor for floor in floors)
    }
    _prune(ports.store, table, served.states, listed)
    return served.result


def current_head(table: str, ports: ConsumerPorts) -> ListHead | None:
    """The head a full sync walks: the served one, or for a rebuild's sync the one it builds.
    None for a served list built with another policy (a rebuild replaces it whole)."""
    if ports.rebuild is not None:
        return _building(ports.store, table, ports.rebuild, ports.policy(table))
    head = ports.store.get_head(table)
    return head if head is not None and head.policy == ports.policy(table) else None


def publish_list(
    store: CacheStorePort,
    table: str,
    keys: Sequence[str],
    *,
    order: ListOrder,
    sizes: ListSizes,
    clock_ns: Callable[[], int] = time.time_ns,
    complete: bool | None = None,
    policy: str = "",
    head: str = "",
) -> PublishResult:
    """Make the list hold the winning state of each key, optimistically (one lineage: its
    position tags pruned after it)."""
    published = _publish(
        store,
        table,
        keys,
        order=order,
        sizes=sizes,
        clock_ns=clock_ns,
        complete=complete,
        policy=policy,
        head=head,
    )
    _prune(store, table, published.states, published.listed)
    return published.result


@dataclass(frozen=True)
class _Published:
    result: PublishResult
    states: dict[str, RowState] = field(default_factory=dict)  # the row states it used
    # Per key: the read the version now holds (its tags older than that are not needed by it).
    listed: dict[str, int] = field(default_factory=dict)


def _publish(
    store: CacheStorePort,
    table: str,
    keys: Sequence[str],
    *,
    order: ListOrder,
    sizes: ListSizes,
    clock_ns: Callable[[], int],
    complete: bool | None,
    policy: str,
    head: str,
    first: tuple[ListHead | None, Mapping[str, RowState]] | None = None,
    keep_modified: bool = False,
    read_ahead: Mapping[str, IndexPage | ListChunk] | None = None,
    settled: frozenset[str] = frozenset(),
    retire_later: bool = False,
) -> _Published:
    """Read the head, then the row states (so they are at least as new as anything the head
    holds), plan the patch, write its nodes, switch the head if it is still the one read. If
    another consumer switched first, start over from the new head. ``head``: "" the served
    head; a rebuild's sync id, the version it builds apart. ``first``: the head and the row
    states a change's publish read already, in that order (``ReadBefore``), for its first
    attempt; rows it lacks are read. ``read_ahead``: list nodes read ahead, used by every attempt
    (a node is right for any head that reaches it). A plan of a few nodes writes them in the
    switch's own transaction; a larger one registers and writes them first, and releases them
    if it lost.

    What a base replaced is retired before anything is switched from it (its ``retiring`` is
    on that head item only), unless it is ``settled`` already. What the new head replaced is
    retired after the switch, or with ``retire_later`` left on it: whoever next reads that
    head (the next change beside its Supabase read, any publish, the sweep) retires it.
    """
    reads = KnownNodes(read_ahead, store) if read_ahead else store
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        if attempt == 1 and first is not None:
            base = first[0]
            if head and (base is None or base.rebuild != head or base.policy != policy):
                raise RebuildSuperseded(f"the rebuild {head} of {table} is over")
        else:
            base = _building(store, table, head, policy) if head else store.get_head(table)
        # What the base carries to retire (left for us, or a retirement cut short) is retired
        # beside the reads and the plan, and waited for before anything is switched from it.
        retired = _retire_beside(store, base, settled)
        if base is not None and base.policy != policy:
            retired()
            return _Published(PublishResult(outcome="rebuilding", attempts=attempt))
        states = _states(store, table, keys, first[1] if attempt == 1 and first else None)
        if not states and base is not None and complete is None:
            retired()
            return _Published(
                PublishResult(outcome="unchanged", attempts=attempt, complete=base.complete)
            )
        try:
            plan = plan_patch(
                reads,
                table,
                base,
                states,
                order,
                sizes,
                now_ns=clock_ns(),
                nonce=secrets.token_hex(6),
                complete=complete if complete is not None else (None if base else False),
                policy=policy,
            )
        except ListNodeMissing:
            retired()
            continue  # the head moved on and its nodes expired meanwhile: re-read it
        retired()
        if plan.head is None:
            unchanged = PublishResult(
                outcome="unchanged",
                attempts=attempt,
                complete=base.complete if base is not None else True,
            )
            return _Published(unchanged, states, plan.listed_read_at)
        if keep_modified and base is not None:
            plan = replace(plan, head=replace(plan.head, modified_at_ns=base.modified_at_ns))
        assert plan.head is not None
        nodes = PublishAttempt(
            version=plan.head.version,
            chunks=tuple(chunk.key for chunk in plan.chunks),
            pages=tuple(page.key for page in plan.pages),
        )
        # A few nodes go in the switch's own transaction: nothing to register, nothing left
        # behind if it loses (at twice the write units of a plain write, for those nodes).
        apart = len(plan.chunks) + len(plan.pages) > NODES_WITH_SWITCH
        if apart:
            store.register_attempt(table, nodes)
            store.write_nodes(table, plan.chunks, plan.pages)
            switched = store.flip_head(plan.head, base)
        else:
            switched = store.flip_head(plan.head, base, chunks=plan.chunks, pages=plan.pages)
        if not switched:
            if apart:
                release_lost(store, nodes, plan.chunks, table, order, policy)
                store.end_attempt(table, nodes)
            metrics.add_metric(name="ListPublishRetries", unit=MetricUnit.Count, value=1)
            time.sleep(backoff_s(attempt))
            continue
        if not retire_later:
            retire_replaced(store, plan.head)
        if apart:
            store.end_attempt(table, nodes)
        published = PublishResult(
            outcome="created" if base is None else "published",
            chunks_written=len(plan.chunks),
            index_pages_written=len(plan.pages),
            attempts=attempt,
            complete=plan.head.complete,
        )
        return _Published(published, states, plan.listed_read_at)
    raise ListContended(f"the list of {table} kept moving; {PUBLISH_ATTEMPTS} attempts lost")


def backoff_s(attempt: int) -> float:
    """How long a publish that lost its switch waits before reading the head again:
    exponential with full jitter (AWS's "Exponential Backoff And Jitter"), capped, so that
    consumers racing on one head spread out instead of colliding again."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))  # noqa: S311 - jitter, not crypto


def _retire_beside(
    store: CacheStorePort, base: ListHead | None, settled: frozenset[str]
) -> Callable[[], None]:
    """``retire_replaced(base)`` begun now, unless there is nothing to do; call the result to
    wait for it (and raise what it raised)."""
    if base is None or base.retiring is None or base.version in settled:
        return lambda: None
    return store.start(lambda: retire_replaced(store, base))


def _states(
    store: CacheStorePort,
    table: str,
    keys: Sequence[str],
    known: Mapping[str, RowState] | None,
) -> dict[str, RowState]:
    """The row states of ``keys``: those ``known`` (read after the head), the rest read now."""
    if known is None:
        return store.get_rows(table, keys)
    states = {key: known[key] for key in keys if key in known}
    missing = [key for key in keys if key not in states]
    if missing:
        states.update(store.get_rows(table, missing))
    return states


def _building(store: CacheStorePort, table: str, rebuild: str, policy: str) -> ListHead:
    """The version rebuild ``rebuild`` builds. Gone, another rebuild's, or built with another
    policy than the one in force: that rebuild is over (superseded, switched to, outdated)."""
    head = store.get_next_head(table)
    if head is None or head.rebuild != rebuild or head.policy != policy:
        raise RebuildSuperseded(f"the rebuild {rebuild} of {table} is over")
    return head


def _prune(
    store: CacheStorePort, table: str, states: dict[str, RowState], listed: dict[str, int]
) -> None:
    """Drop position tags of states older than what the list now holds: no version published
    from now on can hold those states (I4), so nothing will look for them there.

    Not at every publish: a stale tag at the row's own position sends a patch nowhere the
    current one does not, so one such tag waits for the next (a write saved, off the critical
    path, at every other update of a row); two of them, or one elsewhere, are dropped now.
    """
    stale: dict[str, frozenset[str]] = {}
    for key, state in states.items():
        floor = listed.get(key)
        if floor is None or len(state.positions) < 2:
            continue
        old = frozenset(tag for tag in state.positions if int(tag.split("|", 1)[0]) < floor)
        if not old or len(old) == len(state.positions):
            continue
        elsewhere = any(parse_position_tag(tag)[1] != state.position for tag in old)
        if elsewhere or len(old) >= 2:
            stale[key] = old
    if stale:
        store.prune_positions(table, stale)
