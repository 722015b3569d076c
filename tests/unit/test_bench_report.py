"""The benchmark report from known figures: markdown, CSV and plots."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.receiver import AckSamples
from bench.report import Report, headline, write_report
from tests.conftest import ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _report() -> Report:
    return Report(
        when=datetime(2026, 11, 29, 7, 0, tzinfo=UTC),
        machine="Python 3.11 on test",
        quick=False,
        imports={
            "boto3": 0.2,
            "receiver.handler": 0.5,
            "reader.handler": 0.6,
            "consumer.handler": 0.8,
            "supabase": 0.3,
        },
        ack=AckSamples(bare_send_message=[0.002] * 9, receiver_handler=[0.003] * 9),
        consumer_text="## Consumer\n\nnaive / coalesced: Supabase requests x10.0\n",
        reader_rows=[("per read", "p50 ms"), ("bare get_item", "1.00")],
    )


def test_headline_ratios_divide_figures_of_the_same_run() -> None:
    # Given known figures / When the headline is computed / Then each is a ratio of two of them
    assert headline(_report()) == pytest.approx(
        {
            "ack_over_send_message_p50": 1.5,
            "receiver_import_over_boto3": 2.5,
            "reader_import_over_boto3": 3.0,
            "consumer_import_over_boto3": 4.0,
        }
    )


def test_the_report_has_tables_raw_figures_and_plots(tmp_path: Path) -> None:
    # Given a run's figures
    report = _report()

    # When the report is written
    written = write_report(report, tmp_path)

    # Then BENCHMARKS.md quotes the ratios and links the plots and the CSV
    markdown = (tmp_path / "BENCHMARKS.md").read_text()
    assert "**1.50x** a bare `send_message`" in markdown
    assert "receiver **2.50x**" in markdown
    assert "naive / coalesced: Supabase requests x10.0" in markdown
    for name in (
        "benchmarks/ack_latency.png",
        "benchmarks/cold_start.png",
        "benchmarks/figures.csv",
    ):
        assert f"({name})" in markdown
    # And the CSV holds every raw figure: 5 import medians and 2 x 9 samples
    with (tmp_path / "benchmarks/figures.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 5 + 18
    assert {row["benchmark"] for row in rows} == {"cold_start", "acknowledgement"}
    # And the plots are PNG files
    for plot in ("ack_latency.png", "cold_start.png"):
        assert (tmp_path / "benchmarks" / plot).read_bytes().startswith(PNG_SIGNATURE)
    assert len(written) == 4


def test_make_bench_keeps_the_section_make_bench_latency_wrote(tmp_path: Path) -> None:
    # Given a report whose last section make bench-latency wrote
    latency = "## Under network latency\n\nWritten by `python -m bench.latency_run`.\n"
    (tmp_path / "BENCHMARKS.md").write_text(
        "# Benchmarks\n\n## Reader\n\nstale reader figures\n\n" + latency
    )
    # When make bench writes the report again
    write_report(_report(), tmp_path)
    # Then its own sections are new, and the latency section is there once, as it was
    markdown = (tmp_path / "BENCHMARKS.md").read_text()
    assert "stale reader figures" not in markdown
    assert markdown.count("## Under network latency") == 1
    assert markdown.endswith(latency)


def test_bench_cold_start_runs_as_a_module() -> None:
    # Given the cold-start benchmark's command line (``--before REV`` compares with a revision)
    # When it is run with --help (which measures nothing)
    result = subprocess.run(
        [sys.executable, "-m", "bench.cold_start", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    # Then the module's command line answered (run as a module, it used to do nothing)
    assert "--before" in result.stdout


def test_make_bench_keeps_the_section_make_bench_heal_wrote(tmp_path: Path) -> None:
    # Given a report with the sections make bench-latency and make bench-heal wrote
    latency = "## Under network latency\n\nWritten by `python -m bench.latency_run`.\n"
    healing = "## Healing lost webhooks\n\nWritten by `python -m bench.heal`.\n"
    (tmp_path / "BENCHMARKS.md").write_text(
        "# Benchmarks\n\n## Reader\n\nstale\n\n" + latency + "\n" + healing
    )
    # When make bench writes the report again
    write_report(_report(), tmp_path)
    # Then both are there once, as they were (docs link to #healing-lost-webhooks)
    markdown = (tmp_path / "BENCHMARKS.md").read_text()
    assert markdown.count("## Healing lost webhooks") == 1
    assert markdown.count("## Under network latency") == 1
    assert markdown.endswith(healing)
