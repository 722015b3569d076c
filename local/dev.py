"""``make dev``: the local stack (``local.stack.PipelineStack``) in the foreground.

``python -m local.dev [--data-dir DIR] [--port N] [--supabase-port N] [--host H]
[--drop-webhooks SHARE]`` (``make dev DATA= PORT= SUPABASE_PORT= HOST= DROP_WEBHOOKS=``) starts
it on a local PostgreSQL (migrations and seed from ``supabase/``; kept in DIR, else temporary)
with two cached tables and a short, local-only
visibility timeout (a failed batch is retried within seconds), prints the banner
(``local.banner``), queues a RESYNC so that the in-memory cache fills from Supabase at once
(as ``make backfill`` does), and runs until Ctrl-C or SIGTERM. The endpoints go to the state
file (``local.state_file``) that ``make invoke`` and the operator commands read; it is removed
on exit. ``SUPABASE_URL`` and ``SUPABASE_KEY`` (both or neither; ``SUPABASE_ANON_KEY`` too for
tables cached with the anon role's view) use a real project instead of the local one, and cache
what a deploy would (``dev_parameters``); ``TABLES`` and ``POLICIES`` choose the tables and
their policies; ``WEBHOOK_SECRET`` chooses the webhook's secret. Input is checked before
anything starts (``ops.dev_checks``): each mistake is one line (``ops.mistakes``), as is a
data folder in use or a failing migration (``LocalDatabaseError``). The template's schedules
run as deployed (the reconcile every minute, the resync every day); ``DROP_WEBHOOKS=0.1``
makes the local Supabase lose that share of its webhooks, to watch the reconciler heal them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from local import BUNDLED_EVENTS_SECRET
from local.state_file import read_state, remove_state, state_path, write_state
from local.template import load_template, queue_visibility_timeout_s
from ops.deploy_check import SAMCONFIG, check_parameters, deploy_parameters
from ops.dev_checks import check_ports_free, check_project_tables, check_real_project
from ops.mistakes import Mistake, Parser, run

if TYPE_CHECKING:
    from waituntil.core.table_policy import TablePolicy

log = logging.getLogger("local.dev")

DEFAULT_PORT = 3000
DEFAULT_SUPABASE_PORT = 54321  # the Supabase CLI's local API port, a familiar URL
# `make dev` caches two tables, each with its own key and list order (template parameters).
DEV_PARAMETERS = {
    "CachedTables": "articles,authors",
    "TablePolicies": json.dumps({"authors": {"key": "slug", "order": "name"}}),
}
# What a deploy's parameters say about the cached tables (make dev with a real project).
TABLE_PARAMETERS = (
    "CachedTables",
    "TablePolicies",
    "PrimaryKey",
    "ListOrder",
    "SupabaseSchema",
    "ReadAccess",
)
DEV_VISIBILITY_TIMEOUT_S = 10
# `make dev` uses the bundled events' secret, so that the banner's `make invoke ...
# EVENT=events/receiver/insert.json` is accepted; only on loopback: a stack reachable from
# elsewhere (--host 0.0.0.0) gets a random one.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def main(argv: list[str] | None = None) -> int:
    # Every mistake is one line (ops.mistakes); DEBUG=1 shows the traceback instead.
    return run(lambda: _main(argv), prefix="cannot start the local stack")


def _main(argv: list[str] | None) -> int:
    arguments = _parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    stopping = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is noise here
    real_url, real_key = real_supabase(os.environ)
    webhook_secret = os.environ.get("WEBHOOK_SECRET") or None
    exposed = arguments.host not in LOOPBACK_HOSTS
    parameters = dev_parameters(arguments, os.environ, real=real_url is not None)
    # Before anything starts: each mistake is one line at once, not a stack that fails later.
    # The local Supabase's port only when it runs (a Supabase CLI may hold 54321 meanwhile).
    ports = {"PORT": arguments.port}
    if real_url is None:
        ports["SUPABASE_PORT"] = arguments.supabase_port
    check_ports_free(arguments.host, ports)
    policies = check_dev_parameters(parameters)
    if real_url is not None and real_key is not None:
        if arguments.data_dir:
            raise Mistake(
                "DATA= keeps the local database; with SUPABASE_URL there is none: drop one"
            )
        anon_key = os.environ.get("SUPABASE_ANON_KEY") or None
        check_real_project(real_url, real_key, anon_key, policies)
        keys = {"service": real_key, "anon": anon_key or real_key}
        check_project_tables(
            real_url, keys, policies, schema_name=parameters.get("SupabaseSchema", "public")
        )
    # Only now the stack's code (moto, the containers): a mistake above is answered at once.
    from local.banner import format_banner
    from local.stack import PipelineStack

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
        schedules=arguments.schedules,
        seed=True,
        drop_webhooks=arguments.drop_webhooks,
    )
    path = state_path()
    stack.start()  # a port taken meanwhile is a PortInUse: one line too (ops.mistakes)
    try:
        existing = read_state(path)
        if existing is None:
            write_state(stack, path)
        else:
            log.warning(
                "another stack (pid %s) owns %s; make invoke uses it", existing["pid"], path
            )
        print(format_banner(stack, chosen_secret=webhook_secret is not None), flush=True)
        if arguments.backfill:
            # The cache lives in memory: fill it now from whatever Supabase holds (kept rows
            # with DATA=, or a real project), as `make backfill` does, not at the next change.
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
    """(SUPABASE_URL, SUPABASE_KEY) of a real project, (None, None) for the local one.

    One without the other is an error rather than a quiet fall back to the local one: a user who
    set SUPABASE_URL expects their project, and would otherwise see an empty local table.
    """
    url, key = environ.get("SUPABASE_URL") or None, environ.get("SUPABASE_KEY") or None
    if (url is None) != (key is None):
        given, missing = (
            ("SUPABASE_URL", "SUPABASE_KEY") if url else ("SUPABASE_KEY", "SUPABASE_URL")
        )
        raise Mistake(
            f"{given} is set but {missing} is not: set both to use a real project "
            "(the key is its service_role key), or neither for the local one"
        )
    return url, key


def dev_parameters(
    arguments: argparse.Namespace,
    environ: Mapping[str, str],
    *,
    real: bool,
    samconfig: Path = SAMCONFIG,
) -> dict[str, str]:
    """The template parameters of the local stack: which tables it caches, and how.

    The local Supabase: the demo's two tables. A real project: what a deploy of the samconfig.toml
    environment caches (its parameter overrides, else the template's defaults), so that
    ``make dev`` shows what the deployment will. ``TABLES=`` and ``POLICIES=`` replace either;
    ``--parameter`` overrides last.
    """
    if real:
        deployed = deploy_parameters(arguments.config_env or "default", samconfig)
        parameters = {name: deployed[name] for name in TABLE_PARAMETERS if name in deployed}
    else:
        parameters = dict(DEV_PARAMETERS)
    tables, policies = environ.get("TABLES") or None, environ.get("POLICIES")
    if tables is not None:
        parameters["CachedTables"] = tables
        parameters.pop("TablePolicies", None)  # the demo's policies name the demo's tables
    if policies is not None:
        parameters["TablePolicies"] = policies
    return {**parameters, **dict(arguments.parameter)}


def check_dev_parameters(parameters: dict[str, str]) -> dict[str, TablePolicy]:
    """The parameters as CloudFormation and the functions would check them; the policies."""
    return check_parameters(parameters, "make dev (TABLES=, POLICIES=, or samconfig.toml)")


def _share(text: str) -> float:
    if re.fullmatch(r"0|1|0?\.\d+|1\.0*|0\.?", text):
        return float(text)
    raise Mistake(f"DROP_WEBHOOKS is a share of deliveries from 0 to 1, not {text!r}")


def _port(variable: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) > 65535:
            raise Mistake(
                f"{variable} must be a port number (0-65535), not {text!r}: make dev {variable}="
            )
        return int(text)

    return parse


def _parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(
        prog="python -m local.dev", description="Run the whole pipeline locally (make dev)."
    )
    parser.add_argument("--data-dir", help="keep the local database in this folder")
    parser.add_argument(
        "--port",
        type=_port("PORT"),
        default=_port("PORT")(os.environ.get("PORT") or str(DEFAULT_PORT)),
        help="API port",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("HOST") or "127.0.0.1",
        help="API address (0.0.0.0 for a tunnel; the webhook secret is then random)",
    )
    parser.add_argument(
        "--supabase-port",
        type=_port("SUPABASE_PORT"),
        default=_port("SUPABASE_PORT")(
            os.environ.get("SUPABASE_PORT") or str(DEFAULT_SUPABASE_PORT)
        ),
        help="the local Supabase API's port",
    )
    parser.add_argument(
        "--drop-webhooks",
        type=_share,
        default=_share(os.environ.get("DROP_WEBHOOKS") or "0"),
        metavar="SHARE",
        help="fail this share (0 to 1) of webhook deliveries, as lost ones: what the "
        "reconciler heals",
    )
    parser.add_argument(
        "--config-env",
        help="with a real project: cache what this samconfig.toml environment deploys "
        "(default: default)",
    )
    template_timeout_s = queue_visibility_timeout_s(load_template())
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=DEV_VISIBILITY_TIMEOUT_S,
        help="local-only: the change queue's visibility timeout in seconds "
        f"(template: {template_timeout_s})",
    )
    parser.add_argument(
        "--no-backfill",
        dest="backfill",
        action="store_false",
        help="start with an empty cache, as a fresh deployment does: the first change of a "
        "table fills it (or `make backfill`)",
    )
    parser.add_argument(
        "--no-schedules",
        dest="schedules",
        action="store_false",
        help="do not run the template's scheduled rules (the reconcile, the resync)",
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


if __name__ == "__main__":
    raise SystemExit(main())
