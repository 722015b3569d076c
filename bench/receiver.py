"""Receiver: handler time per request against a bare `send_message` on the same moto queue.

The acknowledgement Supabase waits for is the receiver's whole handler (bearer check, payload
validation, `send_message`); the floor under it is the `send_message` alone. Cold-start imports
of every function are in `bench.cold_start`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from bench.common import ROOT, BenchContext, Progress, percentile, quiet, table, use_fake_aws

REQUESTS = 300


@dataclass(frozen=True)
class AckSamples:
    """Seconds per request, interleaved: the bare floor and the receiver's handler."""

    bare_send_message: list[float]
    receiver_handler: list[float]


def measure_samples(requests: int = REQUESTS, progress: Progress | None = None) -> AckSamples:
    use_fake_aws()
    import boto3
    from moto import mock_aws

    from local.aws_resources import provision, seed_secrets
    from local.template import function_environment
    from receiver.handler import build_ports, lambda_handler
    from waituntil.core.settings import ReceiverSettings

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
        for index in range(requests):  # interleaved, so drift affects both alike
            started = time.perf_counter()
            sqs.send_message(QueueUrl=stack.queue_url, MessageBody=event["body"])
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            with quiet():
                response = lambda_handler(event, context, ports=ports)
            handled.append(time.perf_counter() - started)
            assert response["statusCode"] == 202, response
            if progress is not None:
                progress.count("receiver requests", index + 1, requests)
    return AckSamples(bare_send_message=bare, receiver_handler=handled)


def rows_of(samples: AckSamples) -> list[tuple[str, ...]]:
    bare = samples.bare_send_message
    rows: list[tuple[str, ...]] = [
        ("per request (moto)", "p50 ms", "p95 ms", "x bare send_message p50")
    ]
    for name, values in (
        ("bare send_message", bare),
        ("receiver handler", samples.receiver_handler),
    ):
        rows.append(
            (
                name,
                f"{percentile(values, 0.5) * 1000:.2f}",
                f"{percentile(values, 0.95) * 1000:.2f}",
                f"{percentile(values, 0.5) / percentile(bare, 0.5):.2f}",
            )
        )
    return rows


def main() -> None:
    print("## Receiver\n")
    print(table(rows_of(measure_samples())))
    print()


if __name__ == "__main__":
    main()
