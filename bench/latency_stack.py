"""The three functions wired to the modelled services, in process.

``ModelStack`` provisions the template's queues, table, bucket and secrets in moto (in
process), then hands out the ports each function builds, with boto3 clients made as the
functions make them (the same ``Config``s) and instrumented with the latency model:

- **DynamoDB**: ``bench.memory_dynamodb`` (``backend="memory"``), or moto's own backend
  (``backend="moto"``: its answers cost about 8 ms of CPU each, which is what the moto-only
  figures measured);
- **SQS, Secrets Manager, S3**: moto, behind the same latency hook (few calls per change);
- **Supabase**: ``bench.memory_supabase`` behind ``DelayedTransport``, read by the consumer's
  own ``SupabaseSource``.

Each call to ``consumer_ports()`` (and the others) is a new execution environment: new
clients, new caches, as a Lambda cold start makes them. The functions' handlers are then
called in process with these ports, as the integration tests call them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bench.common import use_fake_aws
from bench.latency import CallTrace, DelayedTransport, Latencies, instrument_client
from bench.memory_dynamodb import MemoryDynamoDB
from bench.memory_sqs import MemorySQS
from bench.memory_supabase import POOL_SIZE, BenchSupabaseSource, SourceTable, bench_key

SUPABASE_URL = "http://supabase.bench"
# The memory queue's visibility timeout: a failed batch comes back after this (the template's
# 660 s would stall a benchmark; bench.visibility adds the difference to what it reports).
BENCH_VISIBILITY_S = 5
# Shaped as JWTs with their role (the consumer refuses an anon secret holding another role's
# key); the memory table never looks at them.
SUPABASE_KEYS = {
    "SupabaseKeySecretName": bench_key("service_role"),
    "SupabaseAnonKeySecretName": bench_key("anon"),
}
# The secret events/receiver/*.json carry in their Authorization header.
WEBHOOK_SECRET = "local-dev-secret"  # noqa: S105 (the local stack's, never deployed)


@dataclass
class ModelStack:
    latencies: Latencies
    trace: CallTrace
    table: SourceTable
    backend: str  # "memory" or "moto"
    dynamodb: MemoryDynamoDB | None
    sqs: MemorySQS | None  # None: moto's queue
    resources: Any  # local.aws_resources.StackResources
    environment: dict[str, dict[str, str]]  # function logical id -> its environment

    # ----- clients, as each function makes them ------------------------------------------

    def client(
        self,
        service: str,
        config: Any = None,
        latencies: Latencies | None = None,
        tag: str = "",
    ) -> Any:
        """A boto3 client as a function makes it, under the model (``latencies`` or the
        stack's), its calls recorded in the trace with ``tag``."""
        client = self.raw_client(service, config)
        instrument_client(client, service, latencies or self.latencies, self.trace, tag=tag)
        return client

    def raw_client(self, service: str, config: Any = None) -> Any:
        """A client outside the model (the benchmark's own bookkeeping, Lambda's poller)."""
        import boto3

        client: Any = boto3.client(service, config=config)  # type: ignore[call-overload]
        if service == "dynamodb" and self.dynamodb is not None:
            self.dynamodb.attach(client)
        if service == "sqs" and self.sqs is not None:
            self.sqs.attach(client)
        return client

    # ----- ports, one set per execution environment --------------------------------------

    def consumer_ports(
        self, *, workers: int | None = None, latencies: Latencies | None = None, tag: str = ""
    ) -> Any:
        """The consumer's ports (its ``build_ports``), reading the memory table; ``workers``:
        the row writer's thread pool size instead of the adapter's default."""
        from consumer.handler import build_ports, supabase_keys
        from waituntil.adapters.aws import FAST, PATIENT
        from waituntil.adapters.cache_store import CacheStore
        from waituntil.adapters.secrets import SecretReader
        from waituntil.core.settings import ConsumerSettings

        settings = ConsumerSettings.model_validate(self.environment["ConsumerFunction"])
        model = latencies or self.latencies
        secrets_client = self.client("secretsmanager", PATIENT, model, tag)
        dynamodb = self.client("dynamodb", PATIENT, model, tag)
        ports = build_ports(
            settings,
            secrets_client=secrets_client,
            dynamodb=dynamodb,
            sqs=self.client("sqs", FAST, model, tag),
            s3=self.client("s3", PATIENT, model, tag),
        )
        source = BenchSupabaseSource(
            DelayedTransport(self.table.transport(), model, self.trace, tag=tag),
            {table: settings.policy(table) for table in settings.cached_tables},
            keys=supabase_keys(settings, SecretReader(secrets_client, settings.secret_max_age_s)),
            schema_name=settings.schema_name,
            timeout_s=settings.supabase_timeout_s,
            retry=settings.supabase_retry,
            max_rows=settings.page_size,
        )
        changes: dict[str, Any] = {"source": source}
        if workers is not None:
            changes["store"] = CacheStore(settings.table_name, dynamodb, workers=workers)
        return dataclasses.replace(ports, **changes)

    def receiver_ports(self, latencies: Latencies | None = None, tag: str = "") -> Any:
        from receiver.handler import build_ports
        from waituntil.adapters.aws import FAST
        from waituntil.core.settings import ReceiverSettings

        settings = ReceiverSettings.model_validate(self.environment["ReceiverFunction"])
        return build_ports(
            settings,
            secrets_client=self.client("secretsmanager", FAST, latencies, tag),
            sqs=self.client("sqs", FAST, latencies, tag),
        )

    def reader_ports(self, latencies: Latencies | None = None, tag: str = "") -> Any:
        from reader.handler import build_ports
        from waituntil.adapters.aws import FAST
        from waituntil.core.settings import ReaderSettings

        settings = ReaderSettings.model_validate(self.environment["ReaderFunction"])
        return build_ports(settings, dynamodb=self.client("dynamodb", FAST, latencies, tag))

    @property
    def queue_url(self) -> str:
        return str(self.resources.queue_url)

    @property
    def table_name(self) -> str:
        return str(self.resources.table_name)


@contextlib.contextmanager
def model_stack(
    rows: int,
    latencies: Latencies,
    *,
    backend: str = "memory",
    queue: str = "moto",
    trace: CallTrace | None = None,
    pool_size: int = POOL_SIZE,
    parameters: dict[str, str] | None = None,
) -> Iterator[ModelStack]:
    """A provisioned stack (moto in process, started here) over a table of ``rows`` rows;
    ``backend``: DynamoDB's (memory or moto); ``queue``: SQS's (moto, or memory for the
    benchmarks whose pollers wait on the queue)."""
    use_fake_aws()
    import boto3
    from moto import mock_aws

    from local.aws_resources import provision, seed_secrets
    from local.template import function_environment

    if backend not in ("memory", "moto"):
        raise ValueError(f"backend must be memory or moto, not {backend!r}")
    with mock_aws():
        resources = provision(
            boto3.client("sqs"),
            boto3.client("dynamodb"),
            parameters={"SupabaseUrl": SUPABASE_URL, **(parameters or {})},
            s3=boto3.client("s3"),
        )
        seed_secrets(
            boto3.client("secretsmanager"),
            resources.resolver,
            {**SUPABASE_KEYS, "WebhookSecretName": WEBHOOK_SECRET},
        )
        environment = {
            name: function_environment(resources.resolver, name)
            for name in ("ConsumerFunction", "ReceiverFunction", "ReaderFunction")
        }
        memory = MemoryDynamoDB() if backend == "memory" else None
        try:
            yield ModelStack(
                latencies=latencies,
                trace=trace or CallTrace(),
                table=SourceTable(rows, pool_size=pool_size),
                backend=backend,
                dynamodb=memory,
                sqs=MemorySQS(BENCH_VISIBILITY_S) if queue == "memory" else None,
                resources=resources,
                environment=environment,
            )
        finally:
            if memory is not None:
                memory.close()
