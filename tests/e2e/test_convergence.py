"""A burst of real Supabase writes converges the cache, whatever order the webhooks arrive in."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TABLE, StartStack, supabase_client
from waituntil.read.cache_client import get_item, get_list

pytestmark = pytest.mark.e2e

BURST = 200


def test_burst_of_inserts_with_shuffled_webhooks_converges(start_stack: StartStack) -> None:
    # Given the local stack, its webhooks delivered in shuffled order, and a 1 s
    # batching window so that the consumer sees many changes per batch
    stack = start_stack(webhook_jitter_s=0.1, batching_window_s=1)
    client = supabase_client(stack)

    # When 200 articles are inserted one by one through supabase-py
    for key in range(1, BURST + 1):
        client.table(TABLE).insert(
            {"id": key, "title": f"Article {key}", "rating": key % 7}
        ).execute()

    # Then every webhook was accepted, and they did not arrive in insertion order
    assert stack.wait_until_idle(timeout_s=60)
    assert stack.supabase is not None
    deliveries = stack.supabase.webhook_log
    assert [delivery.status_code for delivery in deliveries] == [202] * BURST
    arrival = [delivery.payload["record"]["id"] for delivery in deliveries]
    assert sorted(arrival) == list(range(1, BURST + 1))
    assert arrival != sorted(arrival)
    # And the cached list equals the table, and every row is cached as an item
    rows = stack.supabase.rows(TABLE)
    store = stack.cache_store()
    assert len(rows) == BURST
    assert get_list(store, TABLE) == rows
    for row in rows:
        assert get_item(store, TABLE, row["id"]) == row
    # And the consumer batched the changes instead of running once per change
    assert stack.consumer_batches < BURST
