"""Run the stand-in from a shell until SIGINT/SIGTERM.

    python -m local.supabase_standin --port 54321 --table articles=id --table drafts=id \
        --anon-policy articles=published=eq.true \
        --webhook-url http://127.0.0.1:3000/revalidate --webhook-header 'Authorization: Bearer x'

``--table NAME=PK[,COLUMN...]`` may repeat; extra columns are declared up front.
``--anon-policy TABLE=FILTER`` may repeat: the anon key sees the rows of TABLE that pass
FILTER (PostgREST syntax, or ``true`` for all); a table without one shows anon no row.
The URL and keys are printed as ``SUPABASE_URL=...``, ``SUPABASE_SERVICE_ROLE_KEY=...`` and
``SUPABASE_ANON_KEY=...`` lines, in that order.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from local.supabase_standin.keys import make_anon_key, make_service_key
from local.supabase_standin.server import SupabaseStandIn
from local.supabase_standin.webhooks import WebhookConfig


def _table(text: str) -> tuple[str, str, list[str]]:
    name, sep, spec = text.partition("=")
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not sep or not name.strip() or not parts:
        raise argparse.ArgumentTypeError(f"expected NAME=PK[,COLUMN...], got {text!r}")
    return name.strip(), parts[0], parts[1:]


def _anon_policy(text: str) -> tuple[str, str]:
    # Split at the first "=" only: the filter has its own ("published=eq.true").
    table, sep, policy = text.partition("=")
    if not sep or not table.strip() or not policy.strip():
        raise argparse.ArgumentTypeError(f"expected TABLE=FILTER or TABLE=true, got {text!r}")
    return table.strip(), policy.strip()


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m local.supabase_standin",
        description="Local Supabase stand-in: PostgREST /rest/v1 over SQLite + Database Webhooks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=54321, help="0 picks a free port")
    parser.add_argument("--data-dir", default=None, help="keep rows in DIR/supabase.sqlite3")
    parser.add_argument(
        "--table",
        type=_table,
        action="append",
        required=True,
        metavar="NAME=PK[,COL...]",
        help="a served table and its primary key column (repeatable)",
    )
    parser.add_argument("--service-key", default=None, help="default: a new random JWT")
    parser.add_argument("--anon-key", default=None, help="default: a new random JWT")
    parser.add_argument(
        "--anon-policy",
        type=_anon_policy,
        action="append",
        default=[],
        metavar="TABLE=FILTER",
        help="rows the anon key sees, e.g. articles=published=eq.true or authors=true "
        "(repeatable; a table without one shows anon no row)",
    )
    parser.add_argument("--max-rows", type=int, default=1000, help="PostgREST db-max-rows")
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument(
        "--webhook-header", type=_header, action="append", default=[], metavar="'Name: value'"
    )
    parser.add_argument("--webhook-timeout", type=float, default=5.0, help="seconds")
    parser.add_argument("--webhook-jitter", type=float, default=0.0, help="max random delay, s")
    parser.add_argument("--verbose", action="store_true", help="log every HTTP request")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Start, print the URL and keys, serve until SIGINT/SIGTERM."""
    parser = build_parser()
    args = parser.parse_args(argv)
    tables = {name: pk for name, pk, _cols in args.table}
    columns = {name: cols for name, _pk, cols in args.table if cols}
    webhook = None
    if args.webhook_url:
        webhook = WebhookConfig(
            url=args.webhook_url,
            headers=dict(args.webhook_header),
            timeout_s=args.webhook_timeout,
            max_jitter_s=args.webhook_jitter,
        )
    policies = dict(args.anon_policy)
    if len(policies) != len(args.anon_policy):
        parser.error("--anon-policy: one policy per table")
    try:
        standin = SupabaseStandIn(
            tables,
            data_dir=args.data_dir,
            service_key=args.service_key or make_service_key(),
            max_rows=args.max_rows,
            webhook=webhook,
            columns=columns,
            verbose=args.verbose,
            anon_key=args.anon_key or make_anon_key(),
            anon_policies=policies,
        )
    except ValueError as exc:  # a bad policy or key: a usage error, not a traceback
        parser.error(str(exc))
    done = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    url = standin.start(host=args.host, port=args.port)
    print(f"SUPABASE_URL={url}", flush=True)
    print(f"SUPABASE_SERVICE_ROLE_KEY={standin.service_key}", flush=True)
    print(f"SUPABASE_ANON_KEY={standin.anon_key}", flush=True)
    print(f"supabase stand-in serving {', '.join(sorted(tables))} (Ctrl-C stops)", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        standin.stop()
    print("supabase stand-in stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
