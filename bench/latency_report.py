"""The "Under network latency" section of docs/BENCHMARKS.md, its plots and raw figures."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

from bench.burst import share_of
from bench.common import table
from bench.latency import LATENCY_SOURCES, Call, what

if TYPE_CHECKING:
    from bench.burst import BurstOutcome
    from bench.critical_path import BatchFigures
    from bench.fills import Fill
    from bench.latency_run import Results
    from bench.visibility import VisibilityRun

BREAKDOWN_PLOT = "latency_one_change.png"
WRITERS_PLOT = "latency_fill_writers.png"
FILL_PLOT = "latency_fill_rows.png"
RAW = "latency.json"
COLOURS = {
    "webhook": "#888888",
    "sqs": "#e08a2c",
    "supabase": "#3ecf8e",
    "dynamodb": "#3b7dd8",
    "secretsmanager": "#b04fc9",
    "s3": "#c94f4f",
}


def write_figures(results: Results, directory: Path, *, keep_old: bool = False) -> list[Path]:
    from bench.latency_run import dump

    directory.mkdir(parents=True, exist_ok=True)
    plt.switch_backend("Agg")
    written = [dump(results, directory / RAW, keep_old=keep_old)]
    if results.breakdown:
        written.append(_plot_breakdown(results, directory / BREAKDOWN_PLOT))
    if results.fills is not None:
        written.append(_plot_writers(results, directory / WRITERS_PLOT))
        written.append(_plot_fill_rows(results, directory / FILL_PLOT))
    return written


# ----- markdown ----------------------------------------------------------------------------------


def render(results: Results, minutes: float) -> str:
    parts = [
        "## Under network latency",
        "",
        f"Written by `{results.command}` on {results.when:%Y-%m-%d %H:%M} UTC "
        f"({results.machine}; {minutes:.0f} minutes). Raw figures: "
        f"[benchmarks/{RAW}](benchmarks/{RAW}).",
        "",
        *_load(results),
        *_model(results),
        *_goals(results),
        *_critical_path(results),
        *_breakdown(results),
        *_visibility(results),
        *_fills(results),
        *_burst(results),
        *_imports(results),
    ]
    return "\n".join(parts).rstrip() + "\n"


def _load(results: Results) -> list[str]:
    load = getattr(results, "load", None)
    if not load:
        return []
    cores = os.cpu_count() or 1
    return [
        f"The machine ({cores} cores) is shared: its 1-minute load average ran from "
        f"{min(load):.1f} to {max(load):.1f} during this run (median "
        f"{statistics.median(load):.1f}). Whatever needs a CPU (the functions' own work, and "
        "a sleeping thread waking up on time) ran slower than on an idle machine, so "
        "absolute times here are pessimistic; counts (calls, round trips, invocations, "
        "write units) and memory are not affected. The one-change and fill sections show "
        "how long calls really waited against the model's figure.",
        "",
    ]


def _model(results: Results) -> list[str]:
    rows = [("service", "latency per call", "where the figure comes from")]
    rows += [
        (service, f"{seconds * 1000:g} ms", LATENCY_SOURCES.get(service, ""))
        for service, seconds in results.latencies.seconds.items()
    ]
    shim = results.shim
    lines = [
        "### The model",
        "",
        "Every call the functions make to AWS or Supabase waits a fixed time and burns no CPU "
        "(`time.sleep` in a botocore `before-send` hook and in an httpx transport, outside any "
        "lock: `bench/latency.py`), so that calls made in parallel overlap as on the network. "
        "The defaults are same-region round trips (the project's brief, `--latency` changes "
        "them):",
        "",
        _fenced(table(rows)),
        "",
        "What answers behind the shim, per benchmark (each says so again below):",
        "",
        "- DynamoDB: `bench/memory_dynamodb.py`, DynamoDB's JSON protocol answered in "
        "process from a SQLite file, under the project's real `CacheStore` and a real boto3 "
        "client (botocore serializes, retries and parses as against AWS; the conditions, "
        "`ReturnValues` and the bill are DynamoDB's, checked against moto by "
        "`tests/integration/test_memory_dynamodb.py`). moto's backend costs about 8 ms of "
        "CPU per conditional write in the caller's process, which is what hid the latency "
        "before; the moto figures are measured beside each model figure.",
        "- Supabase: `bench/memory_supabase.py`, PostgREST's reads answered from a table of "
        "integer keys whose rows (about 1 KB of JSON) are made from the key, behind the "
        "consumer's real `SupabaseSource` (postgrest-py, httpx).",
        "- SQS: `bench/memory_sqs.py` where pollers wait on the queue (long polls cost no "
        "CPU); moto's SQS for the receiver's warm service time.",
    ]
    if shim:
        lines += [
            "",
            f"The shim's own cost, per GetItem (200 in a row, memory DynamoDB): "
            f"{shim['bare_cpu_us']:.0f} µs of CPU without it, {shim['hooks_cpu_us']:.0f} µs "
            f"with its hooks and no latency (what the shim's bookkeeping costs), "
            f"{shim['shim_cpu_us']:.0f} µs with a "
            f"{results.latencies.of('dynamodb') * 1000:g} ms latency, of which "
            f"{shim['sleep_cpu_us']:.0f} µs is the `sleep` call; the rest is the thread "
            "waking with cold caches, as after any network wait. Wall time per call: "
            f"{shim['bare_wall_ms']:.2f} ms, {shim['hooks_wall_ms']:.2f} ms, "
            f"{shim['shim_wall_ms']:.2f} ms.",
        ]
    return [*lines, ""]


def _goals(results: Results) -> list[str]:
    """Each goal of the issue against this run, with the measured cause of a miss."""
    rows: list[tuple[str, ...]] = [("goal (issue 24)", "measured here", "met", "measured cause")]
    one = _batch(results.batches, "memory", True, max(results.scale.batch_rows), 1)
    if one is not None:
        steps = []
        for name, target in zip(one.chain, one.chain_targets, strict=False):
            service, _, operation = name.partition(".")
            if service == "dynamodb":
                kind = what(Call(service, operation, 0.0, 0.0, 0.0, target=target))
                for article in ("the list ", "a list ", "a frozen list ", "an ", "a ", "the "):
                    kind = kind.removeprefix(article)
                steps.append(f"{operation} ({kind})")
            else:
                steps.append(f"the {service.capitalize()} read")
        rows.append(
            (
                "<= 6 sequential round trips, 1-change batch",
                f"{one.median_round_trips:.0f} at {one.rows:,} rows",
                _met(one.median_round_trips <= 6),
                f"{len(steps)} calls one after another (the heads, and the index page and "
                "chunk the patch needs, are read while Supabase answers): " + ", ".join(steps),
            )
        )
    patch_vs_full = _patch_vs_full_read(results)
    if patch_vs_full is not None:
        patch, full, size = patch_vs_full
        rows.append(
            (
                f"patch path at {size:,} rows no slower than the full-read design",
                f"x{patch / full:.2f} ({patch:.3f} s against {full:.3f} s)",
                _met(patch <= full),
                ""
                if patch <= full
                else "the patch's sequential round trips outweigh re-reading the whole table",
            )
        )
    default = _visibility_run(results.visibility, "trickle", 0.0)
    if default is not None:
        rows.append(
            (
                "change to visible p50: item <= 75 ms, list <= 100 ms",
                f"window 0: {default.p('item', 0.5):.0f} ms, {default.p('list', 0.5):.0f} ms",
                _met(default.p("item", 0.5) <= 75 and default.p("list", 0.5) <= 100),
                "the item waits on the webhook, SendMessage, the poll, the Supabase read and "
                "its write (65 ms of model, then CPU and late wake-ups on a loaded machine); "
                "the list on one step more, the head switch (the nodes it patches were read "
                "while Supabase answered), then the read API's head, index page and chunk "
                "(80 ms of model)" + _window_note(),
            )
        )
    figures = results.fills
    if figures is not None and figures.sizes:
        largest = figures.sizes[-1]
        cpu_row = (largest.figures["cpu_s"] - largest.figures["service_cpu_s"]) / largest.rows
        rows.append(
            (
                f"fill of {largest.rows:,} rows <= 10 min",
                f"{largest.seconds / 60:.1f} min",
                _met(largest.seconds <= 600),
                f"CPU: {cpu_row * 1000:.2f} ms a row in one process (a first fill puts 25 rows "
                f"a BatchWriteItem): >= {largest.rows * cpu_row / 60:.0f} min on a whole core",
            )
        )
        units = largest.units_per_kb
        by_kind = largest.figures.get("write_units_by_kind") or {}
        kb = largest.figures["row_bytes"] / 1024
        rows.append(
            (
                "<= 1.5 write units per KB of row data",
                f"{units:.2f}" if units is not None else "-",
                _met(units is not None and units <= 1.5),
                f"every row is written twice, its item ({by_kind.get('row', 0) / kb:.2f}) and "
                f"the list's chunk ({by_kind.get('chunk', 0) / kb:.2f}), each billed per "
                "started KB; zlib keeps about two thirds of these rows' JSON",
            )
        )
        rows.append(
            (
                "RSS growth <= 100 MB",
                f"{largest.rss_growth_mb:.0f} MB",
                _met(largest.rss_growth_mb <= 100),
                "",
            )
        )
    if figures is not None and figures.writers and figures.sizes:
        one_thread, pool = figures.writers[0], figures.writers[-1]
        largest = figures.sizes[-1]
        cpu_row = (largest.figures["cpu_s"] - largest.figures["service_cpu_s"]) / largest.rows
        latency = results.latencies.of("dynamodb") / PUTS_PER_CALL
        rows.append(
            (
                f"writer pool at {pool.workers} >= x8 one thread",
                f"x{pool.rows_per_s / one_thread.rows_per_s:.1f}",
                _met(pool.rows_per_s / one_thread.rows_per_s >= 8),
                f"one core for all threads: at {cpu_row * 1000:.2f} ms of CPU a row (and "
                f"{latency * 1000:.2f} ms of a put's latency) no pool beats one thread by "
                f"more than x{(latency + cpu_row) / cpu_row:.1f}",
            )
        )
    memory = results.template_memory or (results.memory_choice or 0)
    for webhooks in sorted({outcome.webhooks for outcome in results.bursts}):
        cases = [
            outcome
            for outcome in results.bursts
            if (outcome.webhooks, outcome.memory_mb, outcome.timeout_s) == (webhooks, memory, 1.0)
        ]
        if not cases or results.receiver is None:
            continue
        worst = max(cases, key=lambda outcome: outcome.p(0.99))
        headroom = min(
            results.runtime_init_limits.get(f"{memory}/{webhooks}/{outcome.pattern}", 0.0)
            for outcome in cases
        )
        passed = all(_passes(outcome) for outcome in cases)
        rows.append(
            (
                f"{webhooks:,}-row insert: all 2xx within 1 s, p99 < 1 s",
                f"at {memory:,} MB: p99 {worst.p(0.99):.0f} ms, "
                f"{min(o.answered_in_time for o in cases):,}/{webhooks:,} in time",
                _met(passed),
                f"cold starts: {worst.cold_starts}, each import + first call "
                f"{_cold_ms(results, memory):.0f} ms at {share_of(memory):.3f} vCPU; "
                f"{headroom * 1000:.0f} ms left for the runtime's own start",
            )
        )
    if results.imports:
        base = results.imports["boto3"]
        for module, goal in (
            ("receiver.handler", 1.5),
            ("reader.handler", 2.0),
            ("consumer.handler", 2.5),
        ):
            ratio = results.imports[module] / base
            costs = results.import_costs.get(module)
            heaviest = (
                ", ".join(
                    f"{c.package} {c.self_ms:.0f} ms"
                    for c in costs.packages[:3]
                    if c.package != "waituntil"
                )
                if costs
                else ""
            )
            rows.append(
                (
                    f"{module} import <= {goal}x boto3",
                    f"{ratio:.2f}x",
                    _met(ratio <= goal),
                    heaviest,
                )
            )
    return [
        "### Goals against this run",
        "",
        _fenced(table(rows)),
        "",
        "The sections below give each figure beside what moto alone said; the figures of "
        "the code before its critical path was cut (issue 24) are in the section after "
        'this one, "Before and after the cut".',
        "",
    ]


def _window_note() -> str:
    """What the template's default batching window adds to a change's time to visible."""
    from local.template import load_template

    default = load_template()["Parameters"]["ConsumerBatchingWindowSeconds"]["Default"]
    if not float(default):
        return " (the template's default window is 0 s)"
    return f"; the template's default window ({default} s) adds up to its length"


def _passes(outcome: BurstOutcome) -> bool:
    return outcome.all_in_time and outcome.p(0.99) < 1000


def _critical_path(results: Results) -> list[str]:
    if not results.batches:
        return []
    rows: list[tuple[str, ...]] = [
        (
            "rows",
            "changes",
            "DynamoDB",
            "model s",
            "no latency s",
            "CPU s",
            "calls (median)",
            "sequential round trips",
            "latency on them",
            "implied by time",
        )
    ]
    from bench.critical_path import latency_paid_round_trips

    for figures in results.batches:
        if not figures.latency:
            continue
        bare = _batch(results.batches, figures.backend, False, figures.rows, figures.changes)
        calls = ", ".join(f"{s} {n:g}" for s, n in figures.median_calls().items())
        implied = latency_paid_round_trips(figures, bare) if bare is not None else float("nan")
        rows.append(
            (
                f"{figures.rows:,}",
                str(figures.changes),
                figures.backend,
                f"{figures.median_s:.3f}",
                f"{bare.median_s:.3f}" if bare is not None else "-",
                f"{figures.median_cpu_s:.3f}",
                calls,
                f"{figures.median_round_trips:.0f}",
                f"{figures.median_chain_model_s * 1000:.0f} ms",
                f"{implied:.1f}",
            )
        )
    lines = [
        "### The critical path of a warm batch",
        "",
        "The consumer's real handler, warm (clients made, secrets read, one batch before), "
        "for a batch of single-row updates committed just before; median of "
        f"{min(len(f.seconds) for f in results.batches)} or more batches each. DynamoDB: "
        "`memory` is the model's service, `moto` moto's backend behind the same shim (its "
        "own CPU added: what the benchmarks measured before). **Sequential round trips**: "
        "the calls on the critical path: of the chains of calls each of which began after "
        "the previous one ended, the one that waited longest under the model "
        "(`bench.latency.critical_chain`, each call weighed by its latency; parallel calls "
        "count once, and a branch that ended early with time to spare, such as a read ahead "
        "while Supabase answers, is not on it). **Implied by time**: "
        "the batch's time under the model less its time without latency, over the mean "
        "latency of the calls on that chain. **CPU s**: the process's CPU during the batch "
        "under the model (moto's own included on its rows).",
        "",
        _fenced(table(rows)),
        "",
    ]
    example = _batch(results.batches, "memory", True, results.batches[0].rows, 1)
    if example is not None:
        steps = [
            f"{_short(name)} ({'1 item' if target == '1 items' else target})"
            if target
            else _short(name)
            for name, target in zip(example.chain, example.chain_targets, strict=False)
        ]
        lines += [
            f"The chain of a 1-change batch at {example.rows:,} rows, in order: "
            + " → ".join(steps)
            + ".",
            "",
        ]
    patch_vs_full = _patch_vs_full_read(results)
    if patch_vs_full is not None:
        patch, full, size = patch_vs_full
        from bench.critical_path import FULL_READ_CHANGES

        lines += [
            f"The design the patchable list replaced (`bench/full_read_baseline.py`: every "
            "batch re-reads the whole table and rewrites every chunk), on the same stack "
            f"behind the same shim, {FULL_READ_CHANGES}-change batches at {size:,} rows, "
            f"median of {len(getattr(results, 'full_read_s', []))}: {full:.3f} s, against "
            f"the patch path's {patch:.3f} s (x{patch / full:.2f}). Without latency, on "
            'moto, the patch was the slower of the two (`make bench-scale`, "Consumer at '
            "scale\"): moto's CPU per call, not round trips, was what that measured.",
            "",
        ]
    return lines


def _patch_vs_full_read(results: Results) -> tuple[float, float, int] | None:
    """The patch path's 10-change batch against the full-read design's, at the smallest size
    (medians, seconds), or None when this run did not measure both."""
    from bench.critical_path import FULL_READ_CHANGES

    full = getattr(results, "full_read_s", [])  # absent from runs saved before it was measured
    if not results.batches or not full:
        return None
    size = min(figures.rows for figures in results.batches if figures.backend == "memory")
    patch = _batch(results.batches, "memory", True, size, FULL_READ_CHANGES)
    if patch is None:
        return None
    return patch.median_s, statistics.median(full), size


def _breakdown(results: Results) -> list[str]:
    if not results.breakdown:
        return []
    start = results.breakdown[0].started
    rows: list[tuple[str, ...]] = [("#", "who", "call", "what", "starts at", "takes", "model")]
    for index, call in enumerate(results.breakdown, start=1):
        rows.append(
            (
                str(index),
                leg(call),
                f"{call.service} {call.operation}",
                what(call),
                f"{(call.started - start) * 1000:.0f} ms",
                f"{(call.ended - call.started) * 1000:.1f} ms",
                f"{results.latencies.of(call.service) * 1000:g} ms",
            )
        )
    total = (results.breakdown[-1].ended - start) * 1000
    nominal = sum(results.latencies.of(c.service) for c in results.breakdown) * 1000
    return [
        "### One change, round trip by round trip",
        "",
        "One update, each leg after the other, warm functions, batching window 0 "
        f"({results.scale.visibility_rows:,} rows): the webhook, the receiver, Lambda's "
        "poller, the consumer, then the read API reading the item and the list's first page. "
        "The critical path: the chain of calls that waited longest on one another (what ran "
        "beside it, such as reads ahead while Supabase answers, is not on it):",
        "",
        f"![one change, round trip by round trip](benchmarks/{BREAKDOWN_PLOT})",
        "",
        _fenced(table(rows)),
        "",
        f"{len(results.breakdown)} sequential round trips, {nominal:.0f} ms of modelled "
        f"latency, {total:.0f} ms from the webhook to the last read (CPU, and sleeps that "
        "overrun on a shared machine, make the difference). A batching window adds up to "
        "its length before the consumer's part.",
        "",
    ]


def _visibility(results: Results) -> list[str]:
    if not results.visibility:
        return []
    rows: list[tuple[str, ...]] = [
        (
            "workload",
            "window",
            "window starts",
            "item p50",
            "item p95",
            "list p50",
            "list p95",
            "Supabase req/change",
            "invocations",
            "mean batch",
            "lost head switches",
            "failed records",
        )
    ]
    for run in [*results.visibility, *results.moto_visibility]:
        mean = sum(run.batch_sizes) / max(len(run.batch_sizes), 1)
        rows.append(
            (
                f"{run.workload} ({run.changes:,})",
                f"{run.window_s:g} s",
                run.window_from if run.window_s else "-",
                f"{run.p('item', 0.5):.0f} ms",
                f"{run.p('item', 0.95):.0f} ms",
                f"{run.p('list', 0.5):.0f} ms",
                f"{run.p('list', 0.95):.0f} ms",
                f"{run.supabase_per_change:.2f}",
                str(run.invocations),
                f"{mean:.1f}",
                str(run.lost_switches),
                str(run.failed_deliveries),
            )
        )
    trickle = results.scale.trickle
    item_ms, list_ms = results.reader_ms
    return [
        "### Change to visible, and the batching window",
        "",
        "From the commit in Supabase to the read API answering the new version: real "
        "receiver, consumer and (for its own time) reader handlers in process, everything "
        f"under the model, at {results.scale.visibility_rows:,} rows "
        "(`bench/visibility.py`). The trickle is "
        f"{trickle['changes']:.0f} updates at random, about {trickle['per_second']:g} a "
        f"second (Poisson); the burst a {results.scale.burst_rows:,}-row insert, its webhooks "
        "sent at pg_net's 200 a second. Lambda's SQS poller is modelled: five pollers (what "
        "Lambda starts with, and the template's `ConsumerMaximumConcurrency`), each long-"
        "polling; a delivered batch costs one SQS round trip; batch size 10 without a window "
        "(Lambda's rule), the template's 50 with one. Where the window starts: the local "
        "poller (and Lambda's SQS page) let a lone message wait out the whole window "
        "(`first-message`); Lambda's event source mapping page says the next window begins "
        "when the previous invocation completes (`previous-invocation`). Both are measured "
        "for the trickle. The read API's own answer, median under the model, is added: "
        f"{item_ms:.0f} ms for an item, {list_ms:.0f} ms for the list's first page.",
        "",
        _fenced(table(rows)),
        "",
        "Lost head switches: a consumer's conditional switch of the list head that another "
        "consumer won, so it read and planned again (`ListPublishRetries`). Failed records: "
        "records of invocations that failed (a publish that lost 12 races in a row fails "
        "its table's records with `ListContended`); the consumer makes such a record "
        "visible again after a short jittered delay (`ChangeMessageVisibility`, "
        "`waituntil/sync/retry.py`), which the modelled queue honours; a failed record whose "
        "visibility was not shortened comes back after the queue's visibility timeout, and "
        "its change-to-visible counts the template's 660 s. The last rows are "
        f"the same trickle at window 0 with DynamoDB on moto at {results.scale.moto_rows:,} "
        "rows: behind the model's latency (`moto + model`: moto's CPU added to it), and with "
        "no latency anywhere (`moto alone`: what the benchmarks measured before this model, "
        "without the read API's time).",
        "",
    ]


def _fills(results: Results) -> list[str]:
    figures = results.fills
    if figures is None:
        return []
    rows: list[tuple[str, ...]] = [
        (
            "rows",
            "seconds",
            "rows/s",
            "invocations",
            "DynamoDB calls",
            "write units",
            "WU per KB",
            "CPU s (stand-in's)",
            "RSS growth",
        )
    ]
    for fill in figures.sizes:
        rows.append(_fill_row(fill))
    sweep: list[tuple[str, ...]] = [("writers", "rows/s", "x one thread", "seconds", "CPU s")]
    base = figures.writers[0].rows_per_s if figures.writers else 1.0
    for fill in figures.writers:
        sweep.append(
            (
                str(fill.workers),
                f"{fill.rows_per_s:,.0f}",
                f"x{fill.rows_per_s / base:.1f}",
                f"{fill.seconds:.1f}",
                f"{fill.figures['cpu_s']:.1f}",
            )
        )
    lines = [
        "### First fill at scale",
        "",
        "One webhook on an empty cache, then the full sync it starts, each invocation with "
        "the consumer's 60 s, in a child process of its own (`bench/fill_child.py`) so that "
        "its peak memory is the fill's; DynamoDB and Supabase are the model's services "
        "(their data outside the process's heap). Write units as DynamoDB bills them (the "
        "larger of the item before and after, per started KB); KB of row data is the rows' "
        "JSON. CPU is the whole process's, of which the stand-in services' own in brackets "
        "(on AWS that part runs elsewhere).",
        "",
        f"![fill time against rows](benchmarks/{FILL_PLOT})",
        "",
        _fenced(table(rows)),
        "",
    ]
    if figures.moto:
        moto_rate = figures.moto[-1].rows_per_s
        lines += [
            f"What moto would have said: the same fill of {figures.moto[-1].rows:,} rows on "
            f"moto (no latency) ran at {moto_rate:,.0f} rows/s, which puts "
            f"1,000,000 rows at {1_000_000 / moto_rate / 3600:.1f} hours.",
            "",
        ]
    lines += [
        f"The row writer's pool: a fill of {figures.writers[0].rows:,} rows at each pool "
        "size (the consumer's own is 16):"
        if figures.writers
        else "",
        "",
        f"![fill rows/s against writers](benchmarks/{WRITERS_PLOT})",
        "",
        _fenced(table(sweep)),
        "",
    ]
    if len(figures.moto) == 2:
        one, pool = figures.moto
        lines += [
            f"On moto without latency the same pool gains x{pool.rows_per_s / one.rows_per_s:.1f} "
            f"({one.rows_per_s:,.0f} and {pool.rows_per_s:,.0f} rows/s at {one.rows:,} rows): "
            "moto's CPU, not the network, was what it measured.",
            "",
        ]
    lines += _fill_causes(results)
    return lines


def _fill_row(fill: Fill) -> tuple[str, ...]:
    units = fill.figures.get("write_units")
    per_kb = fill.units_per_kb
    return (
        f"{fill.rows:,}",
        f"{fill.seconds:,.1f}",
        f"{fill.rows_per_s:,.0f}",
        str(fill.figures["invocations"]),
        f"{fill.figures['calls'].get('dynamodb', 0):,}",
        f"{units:,}" if units is not None else "-",
        f"{per_kb:.2f}" if per_kb is not None else "-",
        f"{fill.figures['cpu_s']:.0f} ({fill.figures['service_cpu_s']:.0f})",
        f"{fill.rss_growth_mb:.0f} MB",
    )


# Rows a first fill puts in one BatchWriteItem (``adapters/cache_store``): a call's latency
# is shared by that many rows.
PUTS_PER_CALL = 25


def _fill_causes(results: Results) -> list[str]:
    figures = results.fills
    if figures is None or not figures.sizes:
        return []
    largest = figures.sizes[-1]
    rows = largest.rows
    cpu = largest.figures["cpu_s"]
    service = largest.figures["service_cpu_s"]
    calls = largest.figures["calls"].get("dynamodb", 0)
    per_cpu_s = rows / max(cpu - service, 1e-9)  # the stand-ins' CPU is not the consumer's
    lambda_share = 1024 / 1769
    lines = [
        f"Where the fill's time goes. **CPU**: the process used {cpu:,.0f} s of CPU for "
        f"{largest.seconds:,.0f} s of fill ({cpu / largest.seconds:.0%} of one core): "
        f"{cpu / rows * 1000:.2f} ms a row, {service / rows * 1000:.2f} ms of it the "
        f"stand-in services' (on AWS that runs elsewhere), for {calls / rows:.2f} DynamoDB "
        "calls a row (a first fill puts its rows 25 to a BatchWriteItem under its journal, "
        "and reads no item back; a RESYNC of a complete list writes one conditional "
        "UpdateItem per row that differs). Python runs one thread of a "
        "process at a time, so that CPU bounds one consumer whatever the network: at "
        f"{per_cpu_s:,.0f} rows per CPU second, {rows:,} rows take at least "
        f"{rows / per_cpu_s / 60:.0f} minutes on one whole core of this machine, and "
        f"{rows / per_cpu_s / lambda_share / 60:.0f} on the 0.58 vCPU of a 1,024 MB "
        "Lambda (at this machine's speed per core).",
    ]
    calls_all = sum(largest.figures["calls"].values())
    nominal = sum(
        results.latencies.of(name) * count
        for name, count in largest.figures["calls"].items()
        if name in results.latencies.seconds
    )
    waited = largest.figures.get("waited_s", 0.0)
    if calls_all and waited:
        lines.append(
            f"**Waiting**: its {calls_all:,} modelled calls waited "
            f"{waited / calls_all * 1000:.1f} ms each on average where the model says "
            f"{nominal / calls_all * 1000:.1f} ms (a sleeping thread wakes when a CPU is "
            "free for it: the machine's load)."
        )
        delay = largest.figures.get("run_queue_delay_s")
        if delay is not None:
            lines.append(f"Its threads waited {delay:,.0f} s in all for a CPU.")
    latency = results.latencies.of("dynamodb") / PUTS_PER_CALL
    cpu_row = (cpu - service) / rows
    if cpu_row > 0:
        ceiling = (latency + cpu_row) / cpu_row
        lines.append(
            "**The writer pool**: one thread puts 25 rows in a write's latency plus their "
            f"CPU ({latency * 1000:.2f} + {cpu_row * 1000:.2f} ms a row); a pool of any size "
            f"is no faster than the CPU ({cpu_row * 1000:.2f} ms a row on one core), so it "
            f"cannot beat one thread by more than about x{ceiling:.1f}. Batched puts took "
            "most of the latency a pool would hide out of each row: the pool overlaps the "
            "calls of a page, and the CPU per row sets the pace."
        )
    if figures.cpu_floor is not None:
        floor = figures.cpu_floor
        lines.append(
            f"Without any latency a fill of {floor.rows:,} rows ran at "
            f"{floor.rows_per_s:,.0f} rows/s here (CPU alone, on this loaded machine)."
        )
    by_kind = largest.figures.get("write_units_by_kind") or {}
    kb = largest.figures["row_bytes"] / 1024
    if by_kind:
        shares = ", ".join(
            f"{kind} {units / kb:.2f}"
            for kind, units in sorted(by_kind.items(), key=lambda item: -item[1])
        )
        lines.append(
            f"**Write units** per KB of row data, by the kind of item written: {shares}. "
            "Each row is stored twice, as its own item (what `GET /<table>/<id>` reads) and "
            "in a chunk of the list, and DynamoDB bills each write per started KB. Texts "
            "over 512 bytes are stored compressed (zlib keeps about two thirds of these "
            "rows' JSON), so a 1 KB row's item, with its key, etag, position and read time, "
            "is under 1 KB: one unit (two before compression, when only texts over 16 KB "
            "were compressed). Each 64 KB chunk is written whole, again each time a page "
            "patches it. Under 1.5 units per KB would need the two copies together under "
            "1.5 KB a KB of JSON: one copy only, or a compression well beyond zlib's on "
            "such rows."
        )
    out = [" ".join(lines), ""]
    if figures.cpu_places:
        total = sum(ms for _, ms in figures.cpu_places)
        places: list[tuple[str, ...]] = [("where (cProfile self time)", "ms per row", "share")]
        places += [
            (place, f"{ms:.3f}", f"{ms / total:.0%}")
            for place, ms in figures.cpu_places
            if ms / total >= 0.01
        ]
        out += [
            "Where a fill's CPU goes (cProfile of a fill, one writer, no latency; profiling "
            "inflates every figure alike):",
            "",
            _fenced(table(places)),
            "",
        ]
    return out


def _cold_ms(results: Results, memory_mb: int) -> float:
    """A cold start's import and first invocation at a memory's CPU share (init included)."""
    times = results.receiver
    if times is None:
        return float("nan")
    from bench.burst import at_share, first_network_s

    share = share_of(memory_mb)
    return 1000 * (
        at_share(times.import_s, times.import_cpu_s, share, 0.0)
        + at_share(times.first_s, times.first_cpu_s, share, first_network_s(results.latencies))
    )


def _burst(results: Results) -> list[str]:
    times = results.receiver
    if times is None:
        return []
    from bench.burst import (
        MEMORY_SIZES,
        RUNTIME_START_S,
        on_demand_usd_per_million,
        provisioned_monthly_usd,
        snapstart_monthly_usd,
    )

    rows: list[tuple[str, ...]] = [
        (
            "memory",
            "webhooks",
            "pg_net sends",
            "timeout",
            "2xx in time",
            "late (queued)",
            "lost",
            "cold starts",
            "p50",
            "p99",
            "max",
        )
    ]
    for outcome in results.bursts:
        rows.append(
            (
                f"{outcome.memory_mb:,} MB" if outcome.memory_mb else f"{outcome.cpu_share:.3f}",
                f"{outcome.webhooks:,}",
                "200/s" if outcome.pattern == "steady" else "200 at once /s",
                f"{outcome.timeout_s:g} s",
                f"{outcome.answered_in_time:,}",
                f"{outcome.late:,}",
                f"{outcome.lost:,}",
                f"{outcome.cold_starts:,}",
                f"{outcome.p(0.5):.0f} ms",
                f"{outcome.p(0.99):.0f} ms",
                f"{outcome.p(1.0):.0f} ms",
            )
        )
    levers: list[tuple[str, ...]] = [
        (
            "memory",
            "vCPU",
            "cold start (import + first call)",
            "left for the runtime's start",
            "if the init phase ran at a full core",
            "provisioned environments to pass",
            "their monthly cost",
            "on demand, per million webhooks",
        )
    ]
    for memory_mb in MEMORY_SIZES:
        names = [
            f"{memory_mb}/{webhooks}/{pattern}"
            for webhooks in (1_000, 10_000)
            for pattern in ("steady", "batches")
        ]
        limits = [results.runtime_init_limits.get(name) for name in names]
        boosted = [results.runtime_init_limits.get(f"{name}/boosted") for name in names]
        needed = [results.provisioned.get(name) for name in names]
        if any(value is None for value in limits):
            continue
        most = None if any(n is None for n in needed) else max(n or 0 for n in needed)
        levers.append(
            (
                f"{memory_mb:,} MB",
                f"{share_of(memory_mb):.3f}",
                f"{_cold_ms(results, memory_mb):.0f} ms",
                f"{min(v or 0.0 for v in limits) * 1000:.0f} ms",
                f"{min(v or 0.0 for v in boosted) * 1000:.0f} ms",
                "none" if most == 0 else "not reached" if most is None else str(most),
                f"${provisioned_monthly_usd(most, memory_mb):,.2f}" if most else "-",
                f"${on_demand_usd_per_million(times, memory_mb, results.latencies):.2f}",
            )
        )
    warm = times.as_dict()
    chosen = results.memory_choice
    choice = (
        f"The smallest memory that leaves {RUNTIME_START_S * 1000:.0f} ms for the runtime's own "
        f"start in every case: **{chosen:,} MB**"
        if chosen
        else "No memory up to 1,769 MB leaves "
        f"{RUNTIME_START_S * 1000:.0f} ms for the runtime's own start in every case"
    )
    template = (
        f"; the template's `MemorySize` for the receiver is {results.template_memory:,} MB"
        if results.template_memory
        else ""
    )
    snap = snapstart_monthly_usd(chosen or MEMORY_SIZES[0], restores=10_000)
    return [
        "### A burst answered in time",
        "",
        "Inputs measured here: the receiver's warm service time (its real handler, "
        f"{len(times.warm_s)} webhooks, `SendMessage` to moto's SQS behind the shim): p50 "
        f"{warm['warm_p50_ms']:.1f} ms, p99 {warm['warm_p99_ms']:.1f} ms; its cold start "
        "in fresh interpreters as on Lambda (`bench/cold_child.py`, `bench/lambda_site.py`: "
        "the layer's packages alone, the runtime's Python): "
        f"`import receiver.handler` {times.import_s * 1000:.0f} ms "
        f"({times.import_cpu_s * 1000:.0f} ms CPU), then the first invocation "
        f"{times.first_s * 1000:.0f} ms ({times.first_cpu_s * 1000:.0f} ms CPU: clients "
        "made, the secret read, one `SendMessage`). Modelled (`bench/burst.py`): pg_net at "
        "200 requests/s, steady or in rounds of 200 at once, never retrying; API Gateway's "
        "stage throttle from the template (200/s, burst 400); Lambda scaling by 1,000 "
        "environments per 10 s per function within the account's 1,000, a request with no "
        "idle environment starting one (a cold start). CPU runs at the receiver's share of a "
        "vCPU for its memory (Lambda gives 1,769 MB one vCPU), the init phase included, as "
        "AWS documents it. The managed runtime's own start (before our imports) is not in "
        "these figures.",
        "",
        _fenced(table(rows)),
        "",
        "Late webhooks are not lost: the receiver still queues them, but pg_net records a "
        "timeout. The levers, each case's worst (1,000 and 10,000 webhooks, both patterns, "
        "SQL's 1 s timeout): how much time is left for the runtime's own start with every "
        "webhook still answered in time, the same if the init phase ran unthrottled (observed "
        "by others, not documented by AWS), and the provisioned environments that would pass "
        "without more memory:",
        "",
        _fenced(table(levers)),
        "",
        choice + template + ". Memory costs nothing while no webhook arrives, where "
        "provisioned concurrency is billed every second; SnapStart (Python 3.12+) would add "
        f"about ${snap:,.2f} a month at that memory (its cache, and 10,000 restores) and "
        "needs published versions behind an alias, and its restore time could not be "
        "measured here.",
        "",
    ]


def _imports(results: Results) -> list[str]:
    if not results.imports:
        return []
    runs = getattr(results, "import_runs", None) or {
        "": {m: (s, s) for m, s in results.imports.items()}
    }
    header: list[str] = ["import (fresh interpreter)"]
    for version in runs:
        header += [f"CPU s {version}", "x boto3", f"wall s {version}", "x boto3"]
    rows: list[tuple[str, ...]] = [tuple(header)]
    for module in results.imports:
        row = [module]
        for times in runs.values():
            (wall, cpu), (base_wall, base_cpu) = times[module], times["boto3"]
            row += [f"{cpu:.3f}", f"{cpu / base_cpu:.2f}", f"{wall:.3f}", f"{wall / base_wall:.2f}"]
        rows.append(tuple(row))
    versions = [version for version in runs if version]
    lines = [
        "### Cold starts: what the imports cost",
        "",
        "Medians of fresh interpreters against `import boto3`, interleaved in the same run, "
        "each as on Lambda (`bench/lambda_site.py`: only the layer's pinned packages and the "
        "runtime's boto3 on the path, Lambda's environment variables, so X-Ray and Powertools "
        "behave as there, tracing on; bytecode written beforehand, as `make build` ships it)"
        + (f", with Python {' and '.join(versions)} (the runtime's first)" if versions else "")
        + ". CPU time is what the goals are read on: on this shared machine the wall time "
        "also counts the waits for a CPU. Then `python -X importtime` (the runtime's Python, "
        "median of runs) summed by top-level package, with the project module that first "
        "imports each: what is left to cut.",
        "",
        _fenced(table(rows)),
        "",
    ]
    for module, costs in results.import_costs.items():
        package_rows: list[tuple[str, ...]] = [
            ("package", "self ms", "modules", "first imported by")
        ]
        package_rows += [
            (cost.package, f"{cost.self_ms:.0f}", str(cost.modules), cost.brought_by or "-")
            for cost in costs.packages
        ]
        own = ", ".join(f"{name} {ms:.0f} ms" for name, ms in costs.own[:5])
        lines += [
            f"`{module}`:",
            "",
            _fenced(table(package_rows)),
            "",
            f"Its own modules, by self time: {own}.",
            "",
        ]
    return lines


# ----- plots -------------------------------------------------------------------------------------


def _plot_breakdown(results: Results, path: Path) -> Path:
    calls = results.breakdown
    start = calls[0].started
    figure, axes = plt.subplots(figsize=(8, 0.32 * len(calls) + 1.4))
    for row, call in enumerate(calls):
        left = (call.started - start) * 1000
        width = (call.ended - call.started) * 1000
        axes.barh(row, width, left=left, color=COLOURS.get(call.service, "#444444"))
        axes.annotate(
            f"{width:.0f} ms",
            (left + width, row),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
        )
    labels = [f"{leg(c)}: {c.operation}" + (f" ({what(c)})" if what(c) else "") for c in calls]
    axes.set_yticks(range(len(calls)), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("ms since the webhook was sent (each bar: one call, its wait and CPU)")
    axes.set_title("One change under the model, round trip by round trip (window 0)")
    present = [service for service in COLOURS if any(c.service == service for c in calls)]
    handles = [Rectangle((0, 0), 1, 1, color=COLOURS[service]) for service in present]
    axes.legend(handles, present, fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _plot_writers(results: Results, path: Path) -> Path:
    figures = results.fills
    assert figures is not None
    figure, axes = plt.subplots(figsize=(7, 3.6))
    workers = [fill.workers for fill in figures.writers]
    rates = [fill.rows_per_s for fill in figures.writers]
    axes.plot(workers, rates, marker="o", label="model (memory services + latency)")
    if figures.writers:
        axes.plot(
            workers,
            [rates[0] * w for w in workers],
            linestyle=":",
            color="#888888",
            label="x writers (the network alone)",
        )
    if figures.moto:
        axes.plot(
            [fill.workers for fill in figures.moto],
            [fill.rows_per_s for fill in figures.moto],
            marker="s",
            label="moto, no latency (what it said)",
        )
    if figures.cpu_floor is not None:
        axes.axhline(
            figures.cpu_floor.rows_per_s,
            color="#c94f4f",
            linestyle="--",
            linewidth=1,
            label="no latency at all (CPU ceiling)",
        )
    axes.set_xscale("log", base=2)
    axes.set_xticks(workers, [str(w) for w in workers])
    ceiling = figures.cpu_floor.rows_per_s if figures.cpu_floor else 0.0
    axes.set_ylim(0, max([*rates, ceiling]) * 1.3)
    axes.set_xlabel("row writer threads")
    axes.set_ylabel("fill rows/s")
    axes.set_title("A first fill's rows/s against the row writer's pool")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _plot_fill_rows(results: Results, path: Path) -> Path:
    figures = results.fills
    assert figures is not None
    figure, axes = plt.subplots(figsize=(7, 3.8))
    rows = [fill.rows for fill in figures.sizes]
    seconds = [fill.seconds for fill in figures.sizes]
    axes.plot(rows, seconds, marker="o", label="model, measured")
    if figures.moto:
        rate = figures.moto[-1].rows_per_s
        axes.plot(rows, [r / rate for r in rows], linestyle=":", label="moto's rate, extrapolated")
    axes.axhline(600, color="#c94f4f", linestyle="--", linewidth=1, label="goal: 10 minutes")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("rows")
    axes.set_ylabel("seconds")
    axes.set_title("First fill time against the table's rows")
    for r, s in zip(rows, seconds, strict=True):
        label = f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"
        axes.annotate(label, (r, s), xytext=(4, -10), textcoords="offset points", fontsize=7)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# ----- helpers -----------------------------------------------------------------------------------


def _batch(
    batches: Sequence[BatchFigures], backend: str, latency: bool, rows: int, changes: int
) -> BatchFigures | None:
    for figures in batches:
        if (figures.backend, figures.latency, figures.rows, figures.changes) == (
            backend,
            latency,
            rows,
            changes,
        ):
            return figures
    return None


def _visibility_run(
    runs: Sequence[VisibilityRun], workload: str, window: float
) -> VisibilityRun | None:
    for run in runs:
        if run.workload == workload and run.window_s == window:
            return run
    return None


def leg(call: Call) -> str:
    """Who made a call of one change's round trip: which function, or the model's legs."""
    for prefix, name in (
        ("receiver", "receiver"),
        ("consumer", "consumer"),
        ("reader", "read API"),
    ):
        if call.tag.startswith(prefix):
            return name
    if call.service == "webhook":
        return "pg_net"
    if call.service == "sqs":
        return "Lambda's poller"
    return call.service


def _short(name: str) -> str:
    service, _, operation = name.partition(".")
    return operation if service == "dynamodb" else f"{service} {operation}"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _fenced(text: str) -> str:
    return f"```\n{text}\n```"
