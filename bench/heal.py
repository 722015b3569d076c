"""Healing lost webhooks: what one reconcile cycle costs, against a full resync of the same table.

For each table size (1,000, 10,000, 100,000 rows of about 1 KB, each with ``updated_at``), the
table is cached by a full sync, then, for d = 0, 1, 10 and 100, d changes are made in Supabase
with no webhook at all (a third updates, a third deletes, a third inserts, in that order) and
one reconcile cycle runs (``waituntil.sync.reconcile.reconcile_table``, settle time 0: the keys
it finds are healed at once rather than by a follow-up, which costs the same reads later). Then
the same 100 kinds of loss are healed by a full resync instead, in the same run: the baseline.

Counted, per cycle: Supabase requests and rows read (the adapter's own counters: what the
project's dashboard shows), DynamoDB read units (each item a strongly consistent read returns,
1 unit per started 4 KB, 1 at least, from the responses) and write requests, the cycle's wall
time here (moto and the local PostgREST in this process), and whether the cache equals the
table afterwards. Supabase is the local one: real PostgreSQL behind the local PostgREST.
A cycle's heal latency is at most the wait for the next scheduled cycle (one period), the
settle time when the counts found the difference, and the cycle itself.

Then heal latency end to end, measured: the local stack (``local.stack.PipelineStack``: the
template's schedule, Lambda's SQS poller with its batching window, the consumer in its own
process, pg_net's worker) on a table of ``--latency-rows`` rows, with every webhook lost (pg_net
drops them, as the demo's one), and ``--latency-changes`` changes (updates, deletes, inserts in
turn) made at random moments over five schedule periods. Each one's latency runs from its commit
until the cached row item equals the row (or is gone, for a delete); the heal publishes the list
in the same call, and the whole list is compared with the table at the end.

The monthly cost per table compares the default schedule (a reconcile every minute, a full
resync every day) with the hourly resync before it, from these figures (prices: docs/SCALE.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import ROOT, Progress, percentile, quiet, table, use_fake_aws

REPORT = ROOT / "docs" / "BENCHMARKS.md"
PLOT = ROOT / "docs" / "benchmarks" / "heal.png"
RAW = ROOT / "docs" / "benchmarks" / "heal.json"
HEADING = "## Healing lost webhooks\n"
REGION = "us-east-1"
LOST = (0, 1, 10, 100)
PERIOD_S = 60  # ReconcileSchedule's default
SETTLE_S = 15  # RECONCILE_SETTLE_SECONDS' default
LATENCY_GOAL_S = PERIOD_S + 60  # issue's goal: p99 within one period plus 60 s
LATENCY_PERIODS = 5  # the lost changes of the latency run are spread over this many periods
LOG_DIR = ROOT / ".local-data" / "bench-heal"

# On-demand prices, us-east-1 (as docs/SCALE.md uses them), and Lambda on arm64.
READ_UNIT_USD = 0.125e-6
WRITE_UNIT_USD = 0.625e-6
LAMBDA_GB_S_USD = 0.0000133334
LAMBDA_REQUEST_USD = 0.20e-6
SQS_REQUEST_USD = 0.40e-6
CONSUMER_GB = 1.0  # the consumer's MemorySize
# Round trips from the same region, the model's defaults (docs/shared brief): what a cycle's
# time on AWS is estimated from, since here moto and the local Supabase share one process.
DYNAMODB_S = 0.007
SUPABASE_S = 0.025
CYCLES_A_MONTH = 30 * 24 * 60


@dataclass
class Cycle:
    job: str  # "reconcile" | "resync"
    rows: int
    lost: int
    supabase_requests: int
    supabase_rows: int
    read_units: int
    dynamodb_requests: int
    write_requests: int
    write_units: int  # estimated from the requests (DynamoCounter)
    seconds: float
    healed: int
    converged: bool
    levels: int = 0  # rounds of Supabase requests (counts of one level go together)

    @property
    def estimated_aws_s(self) -> float:
        """The cycle on AWS: its DynamoDB calls and its Supabase rounds, one after another."""
        rounds = self.levels or self.supabase_requests
        return self.dynamodb_requests * DYNAMODB_S + rounds * SUPABASE_S


@dataclass
class Heal:
    """One lost change of the latency run."""

    kind: str  # update | delete | insert
    key: int
    seconds: float | None  # from its commit until the cache held it; None: not within the wait


@dataclass
class Latency:
    rows: int
    heals: list[Heal]
    converged: bool  # the whole cached list equals the table at the end
    cycles: int  # scheduled RECONCILE messages sent meanwhile
    periods: int  # the changes were made at random moments over this many periods

    def healed_s(self, kind: str | None = None) -> list[float]:
        return sorted(
            h.seconds for h in self.heals if h.seconds is not None and kind in (None, h.kind)
        )


def article(key: int, at: datetime, revision: int = 0) -> dict[str, Any]:
    """About 1 KB of JSON, not trivially compressible."""
    rng = random.Random(key * 1_000_003 + revision)
    words = " ".join(
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
        for _ in range(120)
    )
    return {
        "id": key,
        "title": f"Article {key} (revision {revision})",
        "body": words[:850],
        "updated_at": at.isoformat(timespec="microseconds"),
    }


class DynamoCounter:
    """Read units, write units and requests, from every DynamoDB call the client makes.

    Read units come from the responses: each item a strongly consistent read returns, 1 unit per
    started 4 KB (1 at least). Write units are estimated from the requests: 1 per started KB of
    each item put, 1 per delete, and for an update the size of its key and of the values it
    sets (DynamoDB bills the larger of the item before and after: an update of a bigger item
    costs more than counted here).
    """

    def __init__(self) -> None:
        self.read_units = self.requests = self.writes = self.write_units = 0

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)

    def _before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        from waituntil.cache.layout import item_bytes

        def units(item: dict[str, Any]) -> int:
            return max(1, math.ceil(item_bytes(item) / 1024))

        name = model.name
        if name == "PutItem":
            self.write_units += units(params["Item"])
        elif name == "DeleteItem":
            self.write_units += 1
        elif name == "UpdateItem":
            values = {**params.get("Key", {}), **params.get("ExpressionAttributeValues", {})}
            self.write_units += units(values)
        elif name == "BatchWriteItem":
            for requests in params.get("RequestItems", {}).values():
                for request in requests:
                    put = request.get("PutRequest")
                    self.write_units += units(put["Item"]) if put else 1

    def _after(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        from waituntil.cache.layout import item_bytes

        self.requests += 1
        name = model.name
        if name == "GetItem":
            item = parsed.get("Item")
            self.read_units += max(1, math.ceil(item_bytes(item) / 4096)) if item else 1
        elif name == "BatchGetItem":
            for items in parsed.get("Responses", {}).values():
                self.read_units += sum(max(1, math.ceil(item_bytes(i) / 4096)) for i in items)
        elif name in ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"):
            self.writes += 1

    def snapshot(self) -> tuple[int, int, int, int]:
        return self.read_units, self.requests, self.writes, self.write_units


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", default="1000,10000")
    parser.add_argument("--lost", default=",".join(str(d) for d in LOST))
    parser.add_argument(
        "--latency-rows", type=int, default=10_000, help="table size of the latency run"
    )
    parser.add_argument(
        "--latency-changes", type=int, default=30, help="lost changes timed (0: no latency run)"
    )
    parser.add_argument(
        "--latency-periods",
        type=int,
        default=LATENCY_PERIODS,
        help="schedule periods the lost changes are spread over",
    )
    parser.add_argument(
        "--recent",
        type=int,
        default=0,
        help="only this: rows updated in place through the change path (webhooks delivered) "
        "just before quiet cycles, at the first --rows size; what those cycles read",
    )
    parser.add_argument("--report", action="store_true", help="write docs/BENCHMARKS.md")
    arguments = parser.parse_args(argv)
    use_fake_aws()
    progress = Progress()
    if arguments.recent:
        rows = int(arguments.rows.split(",")[0])
        for cycle in _measure_recent(rows, arguments.recent, progress):
            print(f"{_describe(cycle)}, {cycle.dynamodb_requests} DynamoDB requests")
        return
    started, load = time.monotonic(), _LoadSampler()
    cycles: list[Cycle] = []
    lost = [int(d) for d in arguments.lost.split(",")]
    for rows in (int(size) for size in arguments.rows.split(",")):
        cycles += _measure_size(rows, lost, progress)
    latency = None
    if arguments.latency_changes:
        latency = _measure_latency(
            arguments.latency_rows,
            arguments.latency_changes,
            arguments.latency_periods,
            progress,
        )
    report = _report(cycles, latency)
    print(report)
    if arguments.report:
        _plot(cycles, latency, PLOT)
        RAW.write_text(
            json.dumps(
                {
                    "cycles": [asdict(c) for c in cycles],
                    "latency": asdict(latency) if latency else None,
                },
                indent=1,
            )
            + "\n"
        )
        command = " ".join(["python -m bench.heal", *(argv or sys.argv[1:])])
        low, high = load.range()
        where = (
            f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores "
            f"shared with other work, 1-minute load average {low:.1f} to {high:.1f}; "
            f"{(time.monotonic() - started) / 60:.0f} minutes"
        )
        _replace_section(report, command, where)
        written = ", ".join(str(path.relative_to(ROOT)) for path in (REPORT, PLOT, RAW))
        print(f"(written to {written})")


class _LoadSampler:
    """The machine's 1-minute load average every 10 s while the benchmark runs (it is shared:
    its load stretches every time measured here)."""

    def __init__(self) -> None:
        self.samples = [os.getloadavg()[0]]
        threading.Thread(target=self._run, name="load", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(10)
            self.samples.append(os.getloadavg()[0])

    def range(self) -> tuple[float, float]:
        return min(self.samples), max(self.samples)


@contextmanager
def _services(rows: int, progress: Progress) -> Iterator[tuple[Any, Any, Any, DynamoCounter]]:
    """moto (server) and a local Supabase (real PostgreSQL) with ``rows`` rows, the consumer's
    ports on them, the table cached by a full sync."""
    from consumer.handler import build_ports
    from local.aws_resources import provision, seed_secrets
    from local.moto_server import MotoServer
    from local.supabase import LocalSupabase, PostgresCluster
    from local.template import function_environment
    from waituntil.core.settings import ConsumerSettings

    moto = MotoServer(REGION)
    endpoint = moto.start()
    cluster = PostgresCluster().start()
    old = datetime.now(UTC) - timedelta(days=1)
    try:
        cluster.prepare("postgres", seed=False)
        # No webhook trigger is wired: every change the benchmark makes is one whose webhook
        # was lost.
        with LocalSupabase(cluster, "postgres") as supabase:
            for start in range(1, rows + 1, 10_000):
                end = min(start + 10_000, rows + 1)
                supabase.seed("articles", [article(k, old) for k in range(start, end)])
            stack = provision(
                endpoint.sqs(),
                endpoint.dynamodb(),
                parameters={"SupabaseUrl": supabase.url},
                s3=endpoint.s3(),
            )
            seed_secrets(
                endpoint.secretsmanager(),
                stack.resolver,
                {
                    "SupabaseKeySecretName": supabase.service_key,
                    "SupabaseAnonKeySecretName": supabase.anon_key,
                },
            )
            environment = {
                **function_environment(stack.resolver, "ConsumerFunction"),
                "SUPABASE_URL": supabase.url,
                "SUPABASE_TIMEOUT_SECONDS": "60",
                "RECONCILE_SETTLE_SECONDS": "0",
            }
            counter = DynamoCounter()
            dynamodb = endpoint.dynamodb()
            counter.attach(dynamodb)
            ports = build_ports(
                ConsumerSettings.model_validate(environment),
                secrets_client=endpoint.secretsmanager(),
                dynamodb=dynamodb,
                sqs=endpoint.sqs(),
                s3=endpoint.s3(),
            )
            progress.step(f"{rows:,} rows: filling the cache")
            with quiet():
                _resync(ports, endpoint.sqs(), stack.queue_url, "fill")
            yield supabase, ports, (endpoint.sqs(), stack.queue_url), counter
    finally:
        cluster.stop()
        moto.stop()


def _measure_size(rows: int, lost: list[int], progress: Progress) -> list[Cycle]:
    cycles: list[Cycle] = []
    with _services(rows, progress) as (supabase, ports, (sqs, queue_url), counter):
        source = ports.source
        next_key = [rows + 1]
        # A first cycle sets the scan's starting point and finds the change column; then the
        # measured ones.
        _cycle(ports, counter, source, supabase, rows, 0, "reconcile")
        for d in lost:
            _lose(supabase, rows, d, next_key, revision=d)
            progress.step(f"{rows:,} rows, {d} lost: one reconcile cycle")
            cycles.append(_cycle(ports, counter, source, supabase, rows, d, "reconcile"))
            progress.step(f"  {_describe(cycles[-1])}")
        d = max(lost)
        _lose(supabase, rows, d, next_key, revision=1000 + d)
        progress.step(f"{rows:,} rows, {d} lost: the full resync instead")
        cycles.append(
            _cycle(
                ports,
                counter,
                source,
                supabase,
                rows,
                d,
                "resync",
                run=lambda: _resync(ports, sqs, queue_url, "baseline"),
            )
        )
        progress.step(f"  {_describe(cycles[-1])}")
    return cycles


def _measure_recent(rows: int, recent: int, progress: Progress) -> list[Cycle]:
    """Nothing lost, but ``recent`` rows updated in place a moment ago, each webhook delivered
    (the consumer applied and listed them): the cycles that follow, still within the scan's
    overlap, should read what differs (nothing), not what changed lately."""
    from waituntil.core.contracts import Change
    from waituntil.sync.batch import QueuedMessage, process_batch

    cycles: list[Cycle] = []
    with _services(rows, progress) as (supabase, ports, _, counter):
        _cycle(ports, counter, ports.source, supabase, rows, 0, "reconcile")
        keys = random.Random(rows).sample(range(1, rows + 1), recent)
        messages = []
        for key in keys:
            supabase.sql(
                "update public.articles set title = %s where id = %s",
                [f"Article {key} (in place)", key],
            )
            change = Change(
                type="UPDATE",
                schema_name="public",
                table="articles",
                key=key,
                received_at=datetime.now(UTC),
                correlation_id=f"bench-recent-{key}",
            )
            messages.append(change.to_message())
        progress.step(f"{rows:,} rows: {recent} in-place updates through the change path")
        with quiet():
            for start in range(0, len(messages), 10):
                group = messages[start : start + 10]
                outcome = process_batch(
                    [QueuedMessage(f"r{start + i}", body) for i, body in enumerate(group)],
                    ports,
                    lambda: 60_000,
                )
                if outcome.failures:
                    raise SystemExit(f"a change failed: {outcome.failures}")
        for number in (1, 2, 3):
            progress.step(f"{rows:,} rows, {recent} recent in-place updates: quiet cycle {number}")
            cycles.append(_cycle(ports, counter, ports.source, supabase, rows, 0, "reconcile"))
    return cycles


def _lose(supabase: Any, rows: int, lost: int, next_key: list[int], revision: int) -> None:
    """``lost`` changes with no webhook: updates, deletes and inserts in turn (the moddatetime
    trigger stamps the updates, a column default the inserts)."""
    rng = random.Random(rows * 7 + revision)
    existing = rng.sample(range(1, rows + 1), min(lost, rows))
    for index in range(lost):
        kind = ("update", "delete", "insert")[index % 3]
        key = existing[index]
        if kind == "update":
            supabase.sql(
                "update public.articles set title = %s where id = %s",
                [f"Article {key} (revision {revision + 1})", key],
            )
        elif kind == "delete":
            supabase.sql("delete from public.articles where id = %s", [key])
        else:
            row = article(next_key[0], datetime.now(UTC), revision)
            supabase.sql(
                "insert into public.articles (id, title, body) values (%s, %s, %s)",
                [row["id"], row["title"], row["body"]],
            )
            next_key[0] += 1


def _cycle(
    ports: Any,
    counter: DynamoCounter,
    source: Any,
    supabase: Any,
    rows: int,
    lost: int,
    job: str,
    run: Callable[[], Any] | None = None,
) -> Cycle:
    from waituntil.sync.reconcile import reconcile_table

    requests, rows_read = source.requests, source.rows_read
    units, calls, writes, write_units = counter.snapshot()
    started = time.perf_counter()
    with quiet():
        report = run() if run is not None else reconcile_table("articles", ports)
    seconds = time.perf_counter() - started
    healed = getattr(report, "healed", 0)
    return Cycle(
        job=job,
        rows=rows,
        lost=lost,
        supabase_requests=source.requests - requests,
        supabase_rows=source.rows_read - rows_read,
        read_units=counter.read_units - units,
        dynamodb_requests=counter.requests - calls,
        write_requests=counter.writes - writes,
        write_units=counter.write_units - write_units,
        seconds=seconds,
        healed=healed,
        converged=_converged(ports, supabase),
        # A cycle's requests go one after another but for each level's counts, sent together.
        levels=getattr(report, "rounds", 0),
    )


def _resync(ports: Any, sqs: Any, queue_url: str, origin: str) -> None:
    """A full sync of the table, its continuations included, in this process."""
    from waituntil.core.contracts import Change
    from waituntil.sync.batch import QueuedMessage, process_batch

    change = Change(
        type="RESYNC",
        schema_name="public",
        table="articles",
        key=None,
        received_at=datetime.now(UTC),
        correlation_id=f"bench-{origin}-{time.time_ns()}",
    )
    pending = [change.to_message()]
    while pending:
        outcome = process_batch(
            [QueuedMessage(f"m{i}", body) for i, body in enumerate(pending)],
            ports,
            lambda: 60_000,
        )
        if outcome.failures:
            raise SystemExit(f"the full sync failed: {outcome.failures}")
        received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
        pending = [message["Body"] for message in received.get("Messages", [])]
        for message in received.get("Messages", []):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _converged(ports: Any, supabase: Any) -> bool:
    from waituntil.read.cache_client import get_list

    return bool(get_list(ports.store, "articles") == supabase.rows("articles"))


def _measure_latency(rows: int, changes: int, periods: int, progress: Progress) -> Latency:
    """The local stack as deployed (its schedule, poller and consumer process), every webhook
    lost, ``changes`` changes at random moments over a few periods: how long each took to heal."""
    from local.stack import PipelineStack
    from local.supabase import PostgresCluster
    from ops.backfill import request_resync
    from waituntil.read.cache_client import get_item, get_list

    cluster = PostgresCluster().start()
    old = datetime.now(UTC) - timedelta(days=1)
    try:
        cluster.prepare("postgres", seed=False)
        progress.step(f"latency: the local stack on {rows:,} rows, every webhook lost")
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        with PipelineStack(
            database=(cluster, "postgres"),
            schedules=True,
            drop_webhooks=1.0,  # pg_net loses every webhook: only the reconciler heals
            function_logs=LOG_DIR,
        ) as stack:
            assert stack.supabase is not None and stack.scheduler is not None
            assert stack.resources is not None
            database = stack.supabase
            for start in range(1, rows + 1, 10_000):  # a data load: no trigger, no webhook
                end = min(start + 10_000, rows + 1)
                database.seed("articles", [article(k, old) for k in range(start, end)])
            store = stack.cache_store()
            schema = stack.resources.resolver.parameter("SupabaseSchema")
            request_resync(stack.aws.sqs(), stack.queue_url, schema)
            _wait_filled(store, rows, progress)
            if not stack.wait_until_idle(timeout_s=600):
                raise SystemExit("the stack did not settle after the fill")
            period_s = min(m.period_s for m in stack.scheduler.messages if "Reconcile" in m.rule_id)
            settle_s = int(
                stack.function_environment("ConsumerFunction").get("RECONCILE_SETTLE_SECONDS", 15)
            )
            progress.step(
                f"latency: {changes} changes lost over {periods} periods of "
                f"{period_s:.0f} s (settle {settle_s} s)"
            )
            sent_before = len(stack.scheduler.sent)
            heals = _lose_and_time(
                database,
                lambda key: get_item(store, "articles", key),
                rows,
                changes,
                span_s=periods * period_s,
                wait_s=period_s + settle_s + 120,
            )
            stack.wait_until_idle(timeout_s=120)
            converged = get_list(store, "articles") == database.rows("articles")
            cycles = sum(1 for rule, _ in stack.scheduler.sent[sent_before:] if "Reconcile" in rule)
    finally:
        cluster.stop()
    latency = Latency(rows=rows, heals=heals, converged=converged, cycles=cycles, periods=periods)
    healed = latency.healed_s()
    progress.step(
        f"  latency: {len(healed)}/{changes} healed, median "
        f"{statistics.median(healed) if healed else float('nan'):.1f} s, max "
        f"{max(healed) if healed else float('nan'):.1f} s, converged {converged}"
    )
    return latency


def _wait_filled(store: Any, rows: int, progress: Progress) -> None:
    deadline = time.monotonic() + 600 + rows / 10  # 10 rows a second: far slower than seen here
    while time.monotonic() < deadline:
        head = store.get_head("articles")
        if head is not None and head.complete:
            return
        time.sleep(2)
    raise SystemExit(f"the local stack did not fill {rows:,} rows in time")


def _lose_and_time(
    database: Any,
    cached: Callable[[int], Any],
    rows: int,
    changes: int,
    *,
    span_s: float,
    wait_s: float,
) -> list[Heal]:
    """Make ``changes`` changes (updates, deletes, inserts in turn) at random moments within
    ``span_s``; each one's seconds from its commit until ``cached(key)`` equals the row (None for
    a delete), or None if that took longer than ``wait_s``."""
    rng = random.Random(rows * 31 + changes)
    moments = sorted(rng.uniform(0, span_s) for _ in range(changes))
    existing = rng.sample(range(1, rows + 1), changes)
    heals: list[Heal] = []
    pending: dict[int, tuple[Heal, float, Any]] = {}
    next_key = rows + 1
    started = time.monotonic()
    while len(heals) < changes or pending:
        index = len(heals)
        if index < changes and time.monotonic() - started >= moments[index]:
            kind = ("update", "delete", "insert")[index % 3]
            key = existing[index]
            if kind == "update":
                database.sql(
                    "update public.articles set title = %s where id = %s",
                    [f"Article {key}, its webhook lost", key],
                )
            elif kind == "delete":
                database.sql("delete from public.articles where id = %s", [key])
            else:
                key, next_key = next_key, next_key + 1
                row = article(key, datetime.now(UTC))
                database.sql(
                    "insert into public.articles (id, title, body) values (%s, %s, %s)",
                    [key, row["title"], row["body"]],
                )
            committed = time.monotonic()
            found = database.sql(
                "select row_to_json(a)::text from public.articles a where id = %s", [key]
            )
            expected = json.loads(found[0][0]) if found else None
            heal = Heal(kind=kind, key=key, seconds=None)
            heals.append(heal)
            pending[key] = (heal, committed, expected)
            continue
        for key, (heal, committed, expected) in list(pending.items()):
            if cached(key) == expected:
                heal.seconds = time.monotonic() - committed
                del pending[key]
            elif time.monotonic() - committed > wait_s:
                del pending[key]  # not healed within the wait: reported as such
        time.sleep(0.2)
    return heals


def _describe(cycle: Cycle) -> str:
    return (
        f"{cycle.job}: {cycle.supabase_requests} requests, {cycle.supabase_rows:,} rows read, "
        f"{cycle.read_units:,} read units, {cycle.seconds:.2f} s, converged {cycle.converged}"
    )


# ----- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Monthly:
    usd: float  # DynamoDB units, Lambda time (estimated for AWS) and requests, SQS requests
    supabase_requests: float
    supabase_rows: float


def _monthly(cycles: list[Cycle], rows: int) -> dict[str, Monthly]:
    """Monthly cost per table: the default schedule (a reconcile every minute with nothing
    lost, a full resync every day) against an hourly resync, from the largest table measured,
    scaled linearly to ``rows`` where a figure grows with the table."""
    by = {(c.job, c.rows, c.lost): c for c in cycles}
    measured = max(c.rows for c in cycles)
    quiet_cycle = by[("reconcile", measured, 0)]
    resync = by[("resync", measured, max(c.lost for c in cycles))]
    scale = rows / measured

    def usd(cycle: Cycle, scale: float) -> float:
        return (
            cycle.read_units * scale * READ_UNIT_USD
            + cycle.write_units * scale * WRITE_UNIT_USD
            + cycle.estimated_aws_s * scale * CONSUMER_GB * LAMBDA_GB_S_USD
        )

    # A full sync's messages (a few per 10,000 rows) cost next to nothing beside its reads.
    resync_usd = usd(resync, scale) + LAMBDA_REQUEST_USD
    # A quiet cycle does not grow with the table: it reads the head (about 100 bytes per index
    # page of 128 chunks) and a few small items, and two Supabase requests. Two invocations
    # (the fan-out's, shared by the tables, and the table's) and two messages: send, receive,
    # delete each.
    cycle_usd = usd(quiet_cycle, 1.0) + 2 * LAMBDA_REQUEST_USD + 2 * 3 * SQS_REQUEST_USD
    return {
        "reconcile every minute": Monthly(
            cycle_usd * CYCLES_A_MONTH,
            quiet_cycle.supabase_requests * CYCLES_A_MONTH,
            quiet_cycle.supabase_rows * CYCLES_A_MONTH,
        ),
        "full resync every day (backstop)": Monthly(
            resync_usd * 30,
            resync.supabase_requests * scale * 30,
            resync.supabase_rows * scale * 30,
        ),
        "full resync every hour (before)": Monthly(
            resync_usd * 30 * 24,
            resync.supabase_requests * scale * 30 * 24,
            resync.supabase_rows * scale * 30 * 24,
        ),
    }


def _report(cycles: list[Cycle], latency: Latency | None = None) -> str:
    lines = [
        "One reconcile cycle after d changes made with no webhook (a third updates, a third",
        "deletes, a third inserts), against a full resync of the same table healing the same",
        "number of changes, in the same run. AWS is moto (server), Supabase the local one (real",
        "PostgreSQL behind the local PostgREST); rows are about 1 KB of JSON, `updated_at` kept by",
        "the `moddatetime` trigger. Plot: [benchmarks/heal.png](benchmarks/heal.png).",
        "",
        "```",
        table(
            [
                (
                    "job",
                    "rows",
                    "lost",
                    "Supabase requests",
                    "rows read",
                    "read units",
                    "write units",
                    "s here",
                    "s on AWS (est.)",
                    "heal within s",
                    "cache = table",
                )
            ]
            + [
                (
                    c.job,
                    f"{c.rows:,}",
                    str(c.lost),
                    str(c.supabase_requests),
                    f"{c.supabase_rows:,}",
                    f"{c.read_units:,}",
                    f"{c.write_units:,}",
                    f"{c.seconds:.2f}",
                    f"{c.estimated_aws_s:.2f}",
                    f"{_heal_within_s(c):.0f}" if c.job == "reconcile" else "-",
                    "yes" if c.converged else "NO",
                )
                for c in cycles
            ]
        ),
        "```",
        "",
        "- rows read: what Supabase returned, keys included (a cycle reads the keys of the",
        "  change column's scan and of small ranges, then the rows that differ). The full resync",
        "  reads every row, then checks every cached key for deletes: twice the table.",
        "- read units: strongly consistent DynamoDB reads, 1 per started 4 KB of each item",
        "  returned; write units: estimated from the requests, 1 per started KB.",
        "- s on AWS (est.): the cycle's DynamoDB calls at 7 ms and its rounds of Supabase",
        "  requests at 25 ms each (a level's counts go out together), one after another.",
        f"- heal within: the wait for the next cycle (one period, {PERIOD_S} s), the settle",
        f"  time ({SETTLE_S} s) and the cycle on AWS; measured end to end below.",
        "",
    ]
    lines += _goals(cycles, latency)
    if latency is not None:
        lines += _latency_lines(latency)
    largest = max(c.rows for c in cycles)
    sizes = (100_000, 1_000_000)
    costs = {rows: _monthly(cycles, rows) for rows in sizes}
    lines += [
        f"Monthly cost per table, from the {largest:,}-row figures (scaled linearly to the table "
        "where a figure grows with it; a quiet cycle's does not): DynamoDB units, Lambda time and "
        "requests, SQS requests, on-demand us-east-1 prices (docs/SCALE.md); and what the "
        "Supabase project serves for it:",
        "",
        "```",
        table(
            [
                (
                    "schedule",
                    *(f"USD, {rows:,} rows" for rows in sizes),
                    *(f"Supabase rows read, {rows:,}" for rows in sizes),
                    "Supabase requests, 100,000",
                )
            ]
            + [
                (
                    name,
                    *(f"${costs[rows][name].usd:,.2f}" for rows in sizes),
                    *(f"{costs[rows][name].supabase_rows:,.0f}" for rows in sizes),
                    f"{costs[100_000][name].supabase_requests:,.0f}",
                )
                for name in costs[sizes[0]]
            ]
        ),
        "```",
        "",
    ]
    heals = (
        f"p99 {percentile(latency.healed_s(), 0.99):.0f} s measured"
        if latency is not None and latency.healed_s()
        else f"within {PERIOD_S + SETTLE_S} s plus a cycle"
    )
    for rows, cost in costs.items():
        now = cost["reconcile every minute"].usd + cost["full resync every day (backstop)"].usd
        before = cost["full resync every hour (before)"].usd
        lines.append(
            f"- {rows:,} rows: the default schedule costs ${now:,.2f} a month against "
            f"${before:,.2f} for an hourly resync (x{now / before:.2f}), and heals a lost "
            f"webhook in minutes ({heals}) rather than within an hour."
        )
    return "\n".join(lines) + "\n"


def _heal_within_s(cycle: Cycle) -> float:
    return PERIOD_S + SETTLE_S + cycle.estimated_aws_s


def _latency_lines(latency: Latency) -> list[str]:
    """The end-to-end heal latency, per kind of change and in all, against the goal."""
    rows: list[tuple[str, ...]] = [
        ("changes", "lost", "healed", "median s", "p90 s", "p99 s", "max s")
    ]
    for kind in ("update", "delete", "insert", None):
        lost = sum(1 for h in latency.heals if kind in (None, h.kind))
        healed = latency.healed_s(kind)
        figures = (
            [f"{statistics.median(healed):.1f}"]
            + [f"{percentile(healed, q):.1f}" for q in (0.9, 0.99)]
            + [f"{max(healed):.1f}"]
            if healed
            else ["-"] * 4
        )
        rows.append((f"{kind}s" if kind else "all", str(lost), str(len(healed)), *figures))
    healed = latency.healed_s()
    p99 = percentile(healed, 0.99) if healed else math.inf
    missed = len(latency.heals) - len(healed)
    met = not missed and p99 <= LATENCY_GOAL_S and latency.converged
    return [
        f"Heal latency end to end, measured on the local stack (the template's schedule, every "
        f"{PERIOD_S} s; Lambda's SQS poller with the template's batching window; the consumer in "
        f"its own process), {latency.rows:,} rows, every webhook dropped by pg_net: "
        f"{len(latency.heals)} changes at random moments over {latency.periods} periods, each "
        "timed from its commit until its cached row item held it (gone, for a delete):",
        "",
        "```",
        table(rows),
        "```",
        "",
        f"- p99 {p99:.1f} s (nearest rank: of {len(healed)} samples, the largest) against the "
        f"goal of one period plus 60 s ({LATENCY_GOAL_S} s): {'met' if met else 'NOT met'}"
        f"{f'; {missed} not healed within the wait' if missed else ''}; the cached list equals "
        f"the table afterwards: {'yes' if latency.converged else 'NO'}; {latency.cycles} "
        "scheduled cycles ran meanwhile.",
        f"- Why at most one period plus the settle time ({SETTLE_S} s; a webhook may still be "
        "in flight until then), the cycle and the queue's hops: a delete is found by the next "
        "cycle's counts and checked again after the settle time; an insert or an update younger "
        "than the settle time when a cycle scans is healed by the next one.",
        "",
    ]


def _goals(cycles: list[Cycle], latency: Latency | None) -> list[str]:
    """Each cost goal of the heal, against what this run measured."""
    reconciles = [c for c in cycles if c.job == "reconcile"]
    quiet = [c for c in reconciles if c.lost == 0]
    lost = [c for c in reconciles if c.lost > 0]
    rows: list[tuple[str, ...]] = [("goal (per table and cycle)", "measured", "met")]

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    if quiet:
        rows.append(
            (
                "nothing lost: at most 3 Supabase requests, about 0 rows",
                "; ".join(
                    f"{c.rows:,} rows: {c.supabase_requests} requests, {c.supabase_rows} rows"
                    for c in quiet
                ),
                met(all(c.supabase_requests <= 3 and c.supabase_rows == 0 for c in quiet)),
            )
        )
    if lost:
        worst = max(lost, key=lambda c: c.supabase_rows / (2 * c.lost + 100))
        rows.append(
            (
                "d lost: at most 2·d + 100 rows read",
                f"at most {worst.supabase_rows} of {2 * worst.lost + 100} allowed "
                f"(d = {worst.lost}, {worst.rows:,} rows)",
                met(all(c.supabase_rows <= 2 * c.lost + 100 for c in lost)),
            )
        )

        def ratio(c: Cycle) -> float:
            return c.supabase_requests / (c.lost * math.log2(c.rows))

        ratios = [ratio(c) for c in lost]
        largest_d = max(c.lost for c in lost)
        by_size = ", ".join(
            f"{ratio(c):.2f}" for c in sorted(lost, key=lambda c: c.rows) if c.lost == largest_d
        )
        rows.append(
            (
                "d lost: O(d·log n) requests",
                f"requests / (d·log2 n) from {min(ratios):.2f} to {max(ratios):.2f}; at "
                f"d = {largest_d}: {by_size} as n grows",
                met(max(ratios) <= 1.0),
            )
        )
    share = max(reconciles, key=lambda c: c.supabase_rows / c.rows)
    rows.append(
        (
            "no cycle reads the whole table",
            f"at most {share.supabase_rows / share.rows:.1%} of it (d = {share.lost}, "
            f"{share.rows:,} rows); a cycle reads half the table at most, by design",
            met(all(c.supabase_rows < c.rows for c in reconciles)),
        )
    )
    rows.append(
        (
            "every cycle leaves the cache equal to the table",
            f"{sum(c.converged for c in reconciles)} of {len(reconciles)}",
            met(all(c.converged for c in reconciles)),
        )
    )
    if latency is not None:
        healed = latency.healed_s()
        p99 = percentile(healed, 0.99) if healed else math.inf
        rows.append(
            (
                f"heal latency: p99 at most one period + 60 s ({LATENCY_GOAL_S} s)",
                f"p99 {p99:.1f} s end to end ({len(healed)} of {len(latency.heals)} healed, "
                f"{latency.rows:,} rows)",
                met(p99 <= LATENCY_GOAL_S and len(healed) == len(latency.heals)),
            )
        )
    lines = ["Against the goals:", "", "```", table(rows), "```", ""]
    for rows_n in sorted({c.rows for c in cycles}):
        resync = next((c for c in cycles if c.job == "resync" and c.rows == rows_n), None)
        cycle = max((c for c in reconciles if c.rows == rows_n), key=lambda c: c.lost, default=None)
        if resync is None or cycle is None:
            continue
        lines.append(
            f"- {rows_n:,} rows, {resync.lost} lost: the cycle read {cycle.supabase_rows:,} rows "
            f"and {cycle.read_units:,} read units, the full resync {resync.supabase_rows:,} and "
            f"{resync.read_units:,} (x{cycle.read_units / max(resync.read_units, 1):.3f} the "
            f"units); {cycle.supabase_requests} Supabase requests against "
            f"{resync.supabase_requests}."
        )
    return [*lines, ""]


def _plot(cycles: list[Cycle], latency: Latency | None, path: Path) -> None:
    """Six panels: a cycle's four costs against d beside the full resync's; the measured heal
    latency (its distribution, the goal); the monthly cost per table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, Callable[[Cycle], float]]] = [
        ("Supabase requests", lambda c: c.supabase_requests),
        ("Supabase rows read", lambda c: c.supabase_rows),
        ("DynamoDB read units", lambda c: c.read_units),
        ("cycle seconds on AWS (estimated)", lambda c: c.estimated_aws_s),
    ]
    figure, axes = plt.subplots(2, 3, figsize=(15, 8))
    sizes = sorted({c.rows for c in cycles})
    colors = ["#3b7dd8", "#d8793b", "#3bb06b", "#8a3bd8"]
    for axis, (title, value) in zip(axes.flat[:4], panels, strict=True):
        for size, color in zip(sizes, colors, strict=False):
            points = sorted(
                (c.lost, value(c)) for c in cycles if c.rows == size and c.job == "reconcile"
            )
            xs = [max(x, 0.5) for x, _ in points]
            axis.plot(
                xs,
                [_plotted(y) for _, y in points],
                "o-",
                color=color,
                label=f"reconcile, {size:,} rows",
            )
            for resync in (c for c in cycles if c.rows == size and c.job == "resync"):
                axis.axhline(
                    _plotted(value(resync)),
                    color=color,
                    linestyle="--",
                    linewidth=1,
                    label=f"full resync, {size:,} rows",
                )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks([0.5, 1, 10, 100], ["0", "1", "10", "100"])
        axis.set_xlabel("changes lost (d)")
        axis.set_title(title)
    axes.flat[0].legend(fontsize=7)

    axis = axes.flat[4]
    if latency is not None:
        for kind, color in zip(("update", "delete", "insert"), colors, strict=False):
            healed = latency.healed_s(kind)
            axis.step(
                healed,
                [(i + 1) / len(healed) for i in range(len(healed))],
                where="post",
                color=color,
                label=f"{kind}s ({len(healed)})",
            )
        axis.axvline(LATENCY_GOAL_S, color="black", linestyle=":", label="goal: period + 60 s")
        axis.axvline(PERIOD_S + SETTLE_S, color="grey", linestyle="--", label="period + settle")
        axis.set_xlim(0, LATENCY_GOAL_S + 10)
        axis.set_ylim(0, 1.02)
        axis.legend(fontsize=7, loc="lower right")
    axis.set_xlabel("seconds from the commit until the cache held it")
    axis.set_ylabel("share of lost changes healed")
    axis.set_title(
        f"heal latency, end to end ({latency.rows:,} rows)" if latency else "heal latency"
    )

    axis = axes.flat[5]
    sizes_cost = (100_000, 1_000_000)
    schedules = list(_monthly(cycles, sizes_cost[0]))
    width = 0.8 / len(schedules)
    for index, (name, color) in enumerate(zip(schedules, colors, strict=False)):
        axis.bar(
            [i + index * width for i in range(len(sizes_cost))],
            [_monthly(cycles, rows)[name].usd for rows in sizes_cost],
            width,
            color=color,
            label=name,
        )
    axis.set_xticks(
        [i + width * (len(schedules) - 1) / 2 for i in range(len(sizes_cost))],
        [f"{rows:,} rows" for rows in sizes_cost],
    )
    axis.set_yscale("log")
    axis.set_ylabel("USD a month per table")
    axis.set_title("monthly cost per table")
    axis.legend(fontsize=7)

    figure.suptitle("Healing lost webhooks: one reconcile cycle against a full resync")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plotted(value: float) -> float:
    """A value on a log axis: 0 (no row read) is drawn at 0.5, below 1."""
    return value if value > 0 else 0.5


def _replace_section(report: str, command: str, where: str) -> None:
    """Put ``report`` in place of this section of docs/BENCHMARKS.md (added at the end the
    first time); the other sections stay as they are."""
    text = REPORT.read_text()
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"{HEADING}\nWritten by `{command}` on {written} ({where}). Raw figures: "
        f"[benchmarks/{RAW.name}](benchmarks/{RAW.name}).\n\n{report.rstrip()}\n"
    )
    if HEADING not in text:
        REPORT.write_text(text.rstrip() + "\n\n" + section)
        return
    start = text.index(HEADING)
    end = text.find("\n## ", start + len(HEADING))
    REPORT.write_text(text[:start] + section + (text[end:] if end != -1 else ""))


if __name__ == "__main__":
    main()
