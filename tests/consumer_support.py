"""Driving the consumer in tests: ports on moto and a local Supabase, SQS events, draining.

A full sync continues itself through the change queue (and a first change starts the fill
there), so "the queue drained" means: run the handler on what the queue holds until it is empty.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from consumer.handler import build_ports, lambda_handler
from local.aws_resources import seed_secrets
from local.supabase import LocalSupabase
from tests.conftest import EmulatedAws, LambdaContext, load_event
from waituntil.core.contracts import Change
from waituntil.core.settings import ConsumerSettings
from waituntil.read.cache_client import get_item, get_list
from waituntil.sync.ports import ConsumerPorts


def consumer_ports(
    aws: EmulatedAws,
    supabase: LocalSupabase,
    tables: str = "articles,authors",
    *,
    secrets_client: Any = None,
    dynamodb: Any = None,
    **overrides: str,
) -> ConsumerPorts:
    """The consumer's ports on moto and a local Supabase (authors keyed by slug, as the
    migration makes them); ``secrets_client`` and ``dynamodb`` may replace the clients (e.g. a
    ``tests.faults.FaultyClient``, one with ``tests.faults.LostAnswers``)."""
    seed_secrets(
        aws.secrets,
        aws.stack.resolver,
        {
            "SupabaseKeySecretName": supabase.service_key,
            "SupabaseAnonKeySecretName": supabase.anon_key,
        },
    )
    environment = {
        **aws.environment("ConsumerFunction"),
        "SUPABASE_URL": supabase.url,
        "CACHED_TABLES": tables,
        "TABLE_POLICIES": json.dumps({"authors": {"key": "slug"}} if "authors" in tables else {}),
        **overrides,
    }
    return build_ports(
        ConsumerSettings.model_validate(environment),
        secrets_client=secrets_client or aws.secrets,
        dynamodb=dynamodb or aws.dynamodb,
        sqs=aws.sqs,
        s3=aws.s3,
    )


def sqs_event(*bodies: str) -> dict[str, Any]:
    """An SQS event as Lambda delivers it, one record per message body."""
    template = load_event("consumer/batch.json")["Records"][0]
    records = []
    for body in bodies:
        record = copy.deepcopy(template)
        record["messageId"] = str(uuid.uuid4())
        record["body"] = body
        records.append(record)
    return {"Records": records}


def batch(*changes: dict[str, Any]) -> dict[str, Any]:
    return sqs_event(*(json.dumps(change) for change in changes))


def change(change_type: str, key: Any, table: str = "articles") -> dict[str, Any]:
    row = {"slug" if table == "authors" else "id": key}
    return Change(
        type=change_type,  # type: ignore[arg-type]
        schema_name="public",
        table=table,
        key=key,
        record=None if change_type in ("DELETE", "RESYNC") else row,
        old_record=None if change_type in ("INSERT", "RESYNC") else row,
        received_at=datetime.now(UTC),
        correlation_id=f"corr-{change_type}-{key}",
    ).model_dump(mode="json", by_alias=True)


def resync(table: str = "*") -> dict[str, Any]:
    return Change(
        type="RESYNC",
        schema_name="public",
        table=table,
        key=None,
        received_at=datetime.now(UTC),
        correlation_id="corr-resync",
    ).model_dump(mode="json", by_alias=True)


def run(event: dict[str, Any], ports: ConsumerPorts, context: LambdaContext) -> list[str]:
    """Invoke the handler once; return the ids of the records it reported as failed."""
    response = lambda_handler(event, context, ports=ports)
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def drain(
    aws: EmulatedAws, ports: ConsumerPorts, context: LambdaContext, most_invocations: int = 500
) -> int:
    """Run the consumer on what the change queue holds (fills, continuations) until it is
    empty; return the invocations used. A failed record fails the test."""
    invocations = 0
    while True:
        messages = aws.queue_messages()
        if not messages:
            return invocations
        for start in range(0, len(messages), 10):
            group = messages[start : start + 10]
            failed = run(sqs_event(*(m["Body"] for m in group)), ports, context)
            assert failed == [], f"records failed while draining: {failed}"
            invocations += 1
            assert invocations <= most_invocations, "the queue never drained"


def run_and_drain(
    event: dict[str, Any], aws: EmulatedAws, ports: ConsumerPorts, context: LambdaContext
) -> list[str]:
    failed = run(event, ports, context)
    drain(aws, ports, context)
    return failed


def cache_equals(ports: ConsumerPorts, rows: list[dict[str, Any]], table: str = "articles") -> None:
    """The list and every row item equal ``rows`` (Supabase's table, in key order)."""
    assert get_list(ports.store, table) == rows
    for row in rows:
        assert get_item(ports.store, table, row["slug" if table == "authors" else "id"]) == row


def row_of(supabase: LocalSupabase, key: Any, table: str = "articles") -> dict[str, Any] | None:
    """Supabase's row (every column, as PostgREST renders it), or None."""
    column = "slug" if table == "authors" else "id"
    return next((row for row in supabase.rows(table) if row[column] == key), None)
