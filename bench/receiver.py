"""Receiver: cold-start import time against `import boto3`, and handler time per request
against a bare `send_message` on the same moto queue."""

from __future__ import annotations

import json
import time
from typing import Any

from bench.common import ROOT, BenchContext, import_seconds, percentile, quiet, table, use_fake_aws

REQUESTS = 300


def measure_imports() -> list[tuple[str, ...]]:
    boto3_s = import_seconds("boto3")
    rows: list[tuple[str, ...]] = [("import", "median s", "x import boto3")]
    for module in ("boto3", "receiver.handler", "consumer.handler", "supabase"):
        seconds = boto3_s if module == "boto3" else import_seconds(module)
        rows.append((module, f"{seconds:.3f}", f"{seconds / boto3_s:.2f}"))
    return rows


def measure_requests() -> list[tuple[str, ...]]:
    use_fake_aws()
    import boto3
    from moto import mock_aws

    from local.aws_resources import provision, seed_secrets
    from local.template import function_environment
    from receiver.handler import build_ports, lambda_handler
    from waituntil.settings import ReceiverSettings

    event: dict[str, Any] = json.loads((ROOT / "events/receiver/insert.json").read_text())
    with mock_aws():
        sqs = boto3.client("sqs")
        secrets = boto3.client("secretsmanager")
        stack = provision(sqs, boto3.client("dynamodb"), parameters={"SupabaseUrl": "http://x"})
        seed_secrets(secrets, stack.resolver, {"WebhookSecretName": "local-dev-secret"})
        settings = ReceiverSettings.model_validate(
            function_environment(stack.resolver, "ReceiverFunction")
        )
        ports = build_ports(settings, secrets_client=secrets, sqs=sqs)
        context = BenchContext()
        bare, handled = [], []
        for _ in range(REQUESTS):  # interleaved, so drift affects both alike
            started = time.perf_counter()
            sqs.send_message(QueueUrl=stack.queue_url, MessageBody=event["body"])
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            response = lambda_handler(event, context, ports=ports)
            handled.append(time.perf_counter() - started)
            assert response["statusCode"] == 202, response
    rows: list[tuple[str, ...]] = [
        ("per request (moto)", "p50 ms", "p95 ms", "x bare send_message p50")
    ]
    for name, samples in (("bare send_message", bare), ("receiver handler", handled)):
        rows.append(
            (
                name,
                f"{percentile(samples, 0.5) * 1000:.2f}",
                f"{percentile(samples, 0.95) * 1000:.2f}",
                f"{percentile(samples, 0.5) / percentile(bare, 0.5):.2f}",
            )
        )
    return rows


def main() -> None:
    print("## Receiver\n")
    print(table(measure_imports()))
    print()
    with quiet():
        rows = measure_requests()
    print(table(rows))
    print()


if __name__ == "__main__":
    main()
