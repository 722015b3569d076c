"""``make demo``: the whole pipeline on this machine, shown converging change by change.

Starts the local stack (``local.stack.PipelineStack``) with the template's own parameters,
writes articles through supabase-py to a local Supabase on real PostgreSQL (so every webhook is
a real trigger's request, sent after commit to the local API), and for each change prints how
long the receiver took to answer it (pg_net's log) and how long until the DynamoDB cache
equalled the table (polling ``waituntil.read.cache_client`` as any reader of the cache
would). Then it drops one webhook on purpose (the local Supabase loses it, as pg_net loses
one that times out) and prints how long the reconciler, on the template's schedule, took to
heal the cache without it. Exits 0 only if the cache ends equal to the table.

Always uses the local Supabase, even when SUPABASE_URL is set: a demo must not write to a real
project. Ctrl-C (or SIGTERM) stops the stack as ``make dev`` does: no traceback, exit 130.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from local.lambda_runtime import ROOT
from local.stack import PipelineStack

if TYPE_CHECKING:
    from supabase import Client

    from waituntil.adapters.cache_store import CacheStore

TABLE = "articles"
CONVERGENCE_TIMEOUT_S = 20.0
# The demo prints a table; the functions' logs and metrics go to files for the curious.
LOG_DIR = ROOT / ".local-data" / "demo-logs"


def _article(key: int, title: str) -> dict[str, Any]:
    return {
        "id": key,
        "title": title,
        "body": f"Body of article {key}.",
        "published": key % 2 == 1,
        "rating": round(3 + key / 10, 2),
        "tags": ["demo", f"tag{key % 3}"],
        "meta": {"lang": "en", "words": 100 + key},
    }


@dataclass(frozen=True)
class Change:
    label: str
    key: int  # the row whose cached item is checked
    apply: Callable[[Client], object]


CHANGES = [
    Change(
        "INSERT article 1", 1, lambda db: db.table(TABLE).insert(_article(1, "Hello")).execute()
    ),
    Change(
        "INSERT article 2", 2, lambda db: db.table(TABLE).insert(_article(2, "Second")).execute()
    ),
    Change(
        "UPDATE article 2 (title)",
        2,
        lambda db: db.table(TABLE).update({"title": "Second, edited"}).eq("id", 2).execute(),
    ),
    Change("DELETE article 1", 1, lambda db: db.table(TABLE).delete().eq("id", 1).execute()),
    Change(
        "INSERT articles 3-12 (one statement)",
        12,
        lambda db: (
            db.table(TABLE).insert([_article(key, f"Bulk {key}") for key in range(3, 13)]).execute()
        ),
    ),
]


@dataclass(frozen=True)
class Outcome:
    label: str
    statuses: list[int | None]
    answer_ms: list[float]
    converged_s: float | None
    batches: int


# Set by Ctrl-C or SIGTERM. The demo stops at its next safe point rather than where the signal
# lands: a KeyboardInterrupt raised inside a library (supabase-py building its client) leaves
# half-built objects that print tracebacks when collected, and a second Ctrl-C must not cut
# the stack's orderly stop short.
_interrupted = threading.Event()


def main() -> int:
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _demo()
    except _Interrupted:
        # The stack was stopped on the way out (PipelineStack's context manager).
        print("\ninterrupted; stack stopped.", flush=True)
        return 130


class _Interrupted(Exception):
    pass


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    _interrupted.set()


def _stop_if_interrupted() -> None:
    if _interrupted.is_set():
        raise _Interrupted


def _demo() -> int:
    from supabase import create_client

    started = time.monotonic()
    shutil.rmtree(LOG_DIR, ignore_errors=True)
    with PipelineStack(port=0, function_logs=LOG_DIR, schedules=True) as stack:
        _stop_if_interrupted()
        _print_header(stack, time.monotonic() - started)
        assert stack.supabase is not None
        client = create_client(stack.supabase_url, stack.supabase_key)
        store = stack.cache_store()
        outcomes = [_run_change(stack, client, store, change) for change in CHANGES]
        _print_outcomes(outcomes)
        healed_s = _lose_one_webhook(stack, client, store)
        converged = _print_cache(stack, store)
        _print_read_api(stack)
    print(f"\nFunction logs: {LOG_DIR.relative_to(ROOT)}/<Function>.log")
    print(f"Total {time.monotonic() - started:.1f} s; stack stopped.")
    if healed_s is None or not converged or any(o.converged_s is None for o in outcomes):
        print("FAILED: the cache did not converge to the table.")
        return 1
    print("OK: the cache equals the table.")
    return 0


def _run_change(stack: PipelineStack, client: Client, store: CacheStore, change: Change) -> Outcome:
    assert stack.supabase is not None
    _stop_if_interrupted()
    deliveries_before = len(stack.supabase.webhook_log)
    batches_before = stack.consumer_batches
    started = time.monotonic()
    change.apply(client)
    converged_s = _wait_converged(stack, store, change.key, started)
    stack.supabase.wait_for_webhooks(5.0)
    deliveries = stack.supabase.webhook_log[deliveries_before:]
    return Outcome(
        label=change.label,
        statuses=[delivery.status_code for delivery in deliveries],
        answer_ms=[delivery.elapsed_s * 1000 for delivery in deliveries],
        converged_s=converged_s,
        batches=stack.consumer_batches - batches_before,
    )


def _lose_one_webhook(stack: PipelineStack, client: Client, store: CacheStore) -> float | None:
    """Update a row with its webhook dropped on purpose; seconds until the cache healed."""
    assert stack.supabase is not None and stack.scheduler is not None
    period_s = min(message.period_s for message in stack.scheduler.messages)
    settle_s = int(
        stack.function_environment("ConsumerFunction").get("RECONCILE_SETTLE_SECONDS", 15)
    )
    print(
        "\nNow one webhook is lost on purpose (Supabase sends each one once: a timeout or a 5xx"
        f"\nloses it). The reconciler runs every {period_s:.0f} s, as deployed; waiting for it..."
    )
    deliveries_before = len(stack.supabase.webhook_log)
    # pg_net's worker decides as it sends, after the commit: lose everything until it has.
    stack.supabase.net.drop_rate = 1.0
    started = time.monotonic()
    try:
        client.table(TABLE).update({"title": "Second, webhook lost"}).eq("id", 2).execute()
        stack.supabase.wait_for_webhooks(5.0)
    finally:
        stack.supabase.net.drop_rate = 0.0
    lost = [delivery.error for delivery in stack.supabase.webhook_log[deliveries_before:]]
    healed_s = _wait_converged(stack, store, 2, started, timeout_s=period_s + settle_s + 60)
    outcome = "never (FAILED)" if healed_s is None else f"{healed_s:.1f} s"
    print(
        f"UPDATE article 2, its webhook {'; '.join(str(e) for e in lost) or 'lost'}:\n"
        f"  the cache healed after {outcome} (at most one schedule period, {period_s:.0f} s, "
        f"plus {settle_s} s settle\n  and the cycle; `make heal` runs a cycle now)"
    )
    return healed_s


def _wait_converged(
    stack: PipelineStack,
    store: CacheStore,
    key: int,
    started: float,
    timeout_s: float = CONVERGENCE_TIMEOUT_S,
) -> float | None:
    """Seconds from the write until the cached item and list equal the table; None: never."""
    from waituntil.core.errors import ListFilling
    from waituntil.read.cache_client import get_item, get_list

    assert stack.supabase is not None
    while time.monotonic() - started < timeout_s:
        rows = stack.supabase.rows(TABLE)
        expected_item = next((row for row in rows if row["id"] == key), None)
        try:
            listed = get_list(store, TABLE)
        except ListFilling:
            listed = None  # the table's first fill (started by the first change) still runs
        if get_item(store, TABLE, key) == expected_item and listed == rows:
            return time.monotonic() - started
        _stop_if_interrupted()
        time.sleep(0.02)
    return None


def _print_header(stack: PipelineStack, startup_s: float) -> None:
    resolver = stack.resources.resolver if stack.resources else None
    window = resolver.parameter("ConsumerBatchingWindowSeconds") if resolver else "?"
    batch = resolver.parameter("ConsumerBatchSize") if resolver else "?"
    print(f"Local stack up in {startup_s:.1f} s (no Docker, no AWS account):")
    print(f"  API (receiver)     {stack.webhook_url}")
    print(f"  Supabase (local)   {stack.supabase_url} on PostgreSQL (temporary)")
    print(f"  Emulated AWS       {stack.aws.url} (moto)")
    waits = (
        "the consumer runs as soon as a change is queued"
        if str(window) in ("0", "0.0")
        else f"a change waits up to {window} s for company before the consumer runs"
    )
    print(
        f"  Consumer batching  up to {batch} changes per batch, {window} s window (template"
        f"\n                     parameters): {waits}"
    )
    print(f"\nWriting to '{TABLE}' through supabase-py; every webhook is a real HTTP call.\n")


def _print_outcomes(outcomes: list[Outcome]) -> None:
    header = (
        f"{'change':<38} {'webhooks':<10} {'receiver answered':<24} {'cache converged':<16} batches"
    )
    print(header)
    print("-" * len(header))
    for outcome in outcomes:
        codes = sorted({str(status) for status in outcome.statuses})
        webhooks = f"{len(outcome.statuses)} x {'/'.join(codes) or '-'}"
        if not outcome.answer_ms:
            answered = "-"
        elif len(outcome.answer_ms) == 1:
            answered = f"{outcome.answer_ms[0]:.0f} ms"
        else:
            answered = (
                f"median {statistics.median(outcome.answer_ms):.0f} ms"
                f", max {max(outcome.answer_ms):.0f} ms"
            )
        converged = "never" if outcome.converged_s is None else f"{outcome.converged_s:.2f} s"
        print(
            f"{outcome.label:<38} {webhooks:<10} {answered:<24} {converged:<16} {outcome.batches}"
        )
    print(
        "\nreceiver answered: the webhook's HTTP round trip (authenticate, queue, 202); the"
        "\n  first includes reading the secret; a burst queues for the single local container."
        "\ncache converged: from the write until the cached item and list equal the table."
    )


def _print_cache(stack: PipelineStack, store: CacheStore) -> bool:
    from waituntil.read.cache_client import get_item, get_list

    assert stack.supabase is not None
    rows = stack.supabase.rows(TABLE)
    cached = get_list(store, TABLE) or []
    item = get_item(store, TABLE, 2)
    print(f"\nCached item {TABLE}/2:\n  {json.dumps(item)}")
    print(f"Cached list {TABLE} ({len(cached)} rows, ids {[row['id'] for row in cached]}):")
    for row in cached[:3]:
        print(f"  {json.dumps(row)}")
    if len(cached) > 3:
        print(f"  ... {len(cached) - 3} more")
    return cached == rows


def _print_read_api(stack: PipelineStack) -> None:
    """If the template has a read route (GET /{table}), show the cache through it too."""
    paths = {route.path for route in stack.routes if route.method in ("GET", "ANY")}
    list_path = next((path for path in paths if re.fullmatch(r"/\{[^}/]+\}", path)), None)
    item_path = next(
        (path for path in paths if re.fullmatch(r"/\{[^}/]+\}/\{[^}/]+\}", path)), None
    )
    if list_path is None:
        return
    assert stack.supabase is not None
    rows = stack.supabase.rows(TABLE)
    print(f"\nRead API ({stack.api_url}):")
    for url in [f"{stack.api_url}/{TABLE}"] + ([f"{stack.api_url}/{TABLE}/2"] if item_path else []):
        status, body = _http_get(url)
        shown = body if len(body) <= 300 else body[:300] + "..."
        same = url.endswith(f"/{TABLE}") and _parses_to(body, rows)
        note = " (equals the table)" if same else ""
        print(f"  GET {url.removeprefix(stack.api_url)} -> {status}{note}\n    {shown}")


def _parses_to(body: str, expected: Any) -> bool:
    try:
        return bool(json.loads(body) == expected)
    except ValueError:
        return False


def _http_get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as response:
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


if __name__ == "__main__":
    sys.exit(main())
