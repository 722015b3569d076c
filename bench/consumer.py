"""Consumer: a burst of 1,000 changes in batches of 10 against a 2,500-row table, coalesced
(one read per table per batch) against the naive way (one full read per change).

Counts Supabase requests (the stand-in's request log) and DynamoDB write requests (botocore
events on the client), and times both on this machine.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.common import BenchContext, quiet, table, use_fake_aws

WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem")


@dataclass
class RunCost:
    changes: int
    seconds: float
    supabase_requests: int
    dynamodb_writes: Counter[str]

    @property
    def write_requests(self) -> int:
        return sum(self.dynamodb_writes.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2500)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument(
        "--naive-changes",
        type=int,
        default=100,
        help="changes run the naive way (it is slow); its per-change cost is scaled up",
    )
    arguments = parser.parse_args(argv)
    use_fake_aws()
    with quiet():
        coalesced, naive = run(
            arguments.rows, arguments.changes, arguments.batch_size, arguments.naive_changes
        )
    print(
        f"## Consumer: {arguments.changes} changes, batches of {arguments.batch_size}, "
        f"{arguments.rows}-row table\n"
    )
    scale = arguments.changes / naive.changes
    rows: list[tuple[str, ...]] = [
        (
            "approach",
            "changes run",
            "Supabase requests",
            "DynamoDB write requests",
            "seconds",
            "per change ms",
        )
    ]
    rows.append(_row("coalesced (this project)", coalesced, 1.0))
    rows.append(_row(f"naive, measured on {naive.changes}", naive, 1.0))
    rows.append(_row(f"naive, scaled to {arguments.changes}", naive, scale))
    print(table(rows))
    print()
    print(
        "naive / coalesced: "
        f"Supabase requests x{naive.supabase_requests * scale / coalesced.supabase_requests:.1f}, "
        f"DynamoDB write requests x{naive.write_requests * scale / coalesced.write_requests:.1f}, "
        f"time per change x{_per_change(naive) / _per_change(coalesced):.1f}"
    )
    print(f"coalesced DynamoDB writes by operation: {dict(coalesced.dynamodb_writes)}")
    print()


def _per_change(cost: RunCost) -> float:
    return cost.seconds / cost.changes


def _row(name: str, cost: RunCost, scale: float) -> tuple[str, ...]:
    return (
        name,
        str(round(cost.changes * scale)),
        str(round(cost.supabase_requests * scale)),
        str(round(cost.write_requests * scale)),
        f"{cost.seconds * scale:.1f}",
        f"{cost.seconds / cost.changes * 1000:.1f}",
    )


def run(rows: int, changes: int, batch_size: int, naive_changes: int) -> tuple[RunCost, RunCost]:
    import boto3
    from moto import mock_aws

    from local.aws_resources import provision, seed_secrets
    from local.supabase_standin import SupabaseStandIn

    random.seed(7)
    with SupabaseStandIn(tables={"articles": "id"}) as supabase, mock_aws():
        supabase.seed("articles", [_article(key, 0) for key in range(1, rows + 1)])
        sqs, dynamodb = boto3.client("sqs"), boto3.client("dynamodb")
        secrets = boto3.client("secretsmanager")
        stack = provision(sqs, dynamodb, parameters={"SupabaseUrl": supabase.url})
        seed_secrets(secrets, stack.resolver, {"SupabaseKeySecretName": supabase.service_key})
        coalesced = _run_coalesced(supabase, stack, secrets, rows, changes, batch_size)
        naive = _run_naive(supabase, stack, secrets, rows, naive_changes)
    return coalesced, naive


def _counting_dynamodb() -> tuple[Any, Counter[str]]:
    import boto3

    from waituntil.adapters.aws import PATIENT

    client = boto3.client("dynamodb", config=PATIENT)
    counts: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        if model.name in WRITE_OPERATIONS:
            counts[model.name] += 1

    client.meta.events.register("before-call.dynamodb", count)
    return client, counts


def _ports(supabase: Any, stack: Any, secrets: Any) -> tuple[Any, Counter[str]]:
    import boto3

    from consumer.handler import build_ports
    from local.template import function_environment
    from waituntil.settings import ConsumerSettings

    dynamodb, counts = _counting_dynamodb()
    environment = function_environment(stack.resolver, "ConsumerFunction")
    ports = build_ports(
        ConsumerSettings.model_validate(environment),
        secrets_client=secrets,
        dynamodb=dynamodb,
        sqs=boto3.client("sqs"),
    )
    return ports, counts


def _run_coalesced(
    supabase: Any, stack: Any, secrets: Any, rows: int, changes: int, batch_size: int
) -> RunCost:
    return _run_batches(supabase, stack, secrets, rows, changes, batch_size)


def _run_naive(supabase: Any, stack: Any, secrets: Any, rows: int, changes: int) -> RunCost:
    """What the original Worker did per event, made correct: read the whole table and write
    the row and the whole list for every change (a batch of one)."""
    return _run_batches(supabase, stack, secrets, rows, changes, 1)


def _run_batches(
    supabase: Any, stack: Any, secrets: Any, rows: int, changes: int, batch_size: int
) -> RunCost:
    """Changes arrive ``batch_size`` at a time: each group is written to Supabase, then the
    consumer handles its batch. The cache is warm before counting starts."""
    from supabase import create_client

    from consumer.handler import lambda_handler

    ports, counts = _ports(supabase, stack, secrets)
    writer = create_client(supabase.url, supabase.service_key)  # the stand-in sends no webhooks
    lambda_handler({"Records": [_record(_update(writer, 1, 0))]}, BenchContext(), ports=ports)
    counts.clear()
    supabase.reset_request_log()
    seconds = 0.0
    requests = 0
    for start in range(0, changes, batch_size):
        count = min(batch_size, changes - start)
        bodies = [_update(writer, random.randint(1, rows), start + n + 1) for n in range(count)]
        supabase.reset_request_log()
        started = time.perf_counter()
        response = lambda_handler(
            {"Records": [_record(body) for body in bodies]}, BenchContext(), ports=ports
        )
        seconds += time.perf_counter() - started
        requests += len(supabase.request_log)
        assert response["batchItemFailures"] == [], response
    _check_converged(ports, supabase)
    return RunCost(changes, seconds, requests, counts)


def _update(writer: Any, key: int, revision: int) -> str:
    """Change one row in Supabase; return the queue message the receiver would have sent."""
    from waituntil.contracts import Change

    row = _article(key, revision)
    writer.table("articles").update(row).eq("id", key).execute()
    change = Change(
        type="UPDATE",
        schema_name="public",
        table="articles",
        key=key,
        record=row,
        old_record=None,
        received_at=datetime.now(UTC),
        correlation_id=str(uuid.uuid4()),
    )
    return change.to_message()


def _check_converged(ports: Any, supabase: Any) -> None:
    from waituntil.reader import get_list

    if get_list(ports.store, "articles") != supabase.rows("articles"):
        raise SystemExit("benchmark invalid: the cache did not converge")


def _article(key: int, revision: int) -> dict[str, Any]:
    return {"id": key, "title": f"Article {key}", "revision": revision, "body": "lorem ipsum " * 10}


def _record(body: str) -> dict[str, Any]:
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": "bench",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench",
        "awsRegion": "us-east-1",
    }


if __name__ == "__main__":
    main()
