"""``make dev``: the local stack (``local.stack.PipelineStack``) in the foreground.

``python -m local.dev [--data-dir DIR] [--port N] [--supabase-port N] [--host H]`` (``make dev
DATA= PORT= SUPABASE_PORT= HOST=``) starts it with two cached tables and a short, local-only
visibility timeout (a failed batch is retried within seconds), prints the banner
(``local.banner``), queues a RESYNC so that the in-memory cache fills from Supabase at once
(as ``make backfill`` does), and runs until Ctrl-C or SIGTERM. The endpoints go to the state
file (``local.state_file``) that ``make invoke`` and the operator commands read; it is removed
on exit. ``SUPABASE_URL`` and ``SUPABASE_KEY`` (both or neither) use a real project instead of
the stand-in, ``WEBHOOK_SECRET`` chooses the webhook's secret. The template's schedules run
as deployed (the reconcile every minute, the resync every day); ``DROP_WEBHOOKS=0.1`` makes the
local Supabase lose that share of its webhooks, as pg_net does, to watch the reconciler heal.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from types import FrameType

from local import BUNDLED_EVENTS_SECRET
from local.banner import format_banner
from local.stack import PipelineStack, PortInUse
from local.state_file import read_state, remove_state, state_path, write_state
from local.template import load_template, queue_visibility_timeout_s

log = logging.getLogger("local.dev")

DEFAULT_PORT = 3000
DEFAULT_SUPABASE_PORT = 54321  # the Supabase CLI's local API port, a familiar URL
# `make dev` caches two tables, each with its own key and list order (template parameters).
DEV_PARAMETERS = {
    "CachedTables": "articles,authors",
    "TablePolicies": json.dumps({"authors": {"key": "slug", "order": "name"}}),
}
DEV_VISIBILITY_TIMEOUT_S = 10
# `make dev` uses the bundled events' secret, so that the banner's `make invoke ...
# EVENT=events/receiver/insert.json` is accepted; only on loopback: a stack reachable from
# elsewhere (--host 0.0.0.0) gets a random one.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


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
        schedules=arguments.schedules,
        drop_webhooks=arguments.drop_webhooks,
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
        prog="python -m local.dev", description="Run the whole pipeline locally (make dev)."
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
        "--drop-webhooks",
        type=_share,
        default=_share(os.environ.get("DROP_WEBHOOKS") or "0"),
        metavar="SHARE",
        help="the share (0-1) of webhooks the local Supabase loses on purpose, as pg_net does",
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


def _share(text: str) -> float:
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"a share between 0 and 1, not {text!r}")
    return share


def _key_value(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator:
        raise argparse.ArgumentTypeError("expected NAME=VALUE")
    return name, value


if __name__ == "__main__":
    raise SystemExit(main())
