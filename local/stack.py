"""The whole pipeline on one machine, no Docker and no AWS account: ``make dev``.

``PipelineStack`` wires, from template.yaml:
- emulated AWS: moto's server with the template's queues, table and secrets
  (``local.aws_resources``), reached by ordinary boto3 through ``AWS_ENDPOINT_URL``;
- the functions, each in its own local Lambda container with the environment the template
  gives it (``local.lambda_runtime``; the module explains why a process per function);
- API Gateway in front of every ``Type: Api`` event (``local.api_gateway``);
- Lambda's SQS event source mapping for every ``Type: SQS`` event (``local.poller``);
- EventBridge's scheduled rules (``local.scheduler``), when ``schedules`` is true (``make dev``):
  the reconcile every minute and the resync every day, as the template's parameters say;
- Supabase: a local project on real PostgreSQL (``local.supabase``: PostgREST's API, pg_net's
  worker) whose Database Webhooks, created from ``supabase/webhooks.sql.template``, call the
  local receiver; unless a real project is given.

Local-only deviations from a deployed stack (everything else comes from the template):
- ``visibility_timeout_s`` may shorten the change queue's visibility timeout (the template's
  is ``local.template.queue_visibility_timeout_s``) so that a failed batch is retried within
  seconds; ``make dev`` uses 10 s;
- one container per function and one batch at a time per queue (Lambda scales out);
- the API is served without the stage prefix (``/revalidate``, not ``/v1/revalidate``);
- the cache (moto) lives in memory: a restart starts with an empty cache, which ``make dev``
  fills again on start by queueing a RESYNC, as ``make backfill`` does (``PipelineStack``
  itself does not, so tests start from an empty cache).

This module is the wiring only: ``make dev`` is ``local.dev`` (its CLI), which prints
``local.banner`` and writes ``local.state_file``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from local.api_gateway import ApiGateway, ApiRoute, api_routes, api_settings
from local.aws_resources import StackResources, provision, seed_secrets
from local.lambda_runtime import (
    ROOT,
    FunctionContainer,
    FunctionSpec,
    Invocation,
    container_environment,
    function_specs,
)
from local.moto_server import AwsEndpoint, MotoServer
from local.poller import SqsEventSource, SqsPoller, sqs_event_sources
from local.scheduler import Scheduler, scheduled_messages
from local.supabase import LocalSupabase, PostgresCluster
from local.template import Resolver, load_template, resources_of_type

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from waituntil.adapters.cache_store import CacheStore
    from waituntil.core.table_policy import TablePolicy

log = logging.getLogger("local.stack")

# Supabase's dashboard default for a Database Webhook's timeout.
WEBHOOK_TIMEOUT_MS = 5000
# How long Ctrl-C waits for the batches in flight before stopping what they depend on.
IN_FLIGHT_GRACE_S = 10.0


class PortInUse(OSError):
    """A port the user chose is taken: the message names it and the make variable to change."""

    def __init__(self, what: str, port: int, variable: str) -> None:
        super().__init__(
            errno.EADDRINUSE,
            f"port {port} ({what}) is already in use; choose another: make dev {variable}=<port>",
        )


class PipelineStack:
    """Everything ``sam deploy`` creates, running locally; a context manager.

    ``parameters`` overrides template parameters (``max_receive_count`` and
    ``batching_window_s`` are shortcuts for MaxReceiveCount and ConsumerBatchingWindowSeconds).
    ``supabase_url``/``supabase_key`` use a real project instead of a local one. The local
    one runs on ``database`` (a cluster and the name of a database ``prepare``d there: the
    tests') or on a PostgreSQL of its own, kept in ``data_dir`` (else temporary), stopped with
    the stack; ``seed`` loads ``supabase/seed.sql`` into a new one; ``drop_webhooks`` fails that
    share of webhook deliveries, ``webhook_jitter_s`` delays each by up to that.
    ``environment`` adds variables to every container (e.g. ``POWERTOOLS_LOG_LEVEL``);
    ``function_logs`` is a folder for the functions' logs (``<LogicalId>.log``) instead of
    this process's stderr.
    ``serve=False`` provisions AWS and Supabase only: no API, no pollers, no containers
    (what ``local.invoke`` needs to run one function in its own process).
    ``schedules`` runs the template's scheduled rules (off by default: a test's queue holds
    only what it sent).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: str | Path | None = None,
        parameters: dict[str, str] | None = None,
        max_receive_count: int | None = None,
        visibility_timeout_s: int | None = None,
        batching_window_s: int | None = None,
        webhook_secret: str | None = None,
        webhook_jitter_s: float = 0.0,
        supabase_url: str | None = None,
        supabase_key: str | None = None,
        supabase_anon_key: str | None = None,
        supabase_port: int = 0,
        database: tuple[PostgresCluster, str] | None = None,
        seed: bool = False,
        drop_webhooks: float = 0.0,
        environment: dict[str, str] | None = None,
        function_logs: str | Path | None = None,
        serve: bool = True,
        schedules: bool = False,
    ) -> None:
        if (supabase_url is None) != (supabase_key is None):
            raise ValueError("give both supabase_url and supabase_key, or neither")
        self.parameters = dict(parameters or {})
        if max_receive_count is not None:
            self.parameters["MaxReceiveCount"] = str(max_receive_count)
        if batching_window_s is not None:
            self.parameters["ConsumerBatchingWindowSeconds"] = str(batching_window_s)
        self.host = host
        self.port = port
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.visibility_timeout_s = visibility_timeout_s
        self.webhook_secret = webhook_secret or secrets.token_urlsafe(24)
        self.webhook_jitter_s = webhook_jitter_s
        self.supabase_port = supabase_port
        self.serve = serve
        self.schedules = schedules
        self.scheduler: Scheduler | None = None
        self._environment = dict(environment or {})
        self.function_logs = Path(function_logs) if function_logs is not None else None
        self._real_supabase = (supabase_url, supabase_key) if supabase_url else None
        self._supabase_anon_key = supabase_anon_key
        self.database, self.seed, self.drop_webhooks = database, seed, drop_webhooks
        self._own_cluster: PostgresCluster | None = None
        self.template = load_template()
        self.supabase: LocalSupabase | None = None
        self.resources: StackResources | None = None
        self.specs: dict[str, FunctionSpec] = {}
        self.routes: list[ApiRoute] = []
        self.event_sources: list[SqsEventSource] = []
        self._moto = MotoServer(region=Resolver(self.template).pseudo["AWS::Region"])
        self._aws: AwsEndpoint | None = None
        self._api: ApiGateway | None = None
        self._containers: dict[str, FunctionContainer] = {}
        self._pollers: list[SqsPoller] = []
        self._supabase_url = ""
        self._supabase_key = ""
        self._sqs: SQSClient | None = None

    # ----- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> PipelineStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> PipelineStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        _import_layers(self.template)
        self._aws = self._moto.start()
        sqs = self._sqs = self._aws.sqs()
        if self.serve:
            # Bound first: the database's webhooks need the receiver's URL.
            try:
                self._api = ApiGateway(self.host, self.port)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise PortInUse("the local API", self.port, "PORT") from error
                raise
        defaults = Resolver(self.template, parameters=self.parameters)
        self._start_supabase(defaults)
        parameters = {**self.parameters, "SupabaseUrl": self._supabase_url}
        self.resources = provision(
            sqs, self._aws.dynamodb(), parameters=parameters, s3=self._aws.s3()
        )
        resolver = self.resources.resolver
        seed_secrets(
            self._aws.secretsmanager(),
            resolver,
            {
                "WebhookSecretName": self.webhook_secret,
                "SupabaseKeySecretName": self._supabase_key,
                # Without an anon key (a real project reading only with "role": "service"),
                # the service key stands in: no table reads with it then.
                "SupabaseAnonKeySecretName": self._supabase_anon_key or self._supabase_key,
            },
        )
        self.specs = function_specs(resolver)
        self.routes = api_routes(resolver)
        self.event_sources = [source for source in sqs_event_sources(resolver) if source.enabled]
        if self.visibility_timeout_s is not None:
            for source in self.event_sources:
                sqs.set_queue_attributes(
                    QueueUrl=source.queue_url,
                    Attributes={"VisibilityTimeout": str(self.visibility_timeout_s)},
                )
        if self.serve:
            self._start_functions(resolver)
            if self.schedules:
                self.scheduler = Scheduler(
                    scheduled_messages(resolver, self.resources.queue_urls), self._aws.sqs()
                )
                self.scheduler.start()

    def _start_supabase(self, resolver: Resolver) -> None:
        policies = table_policies(resolver)
        if self._real_supabase is not None:
            self._supabase_url, self._supabase_key = (str(v) for v in self._real_supabase)
            if self._supabase_anon_key is None and any(
                policy.role == "anon" for policy in policies.values()
            ):
                raise ValueError(
                    "tables are cached with the anon role's view (the default policy): "
                    "set SUPABASE_ANON_KEY beside SUPABASE_URL and SUPABASE_KEY"
                )
            return
        if self.database is None:
            self._own_cluster = PostgresCluster(self.data_dir).start()
            self._own_cluster.prepare("postgres", seed=self.seed)
        cluster, database = self.database or (self._own_cluster, "postgres")
        assert cluster is not None
        jitter, drop = self.webhook_jitter_s, self.drop_webhooks
        self.supabase = LocalSupabase(
            cluster, database, webhook_jitter_s=jitter, drop_webhooks=drop
        )
        if self._api is not None:
            self.supabase.wire_webhooks(
                self.webhook_url, self.webhook_secret, list(policies), WEBHOOK_TIMEOUT_MS
            )
        self._supabase_url = _start_supabase(self.supabase, self.supabase_port)
        self._supabase_key = self.supabase.service_key
        self._supabase_anon_key = self.supabase.anon_key

    def _start_functions(self, resolver: Resolver) -> None:
        assert self._aws is not None and self._api is not None
        aws_environment = self._aws.environment()
        for logical_id, spec in self.specs.items():
            environment = container_environment(spec, aws_environment, self._environment)
            log_path = (
                None if self.function_logs is None else self.function_logs / f"{logical_id}.log"
            )
            self._containers[logical_id] = FunctionContainer(spec, environment, log_path)
        # The pipeline's functions start now, in parallel, so that the first webhook does not
        # wait for a cold start (Supabase gives it 5 s and never retries); the others (the
        # read API) start at their first request, as a Lambda cold start.
        path = webhook_path(self.template)
        warm = {source.function_id for source in self.event_sources} | {
            route.function_id for route in self.routes if route.path == path
        }
        for logical_id in warm:
            self._containers[logical_id].spawn()
        for logical_id in warm:
            self._containers[logical_id].wait_ready()
        self._api.serve(self.routes, api_settings(resolver), self.invoke)
        for source in self.event_sources:
            poller = SqsPoller(
                source,
                self._aws.sqs(),  # its own client: its long polls hold a connection each
                self._containers[source.function_id].invoke,
                self._aws.region,
            )
            self._pollers.append(poller)
            poller.start()

    def stop(self) -> None:
        """Stop in dependency order: nothing is left running, idempotent."""
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        for poller in self._pollers:
            poller.signal_stop()  # now: its current long poll (up to 1 s) overlaps the rest
        # A batch in flight finishes against live dependencies, as Lambda lets an invocation
        # run to its end; cut short, it would fail on a stopped Supabase and print its error
        # (a Ctrl-C right after a webhook is the common case). Bounded: a long fill is cut.
        for poller in self._pollers:
            poller.join(IN_FLIGHT_GRACE_S / len(self._pollers))
        if self.supabase is not None:
            # First, while the receiver still answers: webhooks in flight complete.
            with _logged("stopping the local Supabase"):
                self.supabase.stop()
        if self._api is not None:
            with _logged("stopping the API"):
                self._api.stop()
            self._api = None
        for container in self._containers.values():
            container.begin_stop()
        # Nothing needs AWS any more: moto winds down while the containers exit.
        moto_stopping = threading.Thread(target=self._stop_moto, name="moto-stop")
        moto_stopping.start()
        for container in self._containers.values():
            with _logged(f"stopping {container.spec.logical_id}"):
                container.stop()
        for poller in self._pollers:
            poller.join()
        moto_stopping.join()
        self._pollers.clear()
        self._containers.clear()
        if self._own_cluster is not None:
            with _logged("stopping PostgreSQL"):
                self._own_cluster.stop()
            self._own_cluster = None

    def _stop_moto(self) -> None:
        with _logged("stopping moto"):
            self._moto.stop()

    # ----- what the stack exposes ---------------------------------------------------------

    @property
    def aws(self) -> AwsEndpoint:
        if self._aws is None:
            raise RuntimeError("the stack is not running")
        return self._aws

    @property
    def api_url(self) -> str:
        if self._api is None:
            raise RuntimeError("the stack serves no API (serve=False or stopped)")
        return self._api.url

    @property
    def webhook_url(self) -> str:
        return f"{self.api_url}{webhook_path(self.template)}"

    @property
    def supabase_url(self) -> str:
        return self._supabase_url

    @property
    def supabase_key(self) -> str:
        return self._supabase_key

    @property
    def queue_url(self) -> str:
        return self._resources.queue_url

    @property
    def dlq_url(self) -> str:
        return self._resources.dlq_url

    @property
    def table_name(self) -> str:
        return self._resources.table_name

    @property
    def _resources(self) -> StackResources:
        if self.resources is None:
            raise RuntimeError("the stack is not running")
        return self.resources

    def cache_store(self) -> CacheStore:
        """The cache table as the read side sees it (``waituntil.read.cache_client`` takes this)."""
        from waituntil.adapters.cache_store import CacheStore

        return CacheStore(self.table_name, self.aws.dynamodb())

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The full environment a container of this function gets."""
        return container_environment(
            self.specs[logical_id], self.aws.environment(), self._environment
        )

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Invocation:
        """Invoke a function's container, as ``aws lambda invoke`` would."""
        return self._containers[logical_id].invoke(event)

    @property
    def consumer_batches(self) -> int:
        """Batches the SQS pollers have handed to functions so far."""
        return sum(poller.batches for poller in self._pollers)

    def queue_depth(self, queue_url: str | None = None) -> int:
        """Messages visible, in flight or delayed on a queue (default: the change queue)."""
        if self._sqs is None:
            raise RuntimeError("the stack is not running")
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=queue_url or self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def wait_until_idle(self, timeout_s: float = 30.0) -> bool:
        """True once no webhook is pending, the polled queues are empty and no batch is in
        flight; False if that did not happen within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            webhooks_done = self.supabase is None or self.supabase.wait_for_webhooks(
                max(remaining, 0.0)
            )
            if (
                webhooks_done
                and not any(poller.busy for poller in self._pollers)
                and all(self.queue_depth(source.queue_url) == 0 for source in self.event_sources)
            ):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def state(self) -> dict[str, Any]:
        """What ``local.invoke`` needs to run a function against this stack."""
        return {
            "pid": os.getpid(),
            "aws_endpoint": self.aws.url,
            "region": self.aws.region,
            "api_url": self.api_url if self._api is not None else None,
            "supabase_url": self.supabase_url,
            "functions": {logical_id: asdict(spec) for logical_id, spec in self.specs.items()},
            "environment": self._environment,
            # Named as the deployed stack's outputs, so `make dlq` and the others read both alike.
            "outputs": {
                "ChangeQueueUrl": self.queue_url,
                "DeadLetterQueueUrl": self.dlq_url,
                "CacheTableName": self.table_name,
                "ConsumerFunctionName": self.specs["ConsumerFunction"].function_name,
                "ReceiverFunctionName": self.specs["ReceiverFunction"].function_name,
                **({"WebhookUrl": self.webhook_url} if self._api is not None else {}),
            },
        }


def webhook_path(template: dict[str, Any]) -> str:
    """The path of the template's ``WebhookUrl`` output, after the stage (``/revalidate``)."""
    value = template.get("Outputs", {}).get("WebhookUrl", {}).get("Value", {})
    text = value.get("Fn::Sub", "") if isinstance(value, dict) else str(value)
    match = re.search(r"execute-api\.[^/]+/[^/]+(/.*)$", text)
    return match.group(1) if match else "/revalidate"


def _import_layers(template: dict[str, Any]) -> None:
    """Put the template's layers on this process's path: the stack reads the cache with the
    shared package (``waituntil.read.cache_client``), as any other reader of the table would."""
    for layer in resources_of_type(template, "AWS::Serverless::LayerVersion").values():
        path = str((ROOT / layer["Properties"]["ContentUri"]).resolve())
        if path not in sys.path:
            sys.path.append(path)


def _start_supabase(supabase: LocalSupabase, port: int) -> str:
    # A taken port is an error, not a silent move elsewhere: the URL a user pasted into a client
    # (http://127.0.0.1:54321) would quietly point at whatever holds that port.
    try:
        return supabase.start(host="127.0.0.1", port=port)
    except OSError as error:
        if port != 0 and error.errno == errno.EADDRINUSE:
            raise PortInUse("the local Supabase API", port, "SUPABASE_PORT") from error
        raise


@contextlib.contextmanager
def _logged(what: str) -> Any:
    """Go on stopping the rest when one part fails to stop."""
    try:
        yield
    except Exception:
        log.exception("%s failed", what)


def table_policies(resolver: Resolver) -> dict[str, TablePolicy]:
    """The cached tables and their policies, from the template's parameters, parsed exactly as
    the functions parse them from their environment."""
    from waituntil.core.table_policy import TablePolicy, parse_policies

    tables = tuple(t.strip() for t in resolver.parameter("CachedTables").split(",") if t.strip())
    default = TablePolicy(
        key=resolver.parameter("PrimaryKey"), order=resolver.parameter("ListOrder") or None
    )
    return parse_policies(tables, resolver.parameter("TablePolicies"), default)
