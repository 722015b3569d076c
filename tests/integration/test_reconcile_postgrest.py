"""The reconciler's reads over real HTTP and real PostgreSQL (the local Supabase), and a cycle
through the consumer's handler under moto.

The property: a range of a list, as ``adapters/postgrest_ranges`` writes it in PostgREST's
filter grammar (logic trees, Postgres's null placement), selects exactly the rows that
``core.list_order`` puts in it, for every order a policy can have. A wrong tree would make the
reconciler see differences that are not there (cost), or miss ones that are (lost heals).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.supabase import LocalSupabase
from tests.conftest import Database, EmulatedAws, LambdaContext, examples, load_event
from tests.consumer_support import batch, cache_equals, consumer_ports, resync, run, sqs_event
from tests.fakes import MemorySource
from waituntil.adapters.supabase_source import SupabaseSource
from waituntil.cache.model import ChangeMark, PositionRange
from waituntil.core.errors import ColumnMissing
from waituntil.core.table_policy import TablePolicy
from waituntil.read.cache_client import get_item

# rating (numeric, with nulls) and published (boolean) are the migration's columns to order by;
# text is left out on purpose: the database orders it by its collation, the cache by code point.
ORDERS = [None, "rating", "rating.desc", "published", "published.desc"]


@pytest.fixture(scope="module")
def project(module_database: Database) -> Iterator[LocalSupabase]:
    with LocalSupabase(*module_database) as local:
        yield local


def _source(project: LocalSupabase, order: str | None) -> SupabaseSource:
    policy = TablePolicy(key="id", order=order, role="service")
    return SupabaseSource(
        project.url, {"service": lambda fresh=False: project.service_key}, {"articles": policy}
    )


ROWS = st.dictionaries(
    st.integers(1, 60),
    st.tuples(st.none() | st.sampled_from([-1.5, 0, 2, 2.25, 7]), st.booleans()),
    max_size=25,
)


@pytest.mark.property
@settings(max_examples=examples(40), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS, order=st.sampled_from(ORDERS), data=st.data())
def test_a_range_selects_exactly_the_rows_the_list_order_puts_in_it(
    project: LocalSupabase, rows: dict[int, tuple[Any, Any]], order: str | None, data: Any
) -> None:
    # Given a table with nulls in the order column
    project.sql("delete from public.articles")
    table = [
        {"id": key, "title": f"a{key}", "rating": rating, "published": published}
        for key, (rating, published) in rows.items()
    ]
    project.seed("articles", table)
    cached = project.rows("articles")  # as PostgREST renders them
    source = _source(project, order)
    truth = MemorySource(order=TablePolicy(key="id", order=order).list_order)
    for row in cached:
        truth.put(row)
    # And a range whose bounds are positions of rows (or of rows that are not there)
    column = (order or "id").split(".")[0]
    values = {
        "id": st.none(),
        "rating": st.none() | st.sampled_from([-1.5, 0, 2, 2.25, 7, 3]),
        "published": st.booleans(),
    }[column]
    position = st.builds(
        lambda key, value: (value, key) if order else (key,), st.integers(0, 61), values
    )
    bound = st.none() | position | position  # bounded more often than not
    bounds = PositionRange(data.draw(bound, label="lower"), data.draw(bound, label="upper"))
    # When the database counts it and lists its positions
    counted = source.count_rows("articles", [bounds, PositionRange()])
    listed = source.positions_in_range("articles", bounds, 1000)
    # Then both agree with the list order's own comparison
    expected = truth.positions_in_range("articles", bounds, 1000)
    assert counted == [len(expected), len(table)]
    assert listed == expected


@pytest.mark.parametrize("order", ["rating", "rating.desc"])
@pytest.mark.parametrize("lower", [None, (2, 0), (None, 0), (None, 3)])
@pytest.mark.parametrize("upper", [None, (2, 50), (7, 0), (None, 50), (None, 3)])
def test_every_bound_around_nulls_selects_what_the_list_order_does(
    project: LocalSupabase, order: str, lower: Any, upper: Any
) -> None:
    # Given rows with values on both sides of the bounds and nulls (first descending, last
    # ascending, as Postgres sorts them)
    project.sql("delete from public.articles")
    ratings = [None, -1.5, 2, 2, 7, None, 0, None]
    project.seed(
        "articles",
        [{"id": key, "title": "t", "rating": rating} for key, rating in enumerate(ratings, 1)],
    )
    truth = MemorySource(order=TablePolicy(key="id", order=order).list_order)
    for row in project.rows("articles"):
        truth.put(row)
    bounds = PositionRange(lower, upper)
    # When the database counts and lists the range / Then as the list order puts them
    source = _source(project, order)
    expected = truth.positions_in_range("articles", bounds, 100)
    assert source.count_rows("articles", [bounds]) == [len(expected)]
    assert source.positions_in_range("articles", bounds, 100) == expected


def test_the_scan_pages_by_change_time_then_key_and_a_missing_column_is_named(
    supabase: LocalSupabase,
) -> None:
    # Given rows changed at three times, two of them sharing one
    base = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    stamps = [base, base + timedelta(seconds=1), base + timedelta(seconds=1), base + timedelta(2)]
    supabase.seed(
        "articles",
        [
            {"id": key, "title": "t", "updated_at": stamp.isoformat()}
            for key, stamp in zip((4, 3, 2, 1), stamps, strict=True)
        ],
    )
    source = _source(supabase, None)
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


def test_fingerprints_through_the_api_equal_the_caches(supabase: LocalSupabase) -> None:
    # Given the migration's fingerprint function, and rows of every kind of value the table has
    supabase.seed(
        "articles",
        [
            {
                "id": key,
                "title": f'é {key} "q" \n',
                "rating": [None, 1.1, 2, 1e-7][key % 4],
                "tags": [["a", "b,c"], None][key % 2],
                "meta": {"nested": [1, 2.5, {"k": None}], "b": True} if key % 3 else None,
                "published": key % 2 == 0,
            }
            for key in range(1, 41)
        ],
    )
    policy = TablePolicy(key="id", order="rating.desc", role="service", fingerprint=True)
    source = SupabaseSource(
        supabase.url, {"service": lambda fresh=False: supabase.service_key}, {"articles": policy}
    )
    truth = MemorySource(order=policy.list_order)
    for row in supabase.rows("articles"):
        truth.put(row)
    # When the API is asked for the whole table and for a range, with each row's hash
    ranges = [PositionRange(), PositionRange((2, 10), (None, 5))]
    answers = source.fingerprint_ranges("articles", ranges, with_rows=True)
    # Then count, sum and each row's hash are the cache's
    assert answers == truth.fingerprint_ranges("articles", ranges, with_rows=True)


# ----- a cycle through the handler ------------------------------------------------------------


def test_a_scheduled_reconcile_heals_lost_inserts_updates_and_deletes(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given a cached table of 200 rows, last changed a day ago; no webhook is wired, so every
    # change below is one whose webhook was lost
    old = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    supabase.seed(
        "articles", [{"id": key, "title": f"a{key}", "updated_at": old} for key in range(1, 201)]
    )
    ports = consumer_ports(aws, supabase, tables="articles", RECONCILE_SETTLE_SECONDS="0")
    _run_all(aws, ports, lambda_context, batch(resync()))
    # And then 2 inserts, 2 updates (the moddatetime trigger stamps them), 2 deletes
    supabase.sql("insert into public.articles (id, title) values (201, 'new'), (202, 'new')")
    supabase.sql("update public.articles set title = 'edited' where id in (10, 20)")
    supabase.sql("delete from public.articles where id in (30, 40)")
    # When the schedule's RECONCILE comes (fanned out per table)
    _run_all(aws, ports, lambda_context, load_event("consumer/reconcile.json"))
    # Then the cache equals the table, and a second cycle asks Supabase at most three times
    cache_equals(ports, supabase.rows("articles"))
    requests = ports.source.requests  # type: ignore[attr-defined]
    _run_all(aws, ports, lambda_context, load_event("consumer/reconcile.json"))
    assert ports.source.requests - requests <= 3  # type: ignore[attr-defined]


# (fault, what the local Supabase does to matching requests, extra consumer settings)
SUPABASE_FAULTS = [
    ("a count refused", {"status": 503, "method": "HEAD"}, {}),
    (
        "a read timing out",
        {"status": None, "delay_s": 2.0, "method": "GET"},
        {"SUPABASE_TIMEOUT_SECONDS": "0.5"},
    ),
    (
        "the fingerprint function failing",
        {"status": 500, "method": "POST"},
        {"TABLE_POLICIES": '{"articles": {"changed_at": false, "fingerprint": true}}'},
    ),
]


@pytest.mark.parametrize(
    ("fault", "injected", "settings"), SUPABASE_FAULTS, ids=[case[0] for case in SUPABASE_FAULTS]
)
def test_a_supabase_fault_fails_the_scheduled_cycle_alone_and_deletes_nothing(
    aws: EmulatedAws,
    supabase: LocalSupabase,
    lambda_context: LambdaContext,
    capsys: pytest.CaptureFixture[str],
    fault: str,
    injected: dict[str, Any],
    settings: dict[str, str],
) -> None:
    # Given a cached table of 100 rows, then 3 deletes with no webhook
    old = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    supabase.seed(
        "articles", [{"id": key, "title": f"a{key}", "updated_at": old} for key in range(1, 101)]
    )
    ports = consumer_ports(
        aws, supabase, tables="articles", RECONCILE_SETTLE_SECONDS="0", **settings
    )
    _run_all(aws, ports, lambda_context, batch(resync()))
    supabase.sql("delete from public.articles where id in (10, 50, 90)")
    # And a Supabase that fails the reconciler's requests as it would: a 503, a read that
    # outlasts the consumer's timeout, a 500 from /rpc
    supabase.inject_fault(**injected, times=None)
    supabase.reset_request_log()
    capsys.readouterr()
    # When the schedule's RECONCILE comes (fanned out per table)
    _run_all(aws, ports, lambda_context, load_event("consumer/reconcile.json"))
    # Then the fault was met, and the batch still succeeded: the cycle failed alone (the next
    # one retries; a failed record would be retried by SQS and end in the dead-letter queue)
    # (a request the consumer gave up on is logged once the server answers it anyway)
    deadline = time.monotonic() + 10
    while not any(record.fault for record in supabase.request_log):
        assert time.monotonic() < deadline, "the fault was never met"
        time.sleep(0.05)
    # And it was counted per table, what the dashboard and ReconcileFailuresAlarm read
    emitted = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    assert any("ReconcileFailures" in m and m.get("table") == "articles" for m in emitted)
    # And nothing cached was deleted on the strength of a failed request
    for key in (10, 50, 90):
        assert get_item(ports.store, "articles", key) is not None
    # And with Supabase answering again, the next cycle heals the table
    supabase.clear_faults()
    _run_all(aws, ports, lambda_context, load_event("consumer/reconcile.json"))
    cache_equals(ports, supabase.rows("articles"))


def _run_all(aws: EmulatedAws, ports: Any, context: LambdaContext, event: dict[str, Any]) -> None:
    assert run(event, ports, context) == []
    for _ in range(50):
        messages = aws.queue_messages()
        if not messages:
            return
        assert run(sqs_event(*(m["Body"] for m in messages)), ports, context) == []
    raise AssertionError("the queue never drained")
