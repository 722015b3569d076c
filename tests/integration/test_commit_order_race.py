"""The commit-order race on real PostgreSQL (the local Supabase): a transaction that began
before a scan commits after it, its row stamped with its start time by the ``moddatetime``
trigger, and its webhook lost. Commit order is not timestamp order: only a scan that starts the
overlap before where the last one ended finds that row.

The reconciler's scan (``heal_scan.scan_changes``) runs as in a cycle, through the consumer's
Supabase adapter and the local PostgREST; the cache is the in-memory store.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from local.supabase import LocalSupabase
from tests.fakes import MemoryQueue, MemoryStore
from waituntil.adapters.supabase_source import SupabaseSource
from waituntil.core.contracts import Change
from waituntil.core.settings import ConsumerSettings
from waituntil.read.cache_client import get_item
from waituntil.sync.full_sync import resync
from waituntil.sync.heal_scan import scan_changes
from waituntil.sync.ports import ConsumerPorts


def _ports(supabase: LocalSupabase, overlap_min: float) -> ConsumerPorts:
    settings = ConsumerSettings.model_validate(
        {
            "CACHE_TABLE_NAME": "cache",
            "SUPABASE_URL": supabase.url,
            "SUPABASE_KEY_SECRET_NAME": "key",
            "QUEUE_URL": "http://queue.invalid",
            "CACHED_TABLES": "articles",
            "TABLE_POLICIES": '{"articles": {"role": "service"}}',
            "RECONCILE_OVERLAP_MINUTES": str(overlap_min),
            "RECONCILE_SETTLE_SECONDS": "0",
        }
    )
    source = SupabaseSource(
        supabase.url,
        {"service": lambda fresh=False: supabase.service_key},
        {"articles": settings.policy("articles")},
    )
    return ConsumerPorts(settings, source, MemoryStore(), MemoryQueue())


def _fill(ports: ConsumerPorts) -> None:
    change = Change.model_validate(
        {
            "type": "RESYNC",
            "schema": "public",
            "table": "articles",
            "key": None,
            "received_at": "2026-11-29T00:00:00Z",
            "correlation_id": f"fill-{time.time_ns()}",
        }
    )
    resync(change, ports, lambda: 10**9)


@pytest.mark.parametrize(("overlap_min", "healed"), [(1, True), (0, False)])
def test_a_transaction_that_began_before_a_scan_and_commits_after_it_is_found_by_the_overlap(
    supabase: LocalSupabase, overlap_min: float, healed: bool
) -> None:
    # Given a cached table whose updated_at the moddatetime trigger sets on every update (no
    # webhook is wired: every change below is one whose webhook was lost)
    supabase.seed("articles", [{"id": key, "title": f"row {key}"} for key in range(1, 21)])
    ports = _ports(supabase, overlap_min)
    _fill(ports)
    first = scan_changes("articles", "updated_at", None, time.time_ns(), ports, max_keys=100)
    with psycopg.connect(supabase.owner) as slow, psycopg.connect(supabase.owner) as fast:
        # When a transaction begins (its now() is what the trigger stamps) and updates row 1...
        slow.execute("update public.articles set title = 'slow' where id = 1")
        time.sleep(0.05)
        # ...another updates row 2 and commits, and a scan runs: it sees row 2 only
        fast.execute("update public.articles set title = 'fast' where id = 2")
        fast.commit()
        time.sleep(0.05)
        scan = scan_changes(
            "articles", "updated_at", first.scan_from, time.time_ns(), ports, max_keys=100
        )
        assert scan.healed == 1
        # ...and only then the first commits, stamped before that scan; its webhook lost too
        slow.commit()
    time.sleep(0.05)
    # When the next scan runs from where that one ended
    later = scan_changes(
        "articles", "updated_at", scan.scan_from, time.time_ns(), ports, max_keys=100
    )
    # Then with an overlap the row is found and healed; without one it is missed (what is left
    # to the daily full resync)
    row = next(row for row in supabase.rows("articles") if row["id"] == 1)
    assert (get_item(ports.store, "articles", 1) == row) is healed
    assert later.healed == (1 if healed else 0)
