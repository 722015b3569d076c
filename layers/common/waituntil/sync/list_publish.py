"""Publish a table's list: make it hold the winning state of some keys, optimistically.

``list_patch`` plans a patch (pure); this runs it against the store: read the head and the row
states, write the plan's nodes, flip the head if it is still the one read, else start over.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Sequence

from aws_lambda_powertools.metrics import MetricUnit

from waituntil.cache.list_patch import ListSizes, plan_patch
from waituntil.cache.model import CacheStorePort, PublishResult, RowState
from waituntil.core.errors import ListContended, ListNodeMissing
from waituntil.core.list_order import ListOrder
from waituntil.core.observability import metrics
from waituntil.sync.ports import ConsumerPorts

# A publish that keeps losing the race to other consumers gives up and lets SQS retry.
PUBLISH_ATTEMPTS = 12


def publish_rows(
    table: str, keys: Sequence[str], ports: ConsumerPorts, *, complete: bool | None = None
) -> PublishResult:
    return publish_list(
        ports.store,
        table,
        keys,
        order=ports.list_order(table),
        sizes=ports.list_sizes,
        clock_ns=ports.clock_ns,
        complete=complete,
    )


def publish_list(
    store: CacheStorePort,
    table: str,
    keys: Sequence[str],
    *,
    order: ListOrder,
    sizes: ListSizes,
    clock_ns: Callable[[], int] = time.time_ns,
    complete: bool | None = None,
) -> PublishResult:
    """Make the list hold the winning state of each key, optimistically.

    Read the head, then the row states (so they are at least as new as anything the head
    holds), plan the patch, write its nodes, flip the head if it is still the one read. If
    another consumer flipped first, discard the nodes and start over from the new head.
    """
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        base = store.get_head(table)
        states = store.get_rows(table, keys)
        if not states and base is not None and complete is None:
            return PublishResult(outcome="unchanged", attempts=attempt, complete=base.complete)
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
            )
        except ListNodeMissing:
            continue  # the head moved on and its nodes expired meanwhile: re-read it
        if plan.head is None:
            _prune(store, table, states, plan.listed_read_at)
            return PublishResult(
                outcome="unchanged",
                attempts=attempt,
                complete=base.complete if base is not None else True,
            )
        store.write_nodes(table, plan.chunks, plan.pages)
        if not store.flip_head(plan.head, base):
            store.discard([chunk.key for chunk in plan.chunks], [page.key for page in plan.pages])
            metrics.add_metric(name="ListPublishRetries", unit=MetricUnit.Count, value=1)
            time.sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311 - jitter, not crypto
            continue
        store.retire(table, plan.retired_chunks, plan.retired_pages, base.version if base else None)
        _prune(store, table, states, plan.listed_read_at)
        return PublishResult(
            outcome="created" if base is None else "published",
            chunks_written=len(plan.chunks),
            index_pages_written=len(plan.pages),
            attempts=attempt,
            complete=plan.head.complete,
        )
    raise ListContended(f"the list of {table} kept moving; {PUBLISH_ATTEMPTS} attempts lost")


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
