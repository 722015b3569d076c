"""Rebuild a table's list as a fresh version, apart from the one readers are served.

A rebuild is a full sync (``full_sync``) whose pages patch a version of their own, kept at
``/<table>#next`` and never served, starting empty. While it runs, every change is published to
that version first and to the served one after (``list_publish.publish_rows``), so it misses
none. Its deletes phase walks its own version, then the served one it replaces (a row only that
one lists, its delete lost, would otherwise stay a live item no list holds). Then one switch
(``promote``) makes it the served head and ends the rebuild; what the served version used is
retired with the grace period. Readers keep
the served version until then (I6): no downtime, no half-built list.

Two things start one: ``make rebuild`` (an operator: a list that is inconsistent for a reason
no patch can repair), and a consumer that finds the served list built with another table
policy (``ensure_rebuild``: the policy changed). A newer rebuild replaces an older one's
version; the older then stops (``RebuildSuperseded``).
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime

from aws_lambda_powertools.metrics import MetricUnit

from waituntil.cache.list_patch import plan_patch
from waituntil.cache.model import ListHead, Retiring
from waituntil.core.contracts import Change, SyncProgress
from waituntil.core.errors import FillUnderWay, ListContended, RebuildSuperseded
from waituntil.core.observability import logger, metrics
from waituntil.sync.list_retire import retire_replaced
from waituntil.sync.ports import ConsumerPorts

SWITCH_ATTEMPTS = 12


def begin_rebuild(table: str, sync_id: str, ports: ConsumerPorts) -> None:
    """Start rebuild ``sync_id``: an empty version apart, replacing any other rebuild's."""
    store = ports.store
    for _ in range(SWITCH_ATTEMPTS):
        old = store.get_next_head(table)
        if old is not None and old.rebuild == sync_id:
            if old.policy != ports.policy(table):
                raise RebuildSuperseded(f"the rebuild {sync_id} of {table} is outdated")
            return  # begun already (this is a redelivery)
        if not store.block_fills(table):
            raise FillUnderWay(f"a first fill of {table} puts rows; the rebuild waits")
        if _replace_rebuilt(table, sync_id, old, ports):
            logger.info("rebuild begun", extra={"table": table, "sync_id": sync_id})
            return
    raise ListContended(f"could not begin the rebuild of {table}")


def ensure_rebuild(table: str, ports: ConsumerPorts, rebuilt: ListHead | None) -> None:
    """The served list was built with another policy: make sure a rebuild for this one runs.

    One that switched its version within ``ORPHAN_AGE_SECONDS`` is running; otherwise (none,
    one for another policy, or one that died) a new one replaces it. Its version is created
    before its message is queued, so consumers racing here start one rebuild, not several: the
    losers of the conditional switch queue nothing.
    """
    policy = ports.policy(table)
    if rebuilt is not None and rebuilt.policy == policy and not _stalled(rebuilt, ports):
        return
    sync_id = secrets.token_hex(8)
    if not _replace_rebuilt(table, sync_id, rebuilt, ports):
        return  # another consumer replaced it first: that one queues the rebuild
    progress = SyncProgress(sync_id=sync_id, rebuild=True)
    ports.queue.publish(sync_message(table, progress, ports))
    logger.info(
        "the list was built with another table policy: rebuild queued",
        extra={"table": table, "sync_id": sync_id},
    )


def promote(table: str, sync_id: str, ports: ConsumerPorts) -> None:
    """Rebuild ``sync_id`` is complete: make its version the served one, in one switch."""
    store = ports.store
    for attempt in range(1, SWITCH_ATTEMPTS + 1):
        rebuilt = store.get_next_head(table)
        if rebuilt is None or rebuilt.rebuild != sync_id or rebuilt.policy != ports.policy(table):
            raise RebuildSuperseded(f"the rebuild {sync_id} of {table} is over")
        retire_replaced(store, rebuilt)
        served = store.get_head(table)
        if served is not None:
            retire_replaced(store, served)
        now_ns = ports.clock_ns()
        replaced = (served.version,) if served is not None else ()
        head = replace(
            rebuilt,
            version=f"{now_ns}-{secrets.token_hex(6)}",
            modified_at_ns=now_ns,
            complete=True,
            rebuild=None,
            retiring=Retiring(versions=(rebuilt.version, *replaced), trees=replaced),
        )
        if store.promote_head(head, served, rebuilt):
            retire_replaced(store, head)
            metrics.add_metric(name="ListRebuilds", unit=MetricUnit.Count, value=1)
            logger.info(
                "rebuild switched to",
                extra={"table": table, "sync_id": sync_id, "rows": head.row_count},
            )
            return
        time.sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311 - jitter, not crypto
    raise ListContended(f"the list of {table} kept moving; the rebuild could not switch")


def after_superseded(table: str, ports: ConsumerPorts) -> None:
    """A rebuild stopped because it was outdated or replaced: if the served list is still
    built with another policy than the one in force, make sure the right rebuild runs."""
    served = ports.store.get_head(table)
    if served is not None and served.policy != ports.policy(table):
        ensure_rebuild(table, ports, ports.store.get_next_head(table))


def sync_message(table: str, progress: SyncProgress, ports: ConsumerPorts) -> str:
    """The RESYNC that starts or continues full sync ``progress`` of ``table`` (a rebuild's
    too: its progress says so)."""
    kind = "rebuild" if progress.rebuild else "sync"
    return Change(
        type="RESYNC",
        schema_name=ports.settings.schema_name,
        table=table,
        key=None,
        received_at=datetime.fromtimestamp(ports.clock_ns() / 1e9, tz=UTC),
        correlation_id=f"{kind}-{progress.sync_id}",
        sync=progress,
    ).to_message()


def _replace_rebuilt(table: str, sync_id: str, old: ListHead | None, ports: ConsumerPorts) -> bool:
    """Switch ``/<table>#next`` from ``old`` to an empty version of rebuild ``sync_id``."""
    store = ports.store
    if not store.block_fills(table):
        # A first fill puts rows unconditionally: no rebuild may write rows beside it (its
        # puts would drop the positions the rebuild's version lists). Its join ends that.
        return False
    if old is not None:
        retire_replaced(store, old)
    empty = plan_patch(
        store,
        table,
        None,
        {},
        ports.list_order(table),
        ports.list_sizes,
        now_ns=ports.clock_ns(),
        nonce=secrets.token_hex(6),
        complete=False,
        policy=ports.policy(table),
        rebuild=sync_id,
    ).head
    assert empty is not None  # a fresh version is always written
    if old is not None:
        empty = replace(empty, retiring=Retiring(versions=(old.version,), trees=(old.version,)))
    if not store.flip_head(empty, old):
        return False
    retire_replaced(store, empty)
    return True


def _stalled(rebuilt: ListHead, ports: ConsumerPorts) -> bool:
    """A rebuild switches its version at every page; one silent this long has died."""
    return ports.clock_ns() - rebuilt.modified_at_ns > ports.settings.orphan_age_s * 10**9
