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
Heal latency is the wait for the next scheduled cycle (at most one period),
the settle time when the counts found the difference, and the cycle itself.

The monthly cost per table compares the default schedule (a reconcile every minute, a full
resync every day) with the hourly resync before it, from these figures (prices: docs/SCALE.md).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import ROOT, Progress, quiet, table, use_fake_aws

REPORT = ROOT / "docs" / "BENCHMARKS.md"
PLOT = ROOT / "docs" / "benchmarks" / "heal.png"
HEADING = "## Healing lost webhooks\n"
REGION = "us-east-1"
LOST = (0, 1, 10, 100)
PERIOD_S = 60  # ReconcileSchedule's default
SETTLE_S = 15  # RECONCILE_SETTLE_SECONDS' default

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
    seconds: float
    healed: int
    converged: bool
    levels: int = 0  # rounds of Supabase requests (counts of one level go together)

    @property
    def estimated_aws_s(self) -> float:
        """The cycle on AWS: its DynamoDB calls and its Supabase rounds, one after another."""
        rounds = self.levels or self.supabase_requests
        return self.dynamodb_requests * DYNAMODB_S + rounds * SUPABASE_S


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
    """Read units and requests, from every DynamoDB response the client sees."""

    def __init__(self) -> None:
        self.read_units = self.requests = self.writes = 0

    def attach(self, client: Any) -> None:
        client.meta.events.register("after-call.dynamodb", self._after)

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

    def snapshot(self) -> tuple[int, int, int]:
        return self.read_units, self.requests, self.writes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", default="1000,10000")
    parser.add_argument("--lost", default=",".join(str(d) for d in LOST))
    parser.add_argument("--report", action="store_true", help="write docs/BENCHMARKS.md")
    arguments = parser.parse_args(argv)
    use_fake_aws()
    progress = Progress()
    cycles: list[Cycle] = []
    lost = [int(d) for d in arguments.lost.split(",")]
    for rows in (int(size) for size in arguments.rows.split(",")):
        cycles += _measure_size(rows, lost, progress)
    report = _report(cycles)
    print(report)
    if arguments.report:
        _plot(cycles, PLOT)
        command = " ".join(["python -m bench.heal", *(argv or sys.argv[1:])])
        _replace_section(report, command)
        print(f"(written to {REPORT.relative_to(ROOT)} and {PLOT.relative_to(ROOT)})")


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
    units, calls, writes = counter.snapshot()
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


def _describe(cycle: Cycle) -> str:
    return (
        f"{cycle.job}: {cycle.supabase_requests} requests, {cycle.supabase_rows:,} rows read, "
        f"{cycle.read_units:,} read units, {cycle.seconds:.2f} s, converged {cycle.converged}"
    )


# ----- the report ------------------------------------------------------------------------------


def _monthly(cycles: list[Cycle], rows: int) -> dict[str, float]:
    """Monthly cost per table: the default schedule against an hourly resync (DynamoDB units,
    Lambda time as estimated for AWS, SQS requests), scaled linearly to ``rows``."""
    by = {(c.job, c.rows, c.lost): c for c in cycles}
    measured = max(c.rows for c in cycles)
    quiet_cycle = by[("reconcile", measured, 0)]
    resync = by[("resync", measured, max(c.lost for c in cycles))]
    scale = rows / measured

    def resync_usd() -> float:
        units = resync.read_units * scale * READ_UNIT_USD
        writes = resync.write_requests * scale * WRITE_UNIT_USD
        lambda_s = resync.estimated_aws_s * scale
        return units + writes + lambda_s * CONSUMER_GB * LAMBDA_GB_S_USD

    # A quiet cycle does not grow with the table: it reads the head (about 100 bytes per 128
    # chunks) and a few small items; at 10 times the rows the head stays under 4 KB.
    cycle_usd = (
        quiet_cycle.read_units * READ_UNIT_USD
        + quiet_cycle.write_requests * WRITE_UNIT_USD
        + quiet_cycle.estimated_aws_s * CONSUMER_GB * LAMBDA_GB_S_USD
        + LAMBDA_REQUEST_USD
        + 2 * 3 * SQS_REQUEST_USD  # its message and its share of the fan-out: send, receive, delete
    )
    return {
        "reconcile every minute": cycle_usd * CYCLES_A_MONTH,
        "resync every day (backstop)": resync_usd() * 30,
        "hourly resync (before)": resync_usd() * 30 * 24,
    }


def _report(cycles: list[Cycle]) -> str:
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
                    "write requests",
                    "s here",
                    "s on AWS (est.)",
                    "healed",
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
                    f"{c.write_requests:,}",
                    f"{c.seconds:.2f}",
                    f"{c.estimated_aws_s:.2f}",
                    str(c.healed) if c.job == "reconcile" else "-",
                    "yes" if c.converged else "NO",
                )
                for c in cycles
            ]
        ),
        "```",
        "",
    ]
    lines += _goals(cycles)
    largest = max(c.rows for c in cycles)
    lines += [
        f"Monthly cost per table (DynamoDB units, Lambda time estimated for AWS, SQS), from the "
        f"{largest:,}-row figures, scaled linearly where a figure grows with the table:",
        "",
        "```",
        table(
            [("schedule", *(f"{rows:,} rows" for rows in (100_000, 1_000_000)))]
            + [
                (name, *(f"${_monthly(cycles, rows)[name]:,.2f}" for rows in (100_000, 1_000_000)))
                for name in _monthly(cycles, largest)
            ]
        ),
        "```",
        "",
    ]
    both = {rows: _monthly(cycles, rows) for rows in (100_000, 1_000_000)}
    for rows, cost in both.items():
        now = cost["reconcile every minute"] + cost["resync every day (backstop)"]
        lines.append(
            f"- {rows:,} rows: the default schedule costs ${now:,.2f} a month against "
            f"${cost['hourly resync (before)']:,.2f} for an hourly resync "
            f"(x{now / cost['hourly resync (before)']:.2f}), and heals a lost webhook within "
            f"{PERIOD_S + SETTLE_S} s plus a cycle rather than an hour."
        )
    lines += ["", "Raw figures (JSON), for scripts:", "", "```json"]
    lines += [json.dumps([asdict(c) for c in cycles], indent=1), "```", ""]
    return "\n".join(lines)


def _goals(cycles: list[Cycle]) -> list[str]:
    lines = ["Against the goals (per table and cycle):", ""]
    for cycle in (c for c in cycles if c.job == "reconcile"):
        limit_rows = 2 * cycle.lost + 100
        within = cycle.supabase_rows <= limit_rows and (
            cycle.lost > 0 or cycle.supabase_requests <= 3
        )
        log_n = math.log2(cycle.rows)
        lines.append(
            f"- {cycle.rows:,} rows, {cycle.lost} lost: {cycle.supabase_requests} requests "
            f"({cycle.supabase_requests / max(cycle.lost, 1) / log_n:.2f} x d log2 n), "
            f"{cycle.supabase_rows} rows read (goal: at most {limit_rows}"
            f"{'' if cycle.lost else ', and at most 3 requests'}): "
            f"{'met' if within and cycle.converged else 'NOT met'}; heal latency at most "
            f"{PERIOD_S} s (the period) + {SETTLE_S} s (settle, for what counts found) + "
            f"{cycle.estimated_aws_s:.1f} s (the cycle, est. on AWS)."
        )
    resyncs = {c.rows: c for c in cycles if c.job == "resync"}
    for rows, resync in sorted(resyncs.items()):
        worst = max(
            (c for c in cycles if c.job == "reconcile" and c.rows == rows), key=lambda c: c.lost
        )
        lines.append(
            f"- {rows:,} rows: the full resync read {resync.supabase_rows:,} rows and "
            f"{resync.read_units:,} read units to heal {resync.lost}; the cycle, "
            f"{worst.supabase_rows:,} rows and {worst.read_units:,} units "
            f"(x{worst.read_units / max(resync.read_units, 1):.3f})."
        )
    return [*lines, ""]


def _plot(cycles: list[Cycle], path: Path) -> None:
    import matplotlib.pyplot as plt

    panels: list[tuple[str, Callable[[Cycle], float]]] = [
        ("Supabase requests", lambda c: c.supabase_requests),
        ("Supabase rows read", lambda c: c.supabase_rows),
        ("DynamoDB read units", lambda c: c.read_units),
        ("cycle seconds on AWS (estimated)", lambda c: c.estimated_aws_s),
    ]
    figure, axes = plt.subplots(2, 2, figsize=(10, 7))
    sizes = sorted({c.rows for c in cycles})
    colors = ["#3b7dd8", "#d8793b", "#3bb06b", "#8a3bd8"]
    for axis, (title, value) in zip(axes.flat, panels, strict=True):
        for size, color in zip(sizes, colors, strict=False):
            points = sorted(
                (c.lost, value(c)) for c in cycles if c.rows == size and c.job == "reconcile"
            )
            xs = [max(x, 0.5) for x, _ in points]
            axis.plot(
                xs,
                [max(y, 0.5) for _, y in points],
                "o-",
                color=color,
                label=f"reconcile, {size:,} rows",
            )
            for resync in (c for c in cycles if c.rows == size and c.job == "resync"):
                axis.axhline(
                    max(value(resync), 0.5),
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
    figure.suptitle("One reconcile cycle against a full resync of the same table")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _replace_section(report: str, command: str) -> None:
    """Put ``report`` in place of this section of docs/BENCHMARKS.md (added at the end the
    first time); the other sections stay as they are."""
    text = REPORT.read_text()
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"{HEADING}\nWritten by `{command}` on {written}.\n\n{report.rstrip()}\n"
    if HEADING not in text:
        REPORT.write_text(text.rstrip() + "\n\n" + section)
        return
    start = text.index(HEADING)
    end = text.find("\n## ", start + len(HEADING))
    REPORT.write_text(text[:start] + section + (text[end:] if end != -1 else ""))


if __name__ == "__main__":
    main()
