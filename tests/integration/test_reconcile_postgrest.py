"""The reconciler's reads over real HTTP (the Supabase stand-in), and a cycle through the
consumer's handler under moto.

The property: a range of a list, as ``adapters/postgrest_ranges`` writes it in PostgREST's
filter grammar (logic trees, Postgres's null placement), selects exactly the rows that
``core.list_order`` puts in it, for every order a policy can have. A wrong tree would make the
reconciler see differences that are not there (cost), or miss ones that are (lost heals).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from local.supabase_standin import SupabaseStandIn
from tests.conftest import EmulatedAws, LambdaContext, examples, load_event
from tests.consumer_support import batch, cache_equals, consumer_ports, resync, run, sqs_event
from tests.fakes import MemorySource
from waituntil.adapters.supabase_source import SupabaseSource
from waituntil.cache.model import ChangeMark, PositionRange
from waituntil.core.errors import ColumnMissing
from waituntil.core.table_policy import TablePolicy

ORDERS = [None, "rank", "rank.desc", "label", "label.desc"]


@pytest.fixture(scope="module")
def standin() -> Iterator[SupabaseStandIn]:
    with SupabaseStandIn(
        tables={"articles": "id"}, webhook=None, anon_policies={"articles": "true"}
    ) as server:
        yield server


def _source(standin: SupabaseStandIn, order: str | None) -> SupabaseSource:
    policy = TablePolicy(key="id", order=order, role="service")
    return SupabaseSource(
        standin.url, {"service": lambda: standin.service_key}, {"articles": policy}
    )


ROWS = st.dictionaries(
    st.integers(1, 60),
    st.tuples(
        st.one_of(st.none(), st.integers(-3, 3)),
        st.one_of(st.none(), st.sampled_from(["a", "b", "b,c", 'd"e', "f.g", "(h)", "B"])),
    ),
    min_size=0,
    max_size=25,
)


@pytest.mark.property
@settings(max_examples=examples(60))
@given(rows=ROWS, order=st.sampled_from(ORDERS), data=st.data())
def test_a_range_selects_exactly_the_rows_the_list_order_puts_in_it(
    standin: SupabaseStandIn, rows: dict[int, tuple[Any, Any]], order: str | None, data: Any
) -> None:
    # Given a table with nulls and reserved characters in the order column
    table = [{"id": key, "rank": rank, "label": label} for key, (rank, label) in rows.items()]
    _replace_rows(standin, table)
    source = _source(standin, order)
    truth = MemorySource(order=TablePolicy(key="id", order=order).list_order)
    for row in table:
        truth.put(row)
    # And a range whose bounds are positions of rows (or of rows that are not there)
    order_column = (order or "id").split(".")[0]
    bound = st.one_of(
        st.none(),
        st.builds(
            lambda key, value: (value, key) if order else (key,),
            st.integers(0, 61),
            st.one_of(st.none(), st.integers(-3, 3))
            if order_column == "rank"
            else st.one_of(st.none(), st.sampled_from(["a", "b", "b,c", 'd"e', "(h)", "B"])),
        ),
    )
    lower, upper = data.draw(bound, label="lower"), data.draw(bound, label="upper")
    bounds = PositionRange(lower, upper)
    # When Supabase counts it and lists its positions
    counted = source.count_rows("articles", [bounds, PositionRange()])
    listed = source.positions_in_range("articles", bounds, 1000)
    # Then both agree with the list order's own comparison
    expected = truth.positions_in_range("articles", bounds, 1000)
    assert counted == [len(expected), len(table)]
    assert listed == expected


def _replace_rows(standin: SupabaseStandIn, rows: list[dict[str, Any]]) -> None:
    from supabase import create_client

    client = create_client(standin.url, standin.service_key)
    client.table("articles").delete().gte("id", 0).execute()
    if rows:
        client.table("articles").insert(rows).execute()


def test_the_scan_pages_by_change_time_then_key_and_a_missing_column_is_named(
    standin: SupabaseStandIn,
) -> None:
    # Given rows changed at three times, two of them sharing one
    base = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    stamps = [base, base + timedelta(seconds=1), base + timedelta(seconds=1), base + timedelta(2)]
    _replace_rows(
        standin,
        [
            {"id": key, "updated_at": stamp.isoformat(timespec="microseconds")}
            for key, stamp in zip((4, 3, 2, 1), stamps, strict=True)
        ],
    )
    source = _source(standin, None)
    since = (base - timedelta(seconds=1)).isoformat(timespec="microseconds")
    before = (base + timedelta(days=1)).isoformat(timespec="microseconds")
    # When it is read two rows at a time, each page past the last mark
    first = source.changed_since("articles", "updated_at", since, before, None, 2)
    second = source.changed_since("articles", "updated_at", since, before, first[-1], 2)
    # Then the pages follow (time, key), each row once, the timestamps' "+" intact in the URL
    assert [mark.key for mark in first + second] == [4, 2, 3]
    assert all(isinstance(mark, ChangeMark) for mark in first)
    # And a column the table lacks is ColumnMissing, naming it (not a retried fault)
    with pytest.raises(ColumnMissing, match="modified_at"):
        source.changed_since("articles", "modified_at", since, before, None, 2)


# ----- a cycle through the handler ------------------------------------------------------------


@pytest.fixture
def supabase() -> Iterator[SupabaseStandIn]:
    # No webhook: every write below is a change whose webhook was lost.
    with SupabaseStandIn(
        tables={"articles": "id"}, webhook=None, anon_policies={"articles": "true"}
    ) as server:
        yield server


def test_a_scheduled_reconcile_heals_lost_inserts_updates_and_deletes(
    aws: EmulatedAws, supabase: SupabaseStandIn, lambda_context: LambdaContext
) -> None:
    # Given a cached table of 200 rows with updated_at
    old = (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="microseconds")
    supabase.seed(
        "articles", [{"id": key, "title": f"a{key}", "updated_at": old} for key in range(1, 201)]
    )
    ports = consumer_ports(aws, supabase, tables="articles", RECONCILE_SETTLE_SECONDS="0")
    _run_all(aws, ports, lambda_context, batch(resync()))
    # And then, with no webhook: 2 inserts, 2 updates, 2 deletes
    from supabase import create_client

    client = create_client(supabase.url, supabase.service_key)
    now = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="microseconds")
    client.table("articles").insert(
        [{"id": key, "title": "new", "updated_at": now} for key in (201, 202)]
    ).execute()
    client.table("articles").update({"title": "edited", "updated_at": now}).in_(
        "id", [10, 20]
    ).execute()
    client.table("articles").delete().in_("id", [30, 40]).execute()
    # When the schedule's RECONCILE comes (fanned out per table)
    _run_all(aws, ports, lambda_context, load_event("consumer/reconcile.json"))
    # Then the cache equals the table, and a second cycle finds nothing to do
    cache_equals(ports, supabase.rows("articles"))
    supabase.reset_request_log()
    _run_all(aws, ports, lambda_context, load_event("consumer/reconcile.json"))
    assert len(supabase.request_log) <= 3


def _run_all(aws: EmulatedAws, ports: Any, context: LambdaContext, event: dict[str, Any]) -> None:
    assert run(event, ports, context) == []
    for _ in range(50):
        messages = aws.queue_messages()
        if not messages:
            return
        assert run(sqs_event(*(m["Body"] for m in messages)), ports, context) == []
    raise AssertionError("the queue never drained")
