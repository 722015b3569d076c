"""The benchmark report: docs/BENCHMARKS.md, the raw figures as CSV, and PNG plots."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import matplotlib.pyplot as plt

from bench.cold_start import rows_of as cold_start_rows
from bench.common import percentile, table
from bench.receiver import AckSamples
from bench.receiver import rows_of as receiver_rows

CSV_NAME = "figures.csv"
ACK_PLOT = "ack_latency.png"
COLD_START_PLOT = "cold_start.png"


@dataclass(frozen=True)
class Report:
    when: datetime
    machine: str
    quick: bool
    imports: dict[str, float]  # module -> median seconds
    ack: AckSamples
    consumer_text: str  # the consumer benchmark's own tables
    reader_rows: list[tuple[str, ...]]


def write_report(report: Report, out: Path) -> list[Path]:
    """BENCHMARKS.md in ``out``, figures.csv and the plots in ``out/benchmarks``."""
    figures = out / "benchmarks"
    figures.mkdir(parents=True, exist_ok=True)
    plt.switch_backend("Agg")  # files only: no display needed
    written = [
        _write_csv(report, figures / CSV_NAME),
        _plot_ack(report.ack, figures / ACK_PLOT),
        _plot_cold_start(report.imports, figures / COLD_START_PLOT),
    ]
    markdown = out / "BENCHMARKS.md"
    kept = kept_sections(markdown.read_text()) if markdown.exists() else ""
    markdown.write_text(render_markdown(report) + kept)
    return [markdown, *written]


# Sections other commands write (``make bench-latency``, ``make bench-heal``), or a person wrote
# beside them: ``make bench`` keeps them as they are.
KEPT_SECTIONS = (
    "## Under network latency\n",
    "## Before and after the cut\n",  # written by hand beside the latency run's figures
    "## Healing lost webhooks\n",
)


def kept_sections(text: str) -> str:
    """The sections of an existing report that ``make bench`` does not write, verbatim."""
    kept = ""
    for heading in KEPT_SECTIONS:
        start = text.find(heading)
        if start != -1:
            end = text.find("\n## ", start + len(heading))
            kept += "\n" + text[start : end if end != -1 else len(text)].rstrip("\n") + "\n"
    return kept


def headline(report: Report) -> dict[str, float]:
    """The ratios the docs quote: dimensionless, so they travel between machines."""
    ack = report.ack
    return {
        "ack_over_send_message_p50": percentile(ack.receiver_handler, 0.5)
        / percentile(ack.bare_send_message, 0.5),
        "receiver_import_over_boto3": report.imports["receiver.handler"] / report.imports["boto3"],
        "reader_import_over_boto3": report.imports["reader.handler"] / report.imports["boto3"],
        "consumer_import_over_boto3": report.imports["consumer.handler"] / report.imports["boto3"],
    }


def render_markdown(report: Report) -> str:
    ratios = headline(report)
    ack = report.ack
    extra_ms = (
        percentile(ack.receiver_handler, 0.5) - percentile(ack.bare_send_message, 0.5)
    ) * 1000
    kind = "`make bench-quick` (short run)" if report.quick else "`make bench`"
    return f"""# Benchmarks

Written by {kind} on {report.when:%Y-%m-%d %H:%M} UTC ({report.machine}); AWS is moto in
process, Supabase the local one on PostgreSQL. Absolute times are this machine's and moto's; the
**ratios** compare two things measured in the same run, interleaved, and are what to read.
Raw figures: [benchmarks/{CSV_NAME}](benchmarks/{CSV_NAME}).

## Headline

- Acknowledging a webhook (the receiver's whole handler: secret check, validation, \
`send_message`) takes **{ratios["ack_over_send_message_p50"]:.2f}x** a bare `send_message` at \
the median: the handler adds {extra_ms:.2f} ms to the queue write under it.
- Cold-start imports against `import boto3` (the floor of any Python Lambda calling AWS): \
receiver **{ratios["receiver_import_over_boto3"]:.2f}x**, \
reader **{ratios["reader_import_over_boto3"]:.2f}x**, \
consumer **{ratios["consumer_import_over_boto3"]:.2f}x**.
- The consumer's cost per change against the table's size, and fills: see \
[Consumer at scale](#consumer-at-scale).

## Acknowledgement latency

![receiver handler against the bare send_message](benchmarks/{ACK_PLOT})

{_fenced(table(receiver_rows(ack)))}

## Cold start

Median CPU time of fresh interpreters importing each module as on Lambda (the layer's packages
alone, Lambda's environment variables, the runtime's Python version: `bench/lambda_site.py`):
a Lambda cold start's init phase, less the runtime's own start.

![handler imports against import boto3](benchmarks/{COLD_START_PLOT})

{_fenced(table(cold_start_rows(report.imports)))}

## Consumer at scale

{report.consumer_text.strip()}

## Reader

{_fenced(table(report.reader_rows))}

Regenerate with `make bench` (a few minutes; `make bench-quick` for a short run that writes to
`.local-data/bench-quick/` instead).
"""


def _fenced(text: str) -> str:
    return f"```\n{text}\n```"


def _write_csv(report: Report, path: Path) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["benchmark", "series", "statistic", "value", "unit"])
        for module, seconds in report.imports.items():
            writer.writerow(["cold_start", module, "median_import_cpu", f"{seconds:.6f}", "s"])
        for series, samples in (
            ("bare_send_message", report.ack.bare_send_message),
            ("receiver_handler", report.ack.receiver_handler),
        ):
            for sample in samples:
                writer.writerow(["acknowledgement", series, "sample", f"{sample * 1000:.4f}", "ms"])
    return path


def _plot_ack(ack: AckSamples, path: Path) -> Path:
    series = {
        "bare send_message\n(the floor)": [s * 1000 for s in ack.bare_send_message],
        "receiver handler\n(the 202)": [s * 1000 for s in ack.receiver_handler],
    }
    figure, axes = plt.subplots(figsize=(7, 3.6))
    axes.boxplot(list(series.values()), orientation="horizontal", showfliers=False, widths=0.5)
    axes.set_yticks([1, 2], list(series))
    for row, values in enumerate(series.values(), start=1):
        p50 = percentile(values, 0.5)
        axes.annotate(f"p50 {p50:.2f} ms", (p50, row + 0.3), ha="center", fontsize=8)
    axes.set_xlabel("ms per request (moto, this machine); whiskers: 1.5 IQR, outliers hidden")
    axes.set_title("Acknowledging a webhook against the bare SQS write under it")
    axes.set_xlim(left=0)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _plot_cold_start(imports: dict[str, float], path: Path) -> Path:
    modules = list(imports)
    seconds = [imports[module] for module in modules]
    figure, axes = plt.subplots(figsize=(7, 3.2))
    bars = axes.barh(modules, seconds, color=["#888888", *["#3b7dd8"] * (len(modules) - 1)])
    axes.invert_yaxis()
    axes.axvline(imports["boto3"], color="#888888", linestyle="--", linewidth=1)
    for bar, value in zip(bars, seconds, strict=True):
        ratio = value / imports["boto3"]
        axes.annotate(
            f"{value:.2f} s  ({ratio:.2f}x boto3)",
            (value, bar.get_y() + bar.get_height() / 2),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    axes.set_xlim(0, max(seconds) * 1.45)
    axes.set_xlabel("median CPU seconds to import in a fresh interpreter, as on Lambda")
    axes.set_title("Cold start: each handler's imports against import boto3")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
