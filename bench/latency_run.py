"""``make bench-latency``: every benchmark under the latency model, and its report section.

``python -m bench.latency_run [--quick] [--report] [--latency dynamodb=5,supabase=25]``

Runs, in order: cold-start imports, the receiver under a burst, the consumer's critical path
(1,000 and 100,000 rows), change-to-visible and the batching window (100,000 rows), and the
first fills in child processes (1,000 to 1,000,000 rows; the writer pool). Prints the section
as it is written; ``--report`` replaces the "Under network latency" section of
docs/BENCHMARKS.md (and only it) and writes its plots and raw figures to docs/benchmarks/.
``--quick`` runs everything small (a few minutes), written to .local-data/bench-latency/.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import burst, cold_start, fills, imports
from bench.burst import BurstOutcome, ReceiverTimes
from bench.common import ROOT, Progress, table, use_fake_aws
from bench.fills import FillFigures
from bench.imports import ImportCosts
from bench.latency import NO_LATENCY, Call, CallTrace, Latencies, instrument_client

if TYPE_CHECKING:
    # Imported when run (they import the layer, which use_fake_aws puts on the path).
    from bench.critical_path import BatchFigures
    from bench.visibility import VisibilityRun

REPORT = ROOT / "docs" / "BENCHMARKS.md"


@dataclass
class Scale:
    """How big each part runs: the full run, or ``--quick``."""

    batch_rows: tuple[int, ...] = (1_000, 100_000)
    visibility_rows: int = 100_000
    trickle: dict[str, float] = field(default_factory=lambda: {"changes": 40, "per_second": 2.0})
    burst_rows: int = 1_000
    fill_rows: tuple[int, ...] = fills.FILL_ROWS
    writer_rows: int = fills.WRITER_ROWS
    moto_rows: int = fills.MOTO_ROWS
    receiver_samples: int = 300
    cold_runs: int = 5
    import_repeats: int = 7


QUICK = Scale(
    batch_rows=(1_000,),
    visibility_rows=1_000,
    trickle={"changes": 10, "per_second": 4.0},
    burst_rows=200,
    fill_rows=(1_000, 5_000),
    writer_rows=1_000,
    moto_rows=300,
    receiver_samples=50,
    cold_runs=2,
    import_repeats=3,
)


@dataclass
class Results:
    when: datetime
    machine: str
    command: str
    latencies: Latencies
    scale: Scale
    imports: dict[str, float] = field(default_factory=dict)  # CPU s, the runtime's Python
    # Python version -> module -> (wall s, CPU s), medians; the runtime's version first.
    import_runs: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    import_costs: dict[str, ImportCosts] = field(default_factory=dict)
    shim: dict[str, float] = field(default_factory=dict)
    receiver: ReceiverTimes | None = None
    bursts: list[BurstOutcome] = field(default_factory=list)
    runtime_init_limits: dict[str, float] = field(default_factory=dict)
    provisioned: dict[str, int | None] = field(default_factory=dict)
    memory_choice: int | None = None  # the receiver's smallest memory that passes
    template_memory: int = 0  # the receiver's MemorySize in template.yaml
    batches: list[BatchFigures] = field(default_factory=list)
    # The full-read design's 10-change batches at the smallest size, seconds (the baseline
    # the patch path is held to).
    full_read_s: list[float] = field(default_factory=list)
    reader_ms: tuple[float, float] = (0.0, 0.0)
    breakdown: list[Call] = field(default_factory=list)
    visibility: list[VisibilityRun] = field(default_factory=list)
    moto_visibility: list[VisibilityRun] = field(default_factory=list)
    fills: FillFigures | None = None
    load: list[float] = field(default_factory=list)  # the machine's 1-minute load, per part


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (development)")
    parser.add_argument("--report", action="store_true", help="replace the report's section")
    parser.add_argument("--latency", default="", help="ms per service over the defaults")
    parser.add_argument("--skip", default="", help="parts to leave out (comma-separated)")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="write the section again from the last run's figures (no measuring)",
    )
    arguments = parser.parse_args(argv)
    skip = set(filter(None, arguments.skip.split(",")))
    if arguments.render_only:
        use_fake_aws()
        saved = ROOT / ".local-data/bench-latency/results.pickle"
        results, seconds = pickle.loads(saved.read_bytes())  # noqa: S301 (our own file)
        out = ROOT / ("docs" if arguments.report else ".local-data/bench-latency")
        write_section(results, seconds / 60, out, report=arguments.report, kept_parts=sorted(skip))
        return
    use_fake_aws()
    latencies = Latencies.parse(arguments.latency)
    scale = QUICK if arguments.quick else Scale()
    progress = Progress()
    results = Results(
        when=datetime.now(UTC),
        machine=f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}",
        command=" ".join(
            ["python -m bench.latency_run", *(argv if argv is not None else sys.argv[1:])]
        ),
        latencies=latencies,
        scale=scale,
    )
    started = time.monotonic()
    results.load.append(os.getloadavg()[0])
    if "imports" not in skip:
        measure_imports(results, progress)
        results.load.append(os.getloadavg()[0])
    results.shim = shim_overhead(latencies)
    if "burst" not in skip:
        measure_burst(results, progress)
        results.load.append(os.getloadavg()[0])
    if "consumer" not in skip:
        measure_consumer(results, progress)
        results.load.append(os.getloadavg()[0])
    if "fills" not in skip:
        results.fills = fills.measure(
            latencies,
            sizes=scale.fill_rows,
            writer_rows=scale.writer_rows,
            moto_rows=scale.moto_rows,
            progress=progress,
        )
        results.load.append(os.getloadavg()[0])
    out = ROOT / (".local-data/bench-latency" if arguments.quick else "docs")
    # Kept so that the section can be written again from these figures (--render-only).
    saved = ROOT / ".local-data/bench-latency/results.pickle"
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(pickle.dumps((results, time.monotonic() - started)))
    minutes = (time.monotonic() - started) / 60
    write_section(
        results,
        minutes,
        out,
        report=arguments.report and not arguments.quick,
        kept_parts=sorted(skip),
    )


def write_section(
    results: Results, minutes: float, out: Path, *, report: bool, kept_parts: Sequence[str] = ()
) -> None:
    """The section, its plots and raw figures: into docs/ (``report``), else into ``out``."""
    from bench.latency_report import render, write_figures

    progress = Progress()
    figures_dir = out / "benchmarks"
    written = write_figures(results, figures_dir, keep_old=bool(kept_parts))
    section = render(results, minutes)
    print(section)
    if report:
        replace_section(section, kept_parts)
        progress.step(f"report: {REPORT.relative_to(ROOT)} and {len(written)} files")
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "under-latency.md").write_text(section)
        progress.step(f"section written to {(out / 'under-latency.md').relative_to(ROOT)}")


# ----- the parts -------------------------------------------------------------------------------


def measure_imports(results: Results, progress: Progress) -> None:
    """Cold-start imports as on Lambda, with the runtime's Python version and this one's."""
    from bench.lambda_site import runtime_python, version_of

    repeats = results.scale.import_repeats
    for python in dict.fromkeys([runtime_python(), sys.executable]):
        times = cold_start.measure_times(repeats, progress, python)
        results.import_runs[version_of(python)] = {
            module: (time.wall_s, time.cpu_s) for module, time in times.items()
        }
    runtime = next(iter(results.import_runs.values()))
    results.imports = {module: cpu for module, (_, cpu) in runtime.items()}
    progress.step("cold start: python -X importtime, by package")
    results.import_costs = imports.measure(repeats=3 if repeats > 3 else 1, python=runtime_python())


def measure_burst(results: Results, progress: Progress) -> None:
    progress.step("burst: the receiver's warm service time and cold start")
    scale = results.scale
    times = burst.measure_receiver(
        results.latencies, scale.receiver_samples, scale.cold_runs, progress
    )
    results.receiver = times
    for memory_mb in burst.MEMORY_SIZES:
        for webhooks in (1_000, 10_000):
            for pattern in ("steady", "batches"):
                options: dict[str, Any] = {
                    "webhooks": webhooks,
                    "pattern": pattern,
                    "timeout_s": 1.0,
                    "memory_mb": memory_mb,
                }
                results.bursts.append(burst.simulate(times, results.latencies, **options))
                name = f"{memory_mb}/{webhooks}/{pattern}"
                results.runtime_init_limits[name] = burst.largest_runtime_init(
                    times, results.latencies, **options
                )
                results.runtime_init_limits[f"{name}/boosted"] = burst.largest_runtime_init(
                    times, results.latencies, init_share=1.0, **options
                )
                results.provisioned[name] = burst.provisioned_needed(
                    times, results.latencies, **options
                )
    # The dashboard's 5 s timeout, at the smallest memory.
    for pattern in ("steady", "batches"):
        results.bursts.append(
            burst.simulate(
                times,
                results.latencies,
                webhooks=1_000,
                pattern=pattern,
                timeout_s=5.0,
                memory_mb=burst.MEMORY_SIZES[0],
            )
        )
    results.memory_choice = burst.chosen_memory(times, results.latencies)
    results.template_memory = burst.template_memory_mb()


def measure_consumer(results: Results, progress: Progress) -> None:
    from bench import critical_path
    from bench.latency_stack import model_stack

    scale = results.scale
    for rows in scale.batch_rows:
        with model_stack(rows, results.latencies, queue="memory") as stack:
            critical_path.fill(stack, progress)
            results.batches += critical_path.batches(stack, "memory", rows, progress)
            if rows == min(scale.batch_rows):
                progress.step(f"critical path: the full-read design at {rows:,} rows")
                results.full_read_s = critical_path.full_read_batches(stack)
            if rows == scale.visibility_rows:
                measure_visibility(results, stack, progress)
    with model_stack(scale.moto_rows, results.latencies, backend="moto", queue="memory") as stack:
        critical_path.fill(stack, progress)
        results.batches += critical_path.batches(stack, "moto", scale.moto_rows, progress)
        run = _moto_trickle(results, stack, progress, "moto + model", results.reader_ms)
        results.moto_visibility.append(run)
    with model_stack(scale.moto_rows, NO_LATENCY, backend="moto", queue="memory") as stack:
        critical_path.fill(stack, progress)
        run = _moto_trickle(results, stack, progress, "moto alone", (0.0, 0.0))
        results.moto_visibility.append(run)


def _moto_trickle(
    results: Results,
    stack: Any,
    progress: Progress,
    name: str,
    reader_ms: tuple[float, float],
) -> VisibilityRun:
    """The trickle at window 0 with DynamoDB on moto: what the moto figures would have said
    (``moto alone``: no latency anywhere, as every benchmark before this one)."""
    from bench import visibility

    progress.step(f"change to visible: a trickle, window 0 s, {name}")
    run = visibility.measure_run(
        stack,
        visibility.Receivers(stack),
        "trickle",
        0,
        trickle=results.scale.trickle,
        reader_ms=reader_ms,
    )
    run.workload = f"trickle, {name}"
    return run


def measure_visibility(results: Results, stack: Any, progress: Progress) -> None:
    """Change to visible on a filled stack (the critical path's largest)."""
    from bench import visibility

    scale = results.scale
    progress.step("change to visible: the read API's own time, one change's round trips")
    results.reader_ms = visibility.reader_times(stack)
    results.breakdown = visibility.one_change(stack)
    receivers = visibility.Receivers(stack)
    for window in visibility.WINDOWS:
        modes = ("first-message", "previous-invocation") if window else ("first-message",)
        for mode in modes:
            progress.step(f"change to visible: a trickle, window {window} s ({mode})")
            results.visibility.append(
                visibility.measure_run(
                    stack,
                    receivers,
                    "trickle",
                    window,
                    window_from=mode,
                    trickle=scale.trickle,
                    reader_ms=results.reader_ms,
                )
            )
    for window in visibility.WINDOWS:
        progress.step(f"change to visible: a {scale.burst_rows:,}-row insert, window {window} s")
        results.visibility.append(
            visibility.measure_run(
                stack,
                receivers,
                "burst",
                window,
                burst_rows=scale.burst_rows,
                reader_ms=results.reader_ms,
                progress=progress,
            )
        )


def shim_overhead(latencies: Latencies, calls: int = 200) -> dict[str, float]:
    """CPU per call of a GetItem with and without the latency shim (memory DynamoDB): what
    the shim itself costs, which must be next to nothing against the call."""
    import boto3

    from bench.memory_dynamodb import MemoryDynamoDB

    memory = MemoryDynamoDB()
    try:
        cpu: dict[str, float] = {}
        for name, model in (("bare", None), ("hooks", NO_LATENCY), ("shim", latencies)):
            client = boto3.client("dynamodb")
            trace = CallTrace(keep_calls=False)
            if model is not None:
                instrument_client(client, "dynamodb", model, trace)
            memory.attach(client)
            client.get_item(TableName="t", Key={"pk": {"S": "warm"}})
            began, wall = time.process_time(), time.perf_counter()
            for _ in range(calls):
                client.get_item(TableName="t", Key={"pk": {"S": "x"}})
            cpu[f"{name}_cpu_us"] = (time.process_time() - began) / calls * 1e6
            cpu[f"{name}_wall_ms"] = (time.perf_counter() - wall) / calls * 1000
            if model is not None:
                cpu["sleep_cpu_us"] = trace.shim_cpu_s / calls * 1e6
        return cpu
    finally:
        memory.close()


def replace_section(section: str, kept_parts: Sequence[str] = ()) -> None:
    """Put ``section`` in place of the report's "Under network latency" section (appended
    if it has none yet); every other section stays as ``make bench`` wrote it. With
    ``kept_parts`` (parts this run skipped), the old section's subsections this run did not
    write, and its goal rows this run has none for, are kept, and the section says so."""
    heading = "## Under network latency\n"
    text = REPORT.read_text()
    start = text.find(heading)
    if start == -1:
        REPORT.write_text(text.rstrip("\n") + "\n\n" + section.rstrip() + "\n")
        return
    end = text.find("\n## ", start + len(heading))
    old = text[start:end] if end != -1 else text[start:]
    if kept_parts:
        section = merge_sections(old, section, kept_parts)
    REPORT.write_text(text[:start] + section.rstrip() + "\n" + (text[end:] if end != -1 else ""))


GOALS = "### Goals against this run"


def _subsections(text: str) -> tuple[str, dict[str, str]]:
    """A section's text before its first ``###``, and each ``###`` subsection by heading."""
    parts = re.split(r"(?m)^(?=### )", text)
    return parts[0], {part.splitlines()[0]: part for part in parts[1:]}


def _table_rows(block: str) -> tuple[list[tuple[str, ...]], str]:
    """The rows of the first fenced table in ``block`` (cut at the widths of its dashes), and
    the text around it with ``{table}`` in its place."""
    match = re.search(r"```\n(.*?)\n```", block, re.S)
    if match is None:
        return [], block
    lines = match.group(1).splitlines()
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]
    rows = [
        tuple(
            line[a : (spans[i + 1][0] if i + 1 < len(spans) else None)].strip()
            for i, (a, _) in enumerate(spans)
        )
        for line in [lines[0], *lines[2:]]
    ]
    return rows, block[: match.start()] + "{table}" + block[match.end() :]


def merge_sections(old: str, new: str, kept_parts: Sequence[str]) -> str:
    """The new section, with the old one's subsections and goal rows for what was not re-run."""
    old_intro, old_parts = _subsections(old)
    new_intro, new_parts = _subsections(new)
    when = re.search(r"on (\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC)", old_intro)
    earlier = when.group(1) if when else "an earlier run"
    kept = [title for title in old_parts if title not in new_parts]
    merged = dict(new_parts)
    for title in kept:
        merged[title] = old_parts[title]
    if GOALS in old_parts and GOALS in new_parts:
        old_rows, _ = _table_rows(old_parts[GOALS])
        new_rows, around = _table_rows(new_parts[GOALS])
        names = {row[0] for row in new_rows}
        carried = [row for row in old_rows[1:] if row[0] not in names]
        merged[GOALS] = around.replace(
            "{table}", "```\n" + table([*new_rows, *carried]) + "\n```"
        ).rstrip("\n") + (
            f"\n\nRows for parts not re-run here ({', '.join(kept_parts)}) are the run of "
            f"{earlier}'s.\n\n"
            if carried
            else "\n\n"
        )
    # Each kept subsection goes back where it was: after the one it followed before.
    order = list(new_parts)
    titles = list(old_parts)
    for title in kept:
        before = [t for t in titles[: titles.index(title)] if t in order]
        order.insert(order.index(before[-1]) + 1 if before else 0, title)
    note = (
        f"Parts not re-run here ({', '.join(kept_parts)}) keep the figures of the run of "
        f"{earlier}: " + ", ".join(f'"{title[4:]}"' for title in kept) + ".\n\n"
        if kept
        else ""
    )
    return new_intro.rstrip("\n") + "\n\n" + note + "".join(merged[title] for title in order)


def raw(results: Results) -> dict[str, Any]:
    """Every figure of the run, for scripts (docs/benchmarks/latency.json)."""
    return {
        "when": results.when.isoformat(),
        "latencies_ms": {k: v * 1000 for k, v in results.latencies.seconds.items()},
        "imports_cpu_s": results.imports,
        "import_runs_wall_cpu_s": results.import_runs,
        "shim": results.shim,
        "receiver": results.receiver.as_dict() if results.receiver else None,
        "bursts": [outcome.as_dict() for outcome in results.bursts],
        "runtime_init_limits_s": results.runtime_init_limits,
        "provisioned_needed": results.provisioned,
        "receiver_memory": {"chosen": results.memory_choice, "template": results.template_memory},
        "batches": [figures.as_dict() for figures in results.batches],
        "reader_ms": results.reader_ms,
        "one_change": [
            {"service": c.service, "operation": c.operation, "ms": (c.ended - c.started) * 1000}
            for c in results.breakdown
        ],
        "visibility": [run.as_dict() for run in results.visibility],
        "moto_visibility": [run.as_dict() for run in results.moto_visibility],
        "fills": {
            name: [fill.figures for fill in group]
            for name, group in (
                ("sizes", results.fills.sizes if results.fills else []),
                ("writers", results.fills.writers if results.fills else []),
                ("moto", results.fills.moto if results.fills else []),
            )
        },
    }


def dump(results: Results, path: Path, *, keep_old: bool = False) -> Path:
    """The raw figures; ``keep_old``: a figure this run did not measure (a skipped part)
    keeps the value the file already has."""
    figures = raw(results)
    if keep_old and path.exists():
        old = json.loads(path.read_text())
        for key, value in figures.items():
            if isinstance(value, dict) and isinstance(old.get(key), dict):
                figures[key] = {k: v if v else old[key].get(k, v) for k, v in value.items()}
            elif not value and key in old:
                figures[key] = old[key]
    path.write_text(json.dumps(figures, indent=1, default=str))
    return path


if __name__ == "__main__":
    # Through the module's own name, so that the pickled figures name its classes (not
    # __main__'s) and --render-only can read them back.
    from bench import latency_run

    latency_run.main(sys.argv[1:])
