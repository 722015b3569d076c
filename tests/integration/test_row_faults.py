"""Row-level faults through the consumer's handler, on moto and the local Supabase: reads cut
short by max-rows, Supabase keys that change or are wrong while containers are warm, tombstones
against the dead-letter queue's retention, and what the logs may never hold."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from supabase import create_client

from local.supabase import LocalSupabase
from local.supabase.rest import make_key
from tests.conftest import Database, EmulatedAws, LambdaContext
from tests.consumer_support import (
    batch,
    cache_equals,
    change,
    consumer_ports,
    drain,
    row_of,
    run,
    sqs_event,
)
from waituntil.adapters.supabase_source import SupabaseSource, check_key_role
from waituntil.cache.layout import row_item_key
from waituntil.cache.model import FreshRow
from waituntil.core.errors import WrongKeyRole
from waituntil.core.list_order import ListOrder
from waituntil.core.settings import ConsumerSettings
from waituntil.core.table_policy import TablePolicy
from waituntil.read.cache_client import get_item

# A row whose body must never reach a log line (the consumer re-reads rows; logs hold keys).
SECRET_TEXT = "do-not-log-this-body-4f1d"


def _rows(count: int) -> list[dict[str, Any]]:
    return [{"id": key, "title": f"article {key}"} for key in range(1, count + 1)]


# ----- defect 5: a read cut short by the project's max-rows -----------------------------------


def test_reading_more_keys_than_max_rows_finds_every_row(database: Database) -> None:
    # Given a project that answers at most 100 rows to a read, and 150 rows
    with LocalSupabase(*database, max_rows=100) as capped:
        capped.seed("articles", _rows(150))
        source = SupabaseSource(
            capped.url, {"anon": lambda fresh=False: capped.anon_key}, {"articles": TablePolicy()}
        )
        # When the 150 keys are read in one batch (the source told the default, 1,000)
        rows = source.read_rows("articles", [str(key) for key in range(1, 151)])
    # Then every row is there: none would be taken for deleted
    assert sorted(row["id"] for row in rows) == list(range(1, 151))


def test_a_batch_touching_more_rows_than_max_rows_tombstones_none(
    aws: EmulatedAws, database: Database, lambda_context: LambdaContext
) -> None:
    # Given a project capped at 100 rows a read (not declared to the consumer), and 150 rows
    # cached in step
    with LocalSupabase(*database, max_rows=100) as capped:
        capped.seed("articles", _rows(150))
        ports = consumer_ports(aws, capped, tables="articles")
        assert run(batch(change("UPDATE", 1)), ports, lambda_context) == []
        drain(aws, ports, lambda_context)
        cache_equals(ports, capped.rows("articles"))
        # When one batch carries a change of each of the 150 rows
        event = sqs_event(*(json.dumps(change("UPDATE", key)) for key in range(1, 151)))
        assert run(event, ports, lambda_context) == []
        # Then every row is still cached: no live row was written as deleted
        cache_equals(ports, capped.rows("articles"))
        assert len(capped.rows("articles")) == 150


# ----- defect 8: tombstones outlive the dead-letter queue --------------------------------------


def test_tombstones_outlive_the_dead_letter_queues_retention(
    aws: EmulatedAws, supabase: LocalSupabase
) -> None:
    # Given the dead-letter queue as the template creates it
    retention = int(
        aws.sqs.get_queue_attributes(
            QueueUrl=aws.stack.dlq_url, AttributeNames=["MessageRetentionPeriod"]
        )["Attributes"]["MessageRetentionPeriod"]
    )
    # When the consumer (configured as the template configures it) writes a tombstone
    settings = ConsumerSettings.model_validate(
        {**aws.environment("ConsumerFunction"), "SUPABASE_URL": "http://supabase.invalid"}
    )
    ports = consumer_ports(aws, supabase, tables="articles")
    ports.store.write_rows(
        "articles", [FreshRow("7", None, None)], read_at_ns=1, order=ListOrder("id")
    )
    item = aws.dynamodb.get_item(
        TableName=aws.stack.table_name, Key={"pk": {"S": row_item_key("articles", "7")}}
    )["Item"]
    # Then it expires only after a change could last have come back from that queue
    assert settings.tombstone_ttl_s > retention
    assert int(item["expires_at"]["N"]) - time.time() > retention
    # And so does a row body left unclaimed by a consumer that died (the bucket's rule)
    rules = aws.stack.resolver.template["Resources"]["BlobBucket"]["Properties"][
        "LifecycleConfiguration"
    ]["Rules"]
    unclaimed = [rule for rule in rules if rule["TagFilters"][0]["Key"] == "unclaimed"]
    assert unclaimed and unclaimed[0]["ExpirationInDays"] * 86_400 > retention


# ----- defect 10: Supabase keys while containers are warm --------------------------------------


@pytest.fixture
def rls(supabase: LocalSupabase) -> LocalSupabase:
    """Articles where Row Level Security shows the public only published rows."""
    supabase.sql('drop policy "articles are public" on public.articles')
    supabase.sql("create policy published on public.articles for select to anon using (published)")
    supabase.seed(
        "articles",
        [
            {"id": 1, "title": "public", "published": True},
            {"id": 2, "title": "draft", "published": False},
        ],
    )
    supabase.reset_request_log()
    return supabase


def _refused_for_its_role(error: BatchProcessingError) -> bool:
    return [type(child[1]) for child in error.child_exceptions] == [WrongKeyRole]


def _put_secret(aws: EmulatedAws, variable: str, value: str) -> None:
    name = aws.environment("ConsumerFunction")[variable]
    aws.secrets.put_secret_value(SecretId=name, SecretString=value)


def test_a_service_key_in_the_anon_secret_is_refused_and_its_correction_followed(
    aws: EmulatedAws, rls: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given the service-role key stored by mistake in the anon secret of a warm consumer
    ports = consumer_ports(aws, rls, tables="articles")
    _put_secret(aws, "SUPABASE_ANON_KEY_SECRET_NAME", rls.service_key)
    # When the change of a row RLS hides from the public arrives
    # Then its record fails (the whole batch, here), refused for the key's role
    with pytest.raises(BatchProcessingError) as failed:
        run(batch(change("UPDATE", 2)), ports, lambda_context)
    assert _refused_for_its_role(failed.value)
    # And nothing was read with that key: the draft is not cached
    assert get_item(ports.store, "articles", 2) is None
    assert rls.request_log == []
    # When the secret is corrected (within the cache's max age) and SQS redelivers
    _put_secret(aws, "SUPABASE_ANON_KEY_SECRET_NAME", rls.anon_key)
    assert run(batch(change("UPDATE", 2), change("UPDATE", 1)), ports, lambda_context) == []
    # Then the public's view is cached: the published row, and not the draft
    assert get_item(ports.store, "articles", 1) == row_of(rls, 1)
    assert get_item(ports.store, "articles", 2) is None


def test_a_warm_consumer_rereads_its_key_after_the_max_age(
    aws: EmulatedAws, rls: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given a warm consumer that read with the right anon key, its secrets cached for 0 s
    ports = consumer_ports(aws, rls, tables="articles", SECRET_MAX_AGE_SECONDS="0")
    assert run(batch(change("UPDATE", 1)), ports, lambda_context) == []
    drain(aws, ports, lambda_context)
    # When the anon secret is changed (to a key it must not use)
    _put_secret(aws, "SUPABASE_ANON_KEY_SECRET_NAME", rls.service_key)
    requests_before = len(rls.request_log)
    # Then the next change reads the secret again, refuses that key, and reads nothing
    with pytest.raises(BatchProcessingError) as failed:
        run(batch(change("UPDATE", 2)), ports, lambda_context)
    assert _refused_for_its_role(failed.value)
    assert len(rls.request_log) == requests_before
    assert get_item(ports.store, "articles", 2) is None


def test_a_key_revoked_while_warm_is_read_again_after_a_401(
    aws: EmulatedAws, rls: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given a warm consumer whose anon key is cached for the default 300 s
    ports = consumer_ports(aws, rls, tables="articles")
    assert run(batch(change("UPDATE", 1)), ports, lambda_context) == []
    drain(aws, ports, lambda_context)
    # When the project's keys are rotated (the old ones answer 401) and the secret updated
    rls.rotate_jwt_secret("a-rotated-jwt-secret-with-at-least-32-characters")
    _put_secret(aws, "SUPABASE_ANON_KEY_SECRET_NAME", rls.anon_key)
    _put_secret(aws, "SUPABASE_KEY_SECRET_NAME", rls.service_key)
    writer = create_client(rls.url, rls.service_key)
    writer.table("articles").update({"title": "edited"}).eq("id", 1).execute()
    # Then the next change succeeds in place: the 401 made it read the secret again
    assert run(batch(change("UPDATE", 1)), ports, lambda_context) == []
    edited = get_item(ports.store, "articles", 1)
    assert edited == row_of(rls, 1) and edited is not None and edited["title"] == "edited"


@pytest.mark.parametrize(
    ("key", "accepted"),
    [
        ("anon", True),
        ("service_role", False),
        ("sb_publishable_abc123", True),
        ("sb_secret_abc123", False),
        ("not-a-key", False),
    ],
)
def test_only_an_anon_key_is_used_for_the_anon_role(key: str, accepted: bool) -> None:
    # Given a key of each kind Supabase issues (JWTs by their role claim, and the newer ones)
    value = make_key(key) if key in ("anon", "service_role") else key
    # When it is checked for the anon role / Then only an anon or publishable key passes
    if accepted:
        check_key_role("anon", value)
    else:
        with pytest.raises(WrongKeyRole):
            check_key_role("anon", value)
    check_key_role("service", value)  # the service role's key is not the public's view


# ----- defect 11: no row body in any log line --------------------------------------------------


def test_a_message_the_consumer_cannot_parse_is_logged_without_its_bodies(
    aws: EmulatedAws,
    supabase: LocalSupabase,
    lambda_context: LambdaContext,
    captured_logs: io.StringIO,
) -> None:
    # Given a queued message nested deeper than the consumer's parser goes, with a row body
    deep: Any = SECRET_TEXT
    for _ in range(250):
        deep = [deep]
    body = json.dumps(
        {**change("UPDATE", 1), "record": {"id": 1, "secret": SECRET_TEXT, "deep": deep}}
    )
    ports = consumer_ports(aws, supabase, tables="articles")
    # When the consumer gets it (with a good one beside it)
    failed = run(sqs_event(body, json.dumps(change("UPDATE", 2))), ports, lambda_context)
    # Then that record fails alone, and no log line holds its row body
    assert len(failed) == 1
    logs = captured_logs.getvalue()
    assert "unusable message" in logs
    assert SECRET_TEXT not in logs
