"""The latency benchmarks' pipeline, tiny: a fill, a warm batch and a trickle of changes through
the real handlers over the model's services (latencies a fiftieth of the defaults), so that
``make bench-latency`` cannot rot unnoticed. No timing is asserted: only that every change
was seen through, and counted."""

from __future__ import annotations

from bench import critical_path, visibility
from bench.latency import Latencies
from bench.latency_consumer import drain_fill
from bench.latency_stack import model_stack
from waituntil.cache.layout import KIND_ROW

ROWS = 12


def test_a_fill_a_batch_and_a_trickle_go_through_the_model() -> None:
    # Given a 12-row table behind the model's services, every latency a fiftieth
    with model_stack(ROWS, Latencies().scaled(0.02), queue="memory", pool_size=4) as stack:
        # When the cache is filled from one change
        filled = drain_fill(stack, stack.consumer_ports())
        # Then every row has its item, and the list was published in one fill
        assert stack.dynamodb is not None
        items = stack.dynamodb.items(stack.table_name)
        rows = [pk for pk, item in items if item.get("kind") == {"S": KIND_ROW}]
        assert len(rows) == ROWS
        assert filled.invocations == 2  # the change, then the full sync it queued

        # When warm batches of one change run
        (figures,) = critical_path.batches(
            stack, "memory", ROWS, None, changes=(1,), repeats={1: 1}, bare=False
        )
        # Then each read Supabase once and waited on a chain of calls
        assert figures.changes == 1 and len(figures.seconds) == 1
        assert figures.median_calls()["supabase"] == 1
        assert figures.median_round_trips >= 3

        # When a trickle of three updates goes webhook -> receiver -> poller -> consumer
        receivers = visibility.Receivers(stack, count=1)
        run = visibility.measure_run(
            stack,
            receivers,
            "trickle",
            0,
            pollers=1,
            trickle={"changes": 3, "per_second": 50.0},
        )
    # Then every change became visible, item and list, and its Supabase reads were counted
    assert len(run.item_ms) == 3 and len(run.list_ms) == 3
    assert all(item <= listed for item, listed in zip(run.item_ms, run.list_ms, strict=True))
    assert run.invocations >= 1 and run.supabase_requests >= run.invocations
