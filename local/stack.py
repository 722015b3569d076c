"""The whole pipeline on one machine, no Docker and no AWS account: ``make dev``.

``PipelineStack`` wires, from template.yaml:
- emulated AWS: moto's server with the template's queues, table and secrets
  (``local.aws_resources``), reached by ordinary boto3 through ``AWS_ENDPOINT_URL``;
- the functions, each in its own local Lambda container with the environment the template
  gives it (``local.lambda_runtime``; the module explains why a process per function);
- API Gateway in front of every ``Type: Api`` event (``local.api_gateway``);
- Lambda's SQS event source mapping for every ``Type: SQS`` event (``local.poller``);
- Supabase: the stand-in (``local.supabase_standin``) with a Database Webhook to the local
  receiver, unless a real project is given.

Local-only deviations from a deployed stack (everything else comes from the template):
- ``visibility_timeout_s`` may shorten the change queue's visibility timeout (660 s in the
  template) so that a failed batch is retried within seconds; ``make dev`` uses 10 s;
- one container per function and one batch at a time per queue (Lambda scales out);
- the API is served without the stage prefix (``/revalidate``, not ``/v1/revalidate``);
- the cache (moto) lives in memory: a restart starts with an empty cache, which ``make dev``
  fills again on start by queueing a RESYNC, as ``make backfill`` does (``PipelineStack``
  itself does not, so tests start from an empty cache).

``python -m local.stack [--data-dir DIR] [--port N] [--supabase-port N] [--host H]`` (``make dev
DATA= PORT= SUPABASE_PORT= HOST=``) runs it in the foreground until Ctrl-C or SIGTERM, and
writes the endpoints to a state file (``.local-data/stack.json``, or
``$LOCAL_STACK_STATE``) that ``local.invoke`` reads; the file is removed on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import re
import secrets
import shlex
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from local import BUNDLED_EVENTS_SECRET
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
from local.supabase_standin import SupabaseStandIn, WebhookConfig
from local.template import Resolver, load_template, resources_of_type

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from waituntil.adapters.cache_store import CacheStore
    from waituntil.table_policy import TablePolicy

log = logging.getLogger("local.stack")

DEFAULT_PORT = 3000
DEFAULT_SUPABASE_PORT = 54321
# `make dev` caches two tables, each with its own key and list order (template parameters).
DEV_PARAMETERS = {
    "CachedTables": "articles,authors",
    "TablePolicies": json.dumps({"authors": {"key": "slug", "order": "name"}}),
}  # the Supabase CLI's local API port, a familiar URL
DEV_VISIBILITY_TIMEOUT_S = 10
DEFAULT_STATE_PATH = ROOT / ".local-data" / "stack.json"
# `make dev` uses the bundled events' secret, so that the banner's `make invoke ...
# EVENT=events/receiver/insert.json` is accepted; only on loopback: a stack reachable from
# elsewhere (--host 0.0.0.0) gets a random one.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Supabase's dashboard default for a Database Webhook's timeout.
WEBHOOK_TIMEOUT_S = 5.0


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
    ``supabase_url``/``supabase_key`` use a real project instead of the stand-in.
    ``environment`` adds variables to every container (e.g. ``POWERTOOLS_LOG_LEVEL``);
    ``function_logs`` is a folder for the functions' logs (``<LogicalId>.log``) instead of
    this process's stderr.
    ``serve=False`` provisions AWS and Supabase only: no API, no pollers, no containers
    (what ``local.invoke`` needs to run one function in its own process).
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
        anon_policies: dict[str, str] | None = None,
        environment: dict[str, str] | None = None,
        function_logs: str | Path | None = None,
        serve: bool = True,
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
        self._environment = dict(environment or {})
        self.function_logs = Path(function_logs) if function_logs is not None else None
        self._real_supabase = (supabase_url, supabase_key) if supabase_url else None
        self._supabase_anon_key = supabase_anon_key
        # What the stand-in's anon role may see, per table (its RLS); every row by default.
        self.anon_policies = anon_policies
        self.template = load_template()
        self.standin: SupabaseStandIn | None = None
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
            # Bound first: the stand-in's webhook needs the receiver's URL before it starts.
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
        webhook = None
        if self._api is not None:
            webhook = WebhookConfig(
                url=self.webhook_url,
                headers={"Authorization": f"Bearer {self.webhook_secret}"},
                timeout_s=WEBHOOK_TIMEOUT_S,
                max_jitter_s=self.webhook_jitter_s,
            )
        self.standin = SupabaseStandIn(
            {table: policy.key for table, policy in policies.items()},
            data_dir=self.data_dir,
            webhook=webhook,
            anon_policies=self.anon_policies or {table: "true" for table in policies},
        )
        self._supabase_url = _start_standin(self.standin, self.supabase_port)
        self._supabase_key = self.standin.service_key
        self._supabase_anon_key = self.standin.anon_key

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
        for poller in self._pollers:
            poller.signal_stop()  # now: its current long poll (up to 1 s) overlaps the rest
        if self.standin is not None:
            # First, while the receiver still answers: webhooks in flight complete.
            with _logged("stopping the Supabase stand-in"):
                self.standin.stop()
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
        """The cache table as the read side sees it (``waituntil.cache_client`` takes this)."""
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
            webhooks_done = self.standin is None or self.standin.wait_for_webhooks(
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
    shared package (``waituntil.cache_client``), as any other reader of the table would."""
    for layer in resources_of_type(template, "AWS::Serverless::LayerVersion").values():
        path = str((ROOT / layer["Properties"]["ContentUri"]).resolve())
        if path not in sys.path:
            sys.path.append(path)


def _start_standin(standin: SupabaseStandIn, port: int) -> str:
    # A taken port is an error, not a silent move elsewhere: the URL a user pasted into a client
    # (http://127.0.0.1:54321) would quietly point at whatever holds that port.
    try:
        return standin.start(host="127.0.0.1", port=port)
    except OSError as error:
        if port != 0 and error.errno == errno.EADDRINUSE:
            raise PortInUse("the Supabase stand-in", port, "SUPABASE_PORT") from error
        raise


@contextlib.contextmanager
def _logged(what: str) -> Any:
    """Go on stopping the rest when one part fails to stop."""
    try:
        yield
    except Exception:
        log.exception("%s failed", what)


# ----- the state file read by local.invoke -------------------------------------------------


def state_path() -> Path:
    return Path(os.environ.get("LOCAL_STACK_STATE") or DEFAULT_STATE_PATH)


def write_state(stack: PipelineStack, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(stack.state(), indent=2))
    temporary.replace(path)


def read_state(path: Path) -> dict[str, Any] | None:
    """The state of a running stack, or None (no file, or its process is gone)."""
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None  # left behind by a stack that was killed
    return state


def remove_state(path: Path) -> None:
    state = read_state(path)
    if state is not None and state.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


# ----- make dev ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    arguments = _parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    stopping = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        real_url, real_key = real_supabase(os.environ)
    except ValueError as error:
        print(f"cannot start the local stack: {error}", file=sys.stderr)
        return 2
    webhook_secret = os.environ.get("WEBHOOK_SECRET") or None
    exposed = arguments.host not in LOOPBACK_HOSTS
    # Two tables by default, each with its own key and order, as a real project has.
    parameters = {**DEV_PARAMETERS, **dict(arguments.parameter)}
    stack = PipelineStack(
        host=arguments.host,
        port=arguments.port,
        data_dir=arguments.data_dir,
        parameters=parameters,
        visibility_timeout_s=arguments.visibility_timeout,
        # None: a random secret (reachable from elsewhere, a public one would let anyone in).
        webhook_secret=webhook_secret or (None if exposed else BUNDLED_EVENTS_SECRET),
        supabase_url=real_url,
        supabase_key=real_key,
        # Tables cached with the public's view (the default policy) read with the anon key.
        supabase_anon_key=os.environ.get("SUPABASE_ANON_KEY") if real_url else None,
        supabase_port=arguments.supabase_port,
    )
    path = state_path()
    try:
        stack.start()
    except PortInUse as error:
        print(f"cannot start the local stack: {error.strerror}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"cannot start the local stack: {error}", file=sys.stderr)
        return 1
    try:
        existing = read_state(path)
        if existing is None:
            write_state(stack, path)
        else:
            log.warning(
                "another stack (pid %s) owns %s; make invoke uses it", existing["pid"], path
            )
        print(_banner(stack, chosen_secret=webhook_secret is not None), flush=True)
        # The cache lives in memory: fill it now from whatever Supabase holds (kept rows with
        # DATA=, or a real project), as `make backfill` does, instead of at the next change.
        from ops.backfill import request_resync

        schema_name = stack.function_environment("ConsumerFunction")["SUPABASE_SCHEMA"]
        request_resync(stack.aws.sqs(), stack.queue_url, schema_name)
        print("backfill queued: the cache fills from Supabase now", flush=True)
        while not stopping.wait(0.5):
            pass
        print("\nstopping...", flush=True)
    finally:
        remove_state(path)
        stack.stop()
    print("stopped.", flush=True)
    return 0


def real_supabase(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(SUPABASE_URL, SUPABASE_KEY) of a real project, (None, None) for the stand-in.

    One without the other is an error rather than a quiet fall back to the stand-in: a user who
    set SUPABASE_URL expects their project, and would otherwise see an empty local table.
    """
    url, key = environ.get("SUPABASE_URL") or None, environ.get("SUPABASE_KEY") or None
    if (url is None) != (key is None):
        given, missing = (
            ("SUPABASE_URL", "SUPABASE_KEY") if url else ("SUPABASE_KEY", "SUPABASE_URL")
        )
        raise ValueError(
            f"{given} is set but {missing} is not: set both to use a real project "
            "(the key is its service_role key), or neither for the local stand-in"
        )
    return url, key


def _parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local.stack", description="Run the whole pipeline locally (make dev)."
    )
    parser.add_argument("--data-dir", help="keep the Supabase stand-in's rows in this folder")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT") or DEFAULT_PORT), help="API port"
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("HOST") or "127.0.0.1",
        help="API address (0.0.0.0 for a tunnel; the webhook secret is then random)",
    )
    parser.add_argument(
        "--supabase-port",
        type=int,
        default=int(os.environ.get("SUPABASE_PORT") or DEFAULT_SUPABASE_PORT),
        help="the Supabase stand-in's port",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=DEV_VISIBILITY_TIMEOUT_S,
        help="local-only: the change queue's visibility timeout in seconds (template: 660)",
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        type=_key_value,
        metavar="NAME=VALUE",
        help="override a template parameter (repeatable)",
    )
    return parser.parse_args(argv)


def _key_value(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator:
        raise argparse.ArgumentTypeError("expected NAME=VALUE")
    return name, value


def table_policies(resolver: Resolver) -> dict[str, TablePolicy]:
    """The cached tables and their policies, from the template's parameters, parsed exactly as
    the functions parse them from their environment."""
    from waituntil.table_policy import TablePolicy, parse_policies

    tables = tuple(t.strip() for t in resolver.parameter("CachedTables").split(",") if t.strip())
    default = TablePolicy(
        key=resolver.parameter("PrimaryKey"), order=resolver.parameter("ListOrder") or None
    )
    return parse_policies(tables, resolver.parameter("TablePolicies"), default)


def _describe_tables(stack: PipelineStack) -> str:
    assert stack.resources is not None
    return "; ".join(
        f"{table} (key {policy.key}, by {policy.order or policy.key}, {policy.role} view)"
        for table, policy in table_policies(stack.resources.resolver).items()
    )


def _banner(stack: PipelineStack, *, chosen_secret: bool) -> str:
    secret = stack.webhook_secret
    table = stack.standin.tables if stack.standin is not None else {"articles": "id"}
    first_table, primary_key = next(iter(table.items()))
    if stack.standin is not None:
        where = f"in {stack.data_dir}" if stack.data_dir else "in memory; --data-dir/DATA= keeps it"
        supabase = f"{stack.supabase_url}   (local stand-in, {where})"
    else:
        supabase = f"{stack.supabase_url}   (real project from SUPABASE_URL)"
    routes = ", ".join(
        f"{route.method} {route.path} -> {route.function_id}" for route in stack.routes
    )
    payload = json.dumps(
        {
            "type": "INSERT",
            "table": first_table,
            "schema": "public",
            "record": {primary_key: 1, "title": "Hello"},
            "old_record": None,
        }
    )
    lines = [
        "",
        "Local stack running (no Docker, no AWS account). Ctrl-C stops it.",
        "",
        f"  Webhook URL     {stack.webhook_url}   (POST)",
        f"  Webhook secret  {secret}   " + _secret_origin(secret, chosen=chosen_secret),
        f"  Supabase URL    {supabase}",
        f"  Supabase key    {stack.supabase_key}",
        f"  API routes      {routes}",
        f"  Cached tables   {_describe_tables(stack)}",
        f"  API description {stack.api_url}/openapi.yaml   (OpenAPI 3.1, docs/openapi.yaml)",
        f"  Emulated AWS    {stack.aws.url}   queue {stack.queue_url.rsplit('/', 1)[-1]}, "
        f"table {stack.table_name}",
    ]
    if stack.visibility_timeout_s is not None:
        lines.append(
            f"  Local-only      visibility timeout {stack.visibility_timeout_s} s (template: 660 s)"
        )
    if stack.standin is None:
        lines.append(
            "  Note            a real project can only call this machine through a tunnel "
            "(e.g. cloudflared); use its URL in the Database Webhook."
        )
    lines += [
        "",
        "A webhook by hand (the consumer re-reads the row from Supabase: for a row that is not",
        "in the table, as here until the supabase-py example below inserts it, it caches none):",
        f"  curl -i -X POST {stack.webhook_url} \\",
        f"    -H 'Authorization: Bearer {secret}' -H 'Content-Type: application/json' \\",
        f"    -d {shlex.quote(payload)}",
        "",
        "A real change (the stand-in sends the webhook, the consumer fills the cache):",
        "  .venv/bin/python - <<'EOF'",
        "  from supabase import create_client",
        f"  client = create_client({stack.supabase_url!r}, {stack.supabase_key!r})",
        f"  client.table({first_table!r}).insert({{{primary_key!r}: 1, 'title': 'Hello'}})"
        ".execute()",
        "  EOF",
        "",
        "Read the cache:",
        f"  curl -i {stack.api_url}/{first_table}   # Link targets are absolute: follow them as is",
        "",
        "One function by hand: make invoke FUNCTION=ReceiverFunction "
        "EVENT=events/receiver/insert.json",
        "",
    ]
    return "\n".join(lines)


def _secret_origin(secret: str, *, chosen: bool) -> str:
    if chosen:
        return "(from WEBHOOK_SECRET)"
    if secret == BUNDLED_EVENTS_SECRET:
        return "(the one events/ carry; set WEBHOOK_SECRET to choose)"
    return "(random: the API is reachable from elsewhere; set WEBHOOK_SECRET to choose)"


if __name__ == "__main__":
    raise SystemExit(main())
