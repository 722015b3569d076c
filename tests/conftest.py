"""Shared fixtures: an emulated AWS built from template.yaml, events from events/, a context.

Three levels: ``unit`` (pure logic on fakes; no sockets and no moto, refused by
``tests/unit/conftest.py``), ``integration`` (handlers in-process under moto, the local
Supabase on real PostgreSQL and the local servers over real HTTP) and ``e2e`` (the local stack,
``local.stack``).
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Before any project import: Powertools reads these when its objects are created.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "tests",
        "POWERTOOLS_METRICS_NAMESPACE": "SupabaseWaitUntilTests",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
)
for endpoint_variable in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL")]:
    del os.environ[endpoint_variable]

import boto3  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from moto import mock_aws  # noqa: E402

from local.aws_resources import StackResources, provision, seed_secrets  # noqa: E402
from local.moto_patches import install as install_moto_patches  # noqa: E402
from local.template import function_environment  # noqa: E402

if TYPE_CHECKING:
    from local.supabase import LocalSupabase, PostgresCluster

# moto's transactions copy whole tables; the local stack and these tests use the patched one.
install_moto_patches()

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
WEBHOOK_SECRET = "local-dev-secret"  # the secret the bundled events carry

# Property tests: `make test` runs a fixed, derandomized set of examples (CI can never fail on
# a new random draw); `make soak` (HYPOTHESIS_PROFILE=soak) runs many more, freshly drawn.
# No deadline: timing belongs in `make bench`, and a busy CI machine must not fail a test.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "soak",
    max_examples=5000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
SOAK = os.environ.get("HYPOTHESIS_PROFILE") == "soak"


def examples(in_make_test: int) -> int:
    """A property test's example count: as given in `make test`, 40 times more in `make soak`
    (a count set on the test itself wins over the profile's)."""
    return in_make_test * 40 if SOAK else in_make_test


def load_event(relative_path: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / relative_path).read_text())
    return event


@dataclass
class LambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the project's Powertools logger writes, formatted as in Lambda."""
    from waituntil.core.observability import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    underlying = logging.getLogger(logger.name)
    underlying.addHandler(handler)
    yield stream
    underlying.removeHandler(handler)


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


@dataclass
class EmulatedAws:
    sqs: Any
    dynamodb: Any
    secrets: Any
    s3: Any
    stack: StackResources

    def environment(self, function_logical_id: str) -> dict[str, str]:
        return function_environment(self.stack.resolver, function_logical_id)

    def queue_messages(self, queue_url: str | None = None) -> list[dict[str, Any]]:
        """Drain up to 100 messages from a queue (default: the change queue)."""
        url = queue_url or self.stack.queue_url
        messages: list[dict[str, Any]] = []
        while len(messages) < 100:
            batch = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0
            ).get("Messages", [])
            if not batch:
                break
            for message in batch:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            messages.extend(batch)
        return messages


@pytest.fixture
def aws() -> Iterator[EmulatedAws]:
    """moto in-process, with the queues, table and secrets of template.yaml."""
    with mock_aws():
        sqs = boto3.client("sqs")
        dynamodb = boto3.client("dynamodb")
        secrets = boto3.client("secretsmanager")
        s3 = boto3.client("s3")
        stack = provision(sqs, dynamodb, parameters={"SupabaseUrl": "http://127.0.0.1:1"}, s3=s3)
        seed_secrets(secrets, stack.resolver, {"WebhookSecretName": WEBHOOK_SECRET})
        yield EmulatedAws(sqs=sqs, dynamodb=dynamodb, secrets=secrets, s3=s3, stack=stack)


# PostgreSQL for the tests: one server per test process (each xdist worker has its own), started
# on first use (about a second), and a database per test, copied from a template that holds the
# platform and supabase/migrations (no seed): about 20 ms, and dropped afterwards. A database
# rather than truncation or a schema per test, because tests change the schema itself (policies,
# tables, columns, triggers), and the API, the webhook triggers and pg_net's queue all live in a
# database: a copy is isolation no test can break, and leaves nothing for the next one.
TEMPLATE_DATABASE = "supabase_template"
_database_names = itertools.count()
Database = tuple["PostgresCluster", str]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    from local.supabase import PostgresCluster

    cluster = PostgresCluster().start()
    try:
        cluster.create_database(TEMPLATE_DATABASE)
        cluster.prepare(TEMPLATE_DATABASE, seed=False)
        yield cluster
    finally:
        cluster.stop()


def _fresh_database(cluster: PostgresCluster) -> Iterator[Database]:
    name = f"test_{os.getpid()}_{next(_database_names)}"
    cluster.create_database(name, template=TEMPLATE_DATABASE)
    yield cluster, name
    cluster.drop_database(name)


@pytest.fixture
def database(postgres: PostgresCluster) -> Iterator[Database]:
    """A fresh database: the migrations' empty tables, no webhook trigger."""
    yield from _fresh_database(postgres)


@pytest.fixture(scope="module")
def module_database(postgres: PostgresCluster) -> Iterator[Database]:
    yield from _fresh_database(postgres)


@pytest.fixture
def supabase(database: Database) -> Iterator[LocalSupabase]:
    """A local Supabase project (API and pg_net's worker) on a fresh database."""
    from local.supabase import LocalSupabase

    with LocalSupabase(*database) as local:
        yield local
