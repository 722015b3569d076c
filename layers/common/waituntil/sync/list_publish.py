"""Publish a table's list: make it hold the winning state of some keys, optimistically.

``list_patch`` plans a patch (pure); this runs it against the store: read the head and the row
states, write the plan's nodes, switch the head if it is still the one read, else start over.

A publish is settled in one step with the switch: the new head carries what it replaced
(``ListHead.retiring``) until that is retired, and whoever next reads the head finishes it, so
a kill or a lost answer after the switch still retires the old version. Its nodes are
registered before they are written (``PublishAttempt``), so a publish killed before its switch
leaves nothing the sweep cannot find (``list_retire``).
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aws_lambda_powertools.metrics import MetricUnit

from waituntil.cache.list_patch import ListSizes, plan_patch
from waituntil.cache.model import (
    CacheStorePort,
    ListHead,
    PublishAttempt,
    PublishResult,
    RowState,
)
from waituntil.core.errors import ListContended, ListNodeMissing, RebuildSuperseded
from waituntil.core.list_order import ListOrder
from waituntil.core.observability import metrics
from waituntil.sync.list_retire import release_lost, retire_replaced
from waituntil.sync.ports import ConsumerPorts
from waituntil.sync.rebuild import ensure_rebuild

# A publish that keeps losing the race to other consumers gives up and lets SQS retry.
PUBLISH_ATTEMPTS = 12


def publish_rows(
    table: str, keys: Sequence[str], ports: ConsumerPorts, *, complete: bool | None = None
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

    def publish(head: str, complete: bool | None = None) -> _Published:
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
        )

    if ports.rebuild is not None:
        return publish(ports.rebuild).result
    floors: list[dict[str, int]] = []
    rebuilt = ports.store.get_next_head(table)
    if rebuilt is not None and rebuilt.rebuild and rebuilt.policy == policy:
        try:
            floors.append(publish(rebuilt.rebuild).listed)
        except RebuildSuperseded:
            # Switched to (the served publish below reaches it), or replaced by a newer
            # rebuild (which began after these rows were written, so it reads them itself).
            floors.append({})
    served = publish("", complete)
    if served.result.outcome == "rebuilding":
        ensure_rebuild(table, ports, rebuilt)
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
) -> _Published:
    """Read the head, then the row states (so they are at least as new as anything the head
    holds), plan the patch, register and write its nodes, switch the head if it is still the
    one read. If another consumer switched first, release the nodes and start over from the
    new head. ``head``: "" the served head; a rebuild's sync id, the version it builds apart.
    """
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        base = _building(store, table, head, policy) if head else store.get_head(table)
        if base is not None:
            retire_replaced(store, base)  # a switch whose retirement was cut short
            if base.policy != policy:
                return _Published(PublishResult(outcome="rebuilding", attempts=attempt))
        states = store.get_rows(table, keys)
        if not states and base is not None and complete is None:
            return _Published(
                PublishResult(outcome="unchanged", attempts=attempt, complete=base.complete)
            )
        try:
            plan = plan_patch(
                store,
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
            continue  # the head moved on and its nodes expired meanwhile: re-read it
        if plan.head is None:
            unchanged = PublishResult(
                outcome="unchanged",
                attempts=attempt,
                complete=base.complete if base is not None else True,
            )
            return _Published(unchanged, states, plan.listed_read_at)
        nodes = PublishAttempt(
            version=plan.head.version,
            chunks=tuple(chunk.key for chunk in plan.chunks),
            pages=tuple(page.key for page in plan.pages),
        )
        if plan.chunks or plan.pages:
            store.register_attempt(table, nodes)
            store.write_nodes(table, plan.chunks, plan.pages)
        if not store.flip_head(plan.head, base):
            release_lost(store, nodes, plan.chunks, table, order, policy)
            if plan.chunks or plan.pages:
                store.end_attempt(table, nodes)
            metrics.add_metric(name="ListPublishRetries", unit=MetricUnit.Count, value=1)
            time.sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311 - jitter, not crypto
            continue
        retire_replaced(store, plan.head)
        if plan.chunks or plan.pages:
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
    from now on can hold those states (I4), so nothing will look for them there."""
    stale: dict[str, frozenset[str]] = {}
    for key, state in states.items():
        floor = listed.get(key)
        if floor is None or len(state.positions) < 2:
            continue
        old = frozenset(tag for tag in state.positions if int(tag.split("|", 1)[0]) < floor)
        if old and len(old) < len(state.positions):
            stale[key] = old
    if stale:
        store.prune_positions(table, stale)
