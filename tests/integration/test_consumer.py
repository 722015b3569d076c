"""The consumer handler in-process: moto DynamoDB (from template.yaml) and a local Supabase on
real PostgreSQL over real HTTP, read through postgrest-py (the consumer's Supabase client)."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from supabase import create_client

from local.supabase import LocalSupabase
from tests.conftest import EmulatedAws, LambdaContext, load_event
from tests.consumer_support import (
    batch,
    cache_equals,
    change,
    consumer_ports,
    drain,
    row_of,
    run,
)
from tests.faults import FaultyClient, unreachable
from waituntil.core.contracts import Change
from waituntil.read.cache_client import get_item, get_list
from waituntil.sync.ports import ConsumerPorts

_ports = consumer_ports
_batch = batch
_change = change


def _run(event: dict[str, Any], ports: ConsumerPorts, context: LambdaContext) -> list[str]:
    """Invoke the handler, then drain what it queued (the first fill); return failed ids."""
    failed = run(event, ports, context)
    drain(_AWS[0], ports, context)
    return failed


_AWS: list[EmulatedAws] = []


@pytest.fixture(autouse=True)
def _remember_aws(aws: EmulatedAws) -> Iterator[None]:
    _AWS[:] = [aws]
    yield
    _AWS.clear()


def _cache_equals_supabase(
    ports: ConsumerPorts, supabase: LocalSupabase, table: str = "articles"
) -> None:
    cache_equals(ports, supabase.rows(table), table)


def test_bundled_batch_converges_to_supabase(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given Supabase holds article 42 (updated) and article 7 was deleted
    event = load_event("consumer/batch.json")
    updated = Change.from_message(event["Records"][1]["body"]).record
    assert updated is not None
    supabase.seed("articles", [updated, {"id": 1, "title": "untouched"}])
    ports = _ports(aws, supabase)
    # When the consumer handles INSERT 42, UPDATE 42, DELETE 7
    failed = _run(event, ports, lambda_context)
    # Then nothing failed, 42 holds Supabase's row, 7 is gone, the list is the whole table
    assert failed == []
    cached = get_item(ports.store, "articles", 42)
    assert cached == row_of(supabase, 42)
    assert cached is not None and cached["title"] == updated["title"]
    assert get_item(ports.store, "articles", 7) is None
    _cache_equals_supabase(ports, supabase)


def test_delete_delivered_before_its_insert_leaves_no_row(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given a row that was inserted then deleted in Supabase (it no longer exists)
    ports = _ports(aws, supabase)
    # When the DELETE arrives first and the INSERT afterwards, in separate batches
    _run(_batch(_change("DELETE", 5)), ports, lambda_context)
    _run(_batch(_change("INSERT", 5)), ports, lambda_context)
    # Then the late INSERT does not resurrect the row
    assert get_item(ports.store, "articles", 5) is None
    assert get_list(ports.store, "articles") == []


def test_old_update_after_a_newer_one_keeps_the_newer_row(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given Supabase holds version 3 of a row
    supabase.seed("articles", [{"id": 9, "title": "v3"}])
    ports = _ports(aws, supabase)
    newer = _change("UPDATE", 9) | {"record": {"id": 9, "title": "v3"}}
    older = _change("UPDATE", 9) | {"record": {"id": 9, "title": "v2"}}
    # When the v3 UPDATE is applied, then the v2 UPDATE arrives late
    _run(_batch(newer), ports, lambda_context)
    _run(_batch(older), ports, lambda_context)
    # Then the cache holds v3: the payload said which row, Supabase said what it is
    cached = get_item(ports.store, "articles", 9)
    assert cached is not None and cached["title"] == "v3"
    assert cached == row_of(supabase, 9)


def test_duplicates_and_replays_change_nothing(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given rows in Supabase and a batch holding the same UPDATE twice
    supabase.seed("articles", [{"id": i, "title": f"t{i}"} for i in range(1, 6)])
    ports = _ports(aws, supabase)
    event = _batch(_change("UPDATE", 2), _change("UPDATE", 2), _change("INSERT", 4))
    # When the batch is processed, then the very same batch is redelivered
    assert _run(event, ports, lambda_context) == []
    head = ports.store.get_head("articles")
    assert _run(event, ports, lambda_context) == []
    # Then the cache still equals Supabase and the list version did not change
    _cache_equals_supabase(ports, supabase)
    again = ports.store.get_head("articles")
    assert head is not None and again is not None
    assert again.version == head.version


def test_a_batch_reads_only_its_touched_keys(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given a 250-row table, filled in pages of 100 (Supabase caps a read at 1,000 rows)
    supabase.seed("articles", [{"id": i, "title": f"article {i}"} for i in range(1, 251)])
    ports = _ports(aws, supabase, SUPABASE_PAGE_SIZE="100")
    assert _run(_batch(_change("UPDATE", 1)), ports, lambda_context) == []
    writer = create_client(supabase.url, supabase.service_key)
    writer.table("articles").update({"title": "new"}).in_("id", list(range(1, 11))).execute()
    supabase.reset_request_log()
    # When ten changes arrive in one batch
    event = _batch(*(_change("UPDATE", key) for key in range(1, 11)))
    assert _run(event, ports, lambda_context) == []
    # Then Supabase was asked once, for exactly those ten rows
    log = supabase.request_log
    assert len(log) == 1
    assert "in." in str(log[0].query)
    cached = get_list(ports.store, "articles")
    assert cached is not None and len(cached) == 250
    assert cached == supabase.rows("articles")


def test_aggregate_over_a_megabyte_is_chunked_and_whole(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given about 1.3 MB of articles
    body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 80
    supabase.seed("articles", [{"id": i, "body": f"{i} {body}"} for i in range(1, 281)])
    ports = _ports(aws, supabase)
    # When one change is processed
    assert _run(_batch(_change("UPDATE", 1)), ports, lambda_context) == []
    # Then the list is stored in several chunks and reads back exactly
    head = ports.store.get_head("articles")
    assert head is not None
    assert head.list_bytes > 1_000_000
    assert head.chunk_count > 1
    _cache_equals_supabase(ports, supabase)


def test_supabase_503_fails_that_tables_records_only(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given Supabase answers 503 for articles, while authors read fine
    supabase.seed("authors", [{"slug": "ada", "name": "Ada"}])
    supabase.inject_fault(status=503, times=None, table="articles")
    ports = _ports(aws, supabase, SUPABASE_RETRY="false")
    event = _batch(
        _change("UPDATE", 1), _change("INSERT", "ada", table="authors"), _change("UPDATE", 2)
    )
    # When the batch is processed
    failed = _run(event, ports, lambda_context)
    # Then both article records are reported for retry, the author record succeeded
    records = event["Records"]
    assert failed == [records[0]["messageId"], records[2]["messageId"]]
    assert get_item(ports.store, "authors", "ada") == row_of(supabase, "ada", "authors")
    assert ports.store.get_head("articles") is None


def test_a_passing_supabase_503_is_retried_in_place(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given Supabase answers one 503 (a blip) with postgrest-py's retry on (the default)
    supabase.seed("articles", [{"id": 1, "title": "t"}])
    supabase.inject_fault(status=503, times=1, table="articles")
    ports = _ports(aws, supabase)
    # When a change is processed
    failed = _run(_batch(_change("UPDATE", 1)), ports, lambda_context)
    # Then it succeeds without waiting for an SQS redelivery, at the cost of one more request
    # (the requests after those two are the table's first fill)
    assert failed == []
    assert get_item(ports.store, "articles", 1) == row_of(supabase, 1)
    assert [record.status for record in supabase.request_log][:3] == [503, 200, 200]
    assert supabase.request_log[2].query != supabase.request_log[1].query


@pytest.mark.parametrize("retry", [True, False])
def test_a_connection_dropped_mid_read_is_retried_in_place_or_fails_the_records(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext, retry: bool
) -> None:
    # Given Supabase's connection closing once without an answer (a proxy or a restart)
    supabase.seed("articles", [{"id": 1, "title": "t"}])
    supabase.inject_fault(status=None, dropped=True, times=1, table="articles")
    ports = _ports(aws, supabase, SUPABASE_RETRY=str(retry).lower())
    event = _batch(_change("UPDATE", 1))
    if retry:
        # When a change is processed with postgrest-py's retry on (the default)
        # Then it is read again at once and reaches the cache
        assert _run(event, ports, lambda_context) == []
        assert [record.status for record in supabase.request_log][:2] == [0, 200]
        assert get_item(ports.store, "articles", 1) == row_of(supabase, 1)
    else:
        # When it is processed without it / Then the batch fails whole (SQS redelivers it)
        # and nothing was written
        with pytest.raises(BatchProcessingError):
            _run(event, ports, lambda_context)
        assert get_item(ports.store, "articles", 1) is None


def test_supabase_timeout_fails_the_records(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given Supabase slower than the consumer's HTTP timeout, and an unaffected table
    supabase.inject_fault(status=None, delay_s=1.5, times=None, table="articles")
    ports = _ports(aws, supabase, SUPABASE_TIMEOUT_SECONDS="0.5")
    event = _batch(_change("UPDATE", 1), _change("INSERT", "ada", table="authors"))
    # When the batch is processed / Then the article record fails (retried by SQS, then DLQ)
    assert _run(event, ports, lambda_context) == [event["Records"][0]["messageId"]]


def test_a_batch_where_everything_fails_is_retried_whole(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given Supabase down for every table
    supabase.inject_fault(status=503, times=None)
    ports = _ports(aws, supabase, SUPABASE_RETRY="false")
    # When a batch is processed / Then Powertools raises, so Lambda retries the whole batch
    with pytest.raises(BatchProcessingError):
        _run(_batch(_change("UPDATE", 1), _change("UPDATE", 2)), ports, lambda_context)


def test_secrets_manager_down_fails_the_batch_and_its_redelivery_converges(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given Secrets Manager unreachable when the consumer first needs Supabase's key
    supabase.seed("articles", [{"id": 1, "title": "t"}])
    down = FaultyClient(aws.secrets, {"get_secret_value": unreachable})
    ports = consumer_ports(aws, supabase, secrets_client=down)
    # When a change is processed / Then it fails (retried whole by Lambda) and wrote nothing
    with pytest.raises(BatchProcessingError):
        _run(_batch(_change("UPDATE", 1)), ports, lambda_context)
    assert "get_secret_value" in down.calls
    assert ports.store.get_head("articles") is None
    assert get_item(ports.store, "articles", 1) is None
    # When Secrets Manager is back and the batch is redelivered / Then it reaches the cache
    down.faults.clear()
    assert _run(_batch(_change("UPDATE", 1)), ports, lambda_context) == []
    assert get_item(ports.store, "articles", 1) == row_of(supabase, 1)


def test_unparseable_record_fails_alone(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given a batch with one good change and one body that is not a change message
    event = load_event("consumer/batch_with_bad_record.json")
    supabase.seed("articles", [{"id": 42, "title": "Hello, world"}])
    ports = _ports(aws, supabase)
    # When processed / Then only the bad record fails; the good one reached the cache
    assert _run(event, ports, lambda_context) == [event["Records"][1]["messageId"]]
    assert get_item(ports.store, "articles", 42) == row_of(supabase, 42)


def test_change_for_an_uncached_table_fails_alone(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given a change for a table this consumer does not cache (configuration drift)
    ports = _ports(aws, supabase, CACHED_TABLES="authors")
    event = _batch(_change("UPDATE", 1), _change("UPDATE", "ada", table="authors"))
    # When processed / Then that record fails and goes to the DLQ eventually
    assert _run(event, ports, lambda_context) == [event["Records"][0]["messageId"]]


SAMPLES = """create table public.samples (
    id bigint primary key, amount numeric, ratio double precision, big bigint, at timestamptz,
    day date, doc jsonb, tags text[], grid int[], ref uuid, label text, flag boolean, gone text)"""
SAMPLE = """insert into public.samples values (1, 123456789012345678901234567890.123456789, 0.1,
    4611686018427387904, '2026-01-02 03:04:05.123456+02', '2026-01-02',
    '{"b": [1, "two", null, {"c": 3.25}], "a": {}}', array['a,b', 'c"d', null],
    '{{1,2},{3,4}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'Crème brûlée 🍮 — 東京', false,
    null)"""


def test_postgres_types_reach_the_cache_as_postgres_renders_them(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given a row of types that are easy to mangle, stored by PostgreSQL
    supabase.sql(SAMPLES)
    supabase.sql(SAMPLE)
    ports = _ports(aws, supabase, tables="samples")
    # When its change is synced
    assert _run(_batch(_change("INSERT", 1, table="samples")), ports, lambda_context) == []
    # Then the cached row is what a Supabase client reads, PostgreSQL's own JSON rendering
    cached = get_item(ports.store, "samples", 1)
    assert cached == supabase.rows("samples")[0]
    assert cached == {
        "id": 1,
        # every digit in PostgreSQL's JSON; a JSON client (supabase-py) reads the nearest double
        "amount": 1.2345678901234568e29,
        "ratio": 0.1,
        "big": 2**62,
        "at": "2026-01-02T01:04:05.123456+00:00",
        "day": "2026-01-02",
        "doc": {"a": {}, "b": [1, "two", None, {"c": 3.25}]},
        "tags": ["a,b", 'c"d', None],
        "grid": [[1, 2], [3, 4]],
        "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "label": "Crème brûlée 🍮 — 東京",
        "flag": False,
        "gone": None,
    }
    raw = supabase.sql("select row_to_json(s)::text from public.samples s")[0][0]
    assert '"amount":123456789012345678901234567890.123456789' in raw
    assert get_list(ports.store, "samples") == [cached]


def test_correlation_id_is_logged_per_record(
    aws: EmulatedAws,
    supabase: LocalSupabase,
    lambda_context: LambdaContext,
    captured_logs: io.StringIO,
) -> None:
    # Given a change queued by the receiver with its correlation id
    ports = _ports(aws, supabase)
    # When processed / Then the consumer's log line for it carries that id
    _run(_batch(_change("UPDATE", 3)), ports, lambda_context)
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    applied = [line for line in lines if line.get("message") == "applying change"]
    assert applied[0]["correlation_id"] == "corr-UPDATE-3"
    # (then the first fill of the table, which the consumer queued for itself, with its own id)
    assert all(line["correlation_id"].startswith("sync-") for line in applied[1:])


def test_scheduled_resync_heals_a_lost_webhook(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given a converged cache, then changes whose webhooks were lost (Supabase never retries)
    supabase.seed("articles", [{"id": i, "title": f"t{i}"} for i in range(1, 6)])
    supabase.seed("authors", [{"slug": "ada", "name": "Ada"}])
    ports = _ports(aws, supabase)
    _run(
        _batch(_change("UPDATE", 1), _change("UPDATE", "ada", table="authors")),
        ports,
        lambda_context,
    )
    writer = create_client(supabase.url, supabase.service_key)
    writer.table("articles").update({"title": "edited, webhook lost"}).eq("id", 3).execute()
    writer.table("articles").delete().eq("id", 5).execute()
    writer.table("authors").insert({"slug": "grace", "name": "Grace"}).execute()
    # When the scheduled RESYNC message (every table) is processed
    assert _run(load_event("consumer/resync.json"), ports, lambda_context) == []
    # Then every table's items and list equal Supabase again
    _cache_equals_supabase(ports, supabase)
    _cache_equals_supabase(ports, supabase, "authors")
    assert get_item(ports.store, "articles", 5) is None


@pytest.mark.parametrize(
    ("rule_id", "kind"), [("ResyncRule", "RESYNC"), ("ReconcileRule", "RECONCILE")]
)
def test_the_templates_scheduled_messages_are_valid_changes(
    aws: EmulatedAws, rule_id: str, kind: str
) -> None:
    # Given the EventBridge input template as deployed, filled the way EventBridge fills it
    rule = aws.stack.resolver.template["Resources"][rule_id]["Properties"]
    transformer = rule["Targets"][0]["InputTransformer"]
    body = aws.stack.resolver.resolve(transformer["InputTemplate"])
    body = body.replace("<time>", "2026-11-28T13:00:00Z").replace("<id>", "abc")
    # When the consumer parses it / Then it is a RESYNC or RECONCILE of every cached table
    change = Change.from_message(body)
    assert (change.type, change.table, change.key, change.schema_name) == (
        kind,
        "*",
        None,
        "public",
    )


def test_a_row_too_large_for_an_item_is_kept_in_s3_and_its_table_keeps_converging(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given a 600 KB row that does not compress (DynamoDB holds 400 KB at most), and others
    big = {"id": 1, "body": base64.b64encode(os.urandom(450_000)).decode()}
    assert len(json.dumps(big)) > 600_000
    supabase.seed("articles", [big, {"id": 2, "title": "small"}])
    ports = _ports(aws, supabase)
    # When its change is synced
    assert _run(_batch(_change("INSERT", 1)), ports, lambda_context) == []
    # Then it round-trips exactly, as an item and in the list, its body kept in the bucket
    rows = supabase.rows("articles")
    assert get_item(ports.store, "articles", 1) == rows[0]
    assert rows[0]["body"] == big["body"]
    assert get_list(ports.store, "articles") == rows
    objects = aws.s3.list_objects_v2(Bucket=aws.stack.blob_bucket).get("Contents", [])
    assert len(objects) == 1
    # And later changes of its table still converge, and a new body supersedes the old one
    writer = create_client(supabase.url, supabase.service_key)
    writer.table("articles").update({"title": "edited"}).eq("id", 2).execute()
    bigger = {"id": 1, "body": base64.b64encode(os.urandom(450_000)).decode()}
    writer.table("articles").update(bigger).eq("id", 1).execute()
    assert _run(_batch(_change("UPDATE", 2), _change("UPDATE", 1)), ports, lambda_context) == []
    _cache_equals_supabase(ports, supabase)
    tags = {
        obj["Key"]: aws.s3.get_object_tagging(Bucket=aws.stack.blob_bucket, Key=obj["Key"])[
            "TagSet"
        ]
        for obj in aws.s3.list_objects_v2(Bucket=aws.stack.blob_bucket)["Contents"]
    }
    assert sorted(tag == [{"Key": "superseded", "Value": "true"}] for tag in tags.values()) == [
        False,
        True,
    ]


def test_without_a_blob_store_an_oversized_row_fails_alone(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given no bucket configured, an incompressible 600 KB row and a small one
    supabase.seed(
        "articles",
        [
            {"id": 1, "body": base64.b64encode(os.urandom(450_000)).decode()},
            {"id": 2, "title": "small"},
        ],
    )
    ports = _ports(aws, supabase, BLOB_BUCKET="")
    event = _batch(_change("INSERT", 1), _change("INSERT", 2))
    # When both changes are processed / Then only the oversized row's record fails
    assert run(event, ports, lambda_context) == [event["Records"][0]["messageId"]]
    assert get_item(ports.store, "articles", 2) == supabase.rows("articles")[1]
    assert get_item(ports.store, "articles", 1) is None
