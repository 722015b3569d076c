"""Scale: what a warm batch of 10 single-row updates and a full fill cost at 1k, 10k, 100k rows.

Each measurement runs the consumer in a child process of its own (so its time and peak memory
are the consumer's), against the moto server and a local Supabase on PostgreSQL, which run
in this process. Both designs run in the same session on the same data:

- **patch** (this project): reads the touched keys, writes their row items, patches the list;
- **full read** (the design before it, ``bench/full_read_baseline.py``): every batch re-reads
  the whole table and rewrites every list chunk.

Write units are counted as DynamoDB bills them: each write rounded up to whole KB of the item
(an UpdateItem at the size of the item it leaves, which the benchmark reads back afterwards,
outside the timed part). Results go to stdout and to ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from bench.common import LAMBDA_PATH, ROOT, table, use_fake_aws

REGION = "us-east-1"
# 100,000 is the size, but a fill of it takes long here
# (see docs/BENCHMARKS.md): `python -m bench.scale --rows 1000,10000,100000` measures it.
DEFAULT_ROWS = "1000,10000"
REPORT = ROOT / "docs" / "BENCHMARKS.md"
WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
WRITER_ROWS = 2000


@dataclass
class Measured:
    design: str
    job: str
    rows: int
    seconds: float
    invocations: int
    supabase_requests: int
    supabase_rows: int
    write_requests: int
    write_units: int
    rss_start_mb: float
    rss_peak_mb: float

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_peak_mb - self.rss_start_mb


def article(key: int, revision: int = 0) -> dict[str, Any]:
    """About 1 KB of JSON, not trivially compressible (as real text is not)."""
    rng = random.Random(key * 1_000_003 + revision)
    words = " ".join(
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
        for _ in range(130)
    )
    # The revision goes in `rating`, a column of the demo's articles (supabase/migrations).
    return {"id": key, "title": f"Article {key}", "rating": revision, "body": words[:900]}


# ----- the parent: services, data, children ----------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", default=DEFAULT_ROWS)
    parser.add_argument("--fill-only", action="store_true", help="fills only (bench-large)")
    parser.add_argument(
        "--report",
        action="store_true",
        help="also replace the 'Consumer at scale' section of docs/BENCHMARKS.md",
    )
    arguments = parser.parse_args(argv)
    use_fake_aws()
    sizes = [int(size) for size in arguments.rows.split(",")]
    results: list[Measured] = []
    writer_rates: tuple[float, float] | None = None
    for index, rows in enumerate(sizes):
        measured, rates = _measure_size(
            rows, fill_only=arguments.fill_only, writer=index == 0 and not arguments.fill_only
        )
        results += measured
        writer_rates = writer_rates or rates
    report = _report(results, writer_rates)
    print(report)
    if arguments.report and not arguments.fill_only:
        _replace_section(report, " ".join(["python -m bench.scale", *(argv or sys.argv[1:])]))
        print(f"(written to {REPORT.relative_to(ROOT)})")


def _replace_section(report: str, command: str) -> None:
    """Put ``report`` in place of the report's "Consumer at scale" section, saying which
    command wrote it and when; the other sections (``make bench``'s) stay as they are."""
    heading = "## Consumer at scale\n"
    text = REPORT.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"{heading}\nWritten by `{command}` on {written}.\n\n{report.rstrip()}\n"
    REPORT.write_text(text[:start] + section + (text[end:] if end != -1 else ""))


def _measure_size(
    rows: int, *, fill_only: bool, writer: bool = False
) -> tuple[list[Measured], tuple[float, float] | None]:
    from local.aws_resources import provision, seed_secrets
    from local.moto_server import MotoServer
    from local.supabase import LocalSupabase, PostgresCluster

    moto = MotoServer(REGION)
    endpoint = moto.start()
    cluster = PostgresCluster().start()
    try:
        cluster.prepare("postgres", seed=False)
        with LocalSupabase(cluster, "postgres") as supabase:
            for start in range(1, rows + 1, 10_000):
                supabase.seed(
                    "articles", [article(k) for k in range(start, min(start + 10_000, rows + 1))]
                )
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
            from local.template import function_environment

            environment = {
                **function_environment(stack.resolver, "ConsumerFunction"),
                **endpoint.environment(),
                "SUPABASE_URL": supabase.url,
                "SUPABASE_TIMEOUT_SECONDS": "60",
            }
            results = [_child("patch", "fill", rows, environment, supabase)]
            if fill_only:
                return results, None
            changes = _update_rows(supabase, rows)
            results.append(_child("patch", "batch", rows, environment, supabase, changes))
            _child("full-read", "warm", rows, environment, supabase)
            changes = _update_rows(supabase, rows)
            results.append(_child("full-read", "batch", rows, environment, supabase, changes))
            rates = _measure_writer_rates(environment, supabase) if writer else None
            return results, rates
    finally:
        cluster.stop()
        moto.stop()


def _update_rows(supabase: Any, rows: int) -> list[str]:
    """Ten rows change in Supabase; the queue messages their webhooks would become."""
    from supabase import create_client

    from waituntil.core.contracts import Change

    writer = create_client(supabase.url, supabase.service_key)  # no webhook trigger here
    keys = random.Random(rows).sample(range(1, rows + 1), 10)
    bodies = []
    for key in keys:
        row = article(key, revision=int(time.time_ns() % 1_000_000))
        writer.table("articles").update(row).eq("id", key).execute()
        bodies.append(
            Change(
                type="UPDATE",
                schema_name="public",
                table="articles",
                key=key,
                received_at=datetime.now(UTC),
                correlation_id=str(uuid.uuid4()),
            ).to_message()
        )
    return bodies


def _child(
    design: str,
    job: str,
    rows: int,
    environment: dict[str, str],
    supabase: Any,
    changes: list[str] | None = None,
) -> Measured:
    supabase.reset_request_log()
    command = [sys.executable, "-m", "bench.scale_child", design, job, str(rows)]
    process = subprocess.run(  # noqa: S603 (our own interpreter and module)
        command,
        input=json.dumps(changes or []),
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            **environment,
            "PYTHONPATH": os.pathsep.join(LAMBDA_PATH),
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "Bench",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION,
        },
        cwd=ROOT,
    )
    if process.returncode != 0:
        raise SystemExit(f"benchmark child failed ({design} {job} {rows}):\n{process.stderr}")
    result = json.loads(process.stdout.strip().splitlines()[-1])
    result["supabase_requests"] = len(supabase.request_log)
    measured = Measured(**result)
    # Each result as it comes: a long run that fails later still leaves what it measured.
    print(f"measured: {json.dumps(asdict(measured))}", file=sys.stderr, flush=True)
    return measured


def _measure_writer_rates(
    environment: dict[str, str], supabase: Any, rows: int = WRITER_ROWS
) -> tuple[float, float]:
    """Rows per second of the row writer with one thread and with the consumer's pool, each
    in a child process (as a consumer is: not sharing the moto server's process)."""
    from waituntil.adapters.cache_store import WRITE_WORKERS

    sequential = _child("writer", "1", rows, environment, supabase)
    parallel = _child("writer", str(WRITE_WORKERS), rows, environment, supabase)
    return rows / sequential.seconds, rows / parallel.seconds


# ----- the report ------------------------------------------------------------------------------


def _report(results: list[Measured], writer_rates: tuple[float, float] | None) -> str:
    lines = [
        "Each consumer run is a child process of its own, against the moto server and the",
        "local Supabase on PostgreSQL (run by the benchmark's process). Rows are about 1 KB of "
        "JSON.",
        "",
    ]
    batches = [r for r in results if r.job == "batch"]
    if batches:
        lines += [
            "### A warm batch of 10 single-row updates",
            "",
            "```",
            table(
                [
                    (
                        "design",
                        "rows",
                        "seconds",
                        "Supabase requests",
                        "rows read",
                        "write requests",
                        "write units",
                        "peak RSS MB",
                    )
                ]
                + [
                    (
                        r.design,
                        f"{r.rows:,}",
                        f"{r.seconds:.2f}",
                        str(r.supabase_requests),
                        f"{r.supabase_rows:,}",
                        str(r.write_requests),
                        f"{r.write_units:,}",
                        f"{r.rss_peak_mb:.0f}",
                    )
                    for r in batches
                ]
            ),
            "```",
            "",
        ]
        lines += _targets(batches)
    fills = [r for r in results if r.job == "fill"]
    if fills:
        lines += [
            "### A first fill (one webhook on an empty cache, then the full sync it starts)",
            "",
            "```",
            table(
                [
                    (
                        "rows",
                        "seconds",
                        "invocations",
                        "Supabase requests",
                        "write requests",
                        "write units",
                        "RSS start MB",
                        "peak RSS MB",
                        "growth MB",
                    )
                ]
                + [
                    (
                        f"{r.rows:,}",
                        f"{r.seconds:.1f}",
                        str(r.invocations),
                        str(r.supabase_requests),
                        f"{r.write_requests:,}",
                        f"{r.write_units:,}",
                        f"{r.rss_start_mb:.0f}",
                        f"{r.rss_peak_mb:.0f}",
                        f"{r.rss_growth_mb:.0f}",
                    )
                    for r in fills
                ]
            ),
            "```",
            "",
        ]
        lines += _fill_targets(fills)
    if writer_rates is not None:
        sequential, parallel = writer_rates
        lines += [
            "### Row writer: the consumer's thread pool against one thread",
            "",
            f"- one thread: {sequential:,.0f} rows/s; the pool: {parallel:,.0f} rows/s "
            f"(x{parallel / sequential:.1f}; target: at least x4).",
            "",
            "Against the moto server this pool gains little, whatever its size: moto answers "
            "every request in one Python process (about 8 ms of CPU per conditional "
            "UpdateItem, most of it parsing the update expression), so parallel requests "
            "queue there. DynamoDB's latency is network time, which the pool overlaps.",
            "",
        ]
    lines.append("Raw figures (JSON), for scripts:")
    lines += ["", "```json", json.dumps([asdict(r) for r in results], indent=1), "```", ""]
    return "\n".join(lines)


def _fill_targets(fills: list[Measured]) -> list[str]:
    """Peak memory growth against the targets: at most 100 MB, and flat as the table grows."""
    lines = []
    for r in fills:
        per_invocation = r.rows / max(r.invocations, 1)
        lines.append(
            f"- {r.rows:,} rows: peak RSS growth {r.rss_growth_mb:.0f} MB (target: at most "
            f"100 MB); {r.invocations} invocations of at most 60 s, about "
            f"{per_invocation:,.0f} rows each."
        )
    if len(fills) > 1:
        small, large = fills[-2], fills[-1]
        lines.append(
            f"- from {small.rows:,} to {large.rows:,} rows the growth went from "
            f"{small.rss_growth_mb:.0f} MB to {large.rss_growth_mb:.0f} MB (target: flat)."
        )
    return [*lines, ""]


def _targets(batches: list[Measured]) -> list[str]:
    patch = {r.rows: r for r in batches if r.design == "patch"}
    full = {r.rows: r for r in batches if r.design == "full-read"}
    lines = ["Against the full-read design of the same run:", ""]
    for rows in sorted(patch):
        if rows in full:
            p, f = patch[rows], full[rows]
            lines.append(
                f"- {rows:,} rows: patch takes x{p.seconds / f.seconds:.2f} the time of full "
                f"read, x{p.write_units / max(f.write_units, 1):.2f} its write units, and reads "
                f"{p.supabase_rows} Supabase rows against {f.supabase_rows:,}."
            )
    if len(patch) > 1:
        small, large = patch[min(patch)], patch[max(patch)]
        lines.append(
            f"- patch at {large.rows:,} rows took x{large.seconds / small.seconds:.2f} the time "
            f"at {small.rows:,} rows (target: at most x2)."
        )
    lines.append("")
    return lines


if __name__ == "__main__":
    main()
