"""The heal benchmark's report from known figures: the goals it says are met or missed, the
monthly costs, its section of docs/BENCHMARKS.md and its plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import heal
from bench.heal import Cycle, Heal, Latency

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _cycle(job: str, rows: int, lost: int, requests: int, rows_read: int) -> Cycle:
    return Cycle(
        job=job,
        rows=rows,
        lost=lost,
        supabase_requests=requests,
        supabase_rows=rows_read,
        read_units=3 if job == "reconcile" else 2 * rows,
        dynamodb_requests=6,
        write_requests=3,
        write_units=3,
        seconds=0.2,
        healed=lost,
        converged=True,
        levels=2,
    )


def _cycles(quiet_requests: int = 2) -> list[Cycle]:
    return [
        _cycle("reconcile", 1000, 0, quiet_requests, 0),
        _cycle("reconcile", 1000, 100, 180, 181),
        _cycle("resync", 1000, 100, 9, 2000),
    ]


def _latency(*seconds: float | None) -> Latency:
    heals = [Heal("update", key, s) for key, s in enumerate(seconds)]
    return Latency(rows=1000, heals=heals, converged=True, cycles=5, periods=5)


def _goal_line(report: str, goal: str) -> str:
    return next(line for line in report.splitlines() if line.startswith(goal))


def test_goals_met_are_said_met() -> None:
    # Given a run within every goal
    report = heal._report(_cycles(), _latency(30.0, 60.0, 80.0))
    # When each goal's line is read / Then it says met
    for goal in ("nothing lost", "d lost: at most", "d lost: O(", "no cycle", "heal latency"):
        assert _goal_line(report, goal).rstrip().endswith("yes"), goal


def test_goals_missed_are_said_missed() -> None:
    # Given a quiet cycle of 4 requests, and a lost change not healed within the wait
    report = heal._report(_cycles(quiet_requests=4), _latency(30.0, None))
    # Then both goals say no
    assert _goal_line(report, "nothing lost").rstrip().endswith("**no**")
    assert _goal_line(report, "heal latency").rstrip().endswith("**no**")


def test_the_monthly_cost_scales_the_resync_with_the_table_but_not_a_quiet_cycle() -> None:
    # Given figures measured at 1,000 rows
    at_100k = heal._monthly(_cycles(), 100_000)
    at_1m = heal._monthly(_cycles(), 1_000_000)
    # Then a resync costs ten times more at ten times the rows, a quiet cycle the same, and an
    # hourly resync 24 times a daily one
    daily, hourly = "full resync every day (backstop)", "full resync every hour (before)"
    assert at_1m[daily].usd == pytest.approx(10 * at_100k[daily].usd, rel=1e-3)
    assert at_1m["reconcile every minute"] == at_100k["reconcile every minute"]
    assert at_100k[hourly].usd == pytest.approx(24 * at_100k[daily].usd, rel=1e-3)
    assert at_100k[daily].supabase_rows == pytest.approx(2000 * 100 * 30)


def test_the_section_replaces_only_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a BENCHMARKS.md with a section before and after an old heal section
    document = tmp_path / "BENCHMARKS.md"
    document.write_text(
        "# B\n\n## Before\n\nkept\n\n## Healing lost webhooks\n\nold\n\n## After\n\nkept too\n"
    )
    monkeypatch.setattr(heal, "REPORT", document)
    # When the section is written
    heal._replace_section("new figures\n", "python -m bench.heal", "here")
    # Then only it changed
    text = document.read_text()
    assert "old" not in text and "new figures" in text
    assert text.index("## Before") < text.index("## Healing lost webhooks") < text.index("## After")
    assert text.count("kept") == 2


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    # Given known figures / When plotted / Then a PNG is written
    path = tmp_path / "heal.png"
    heal._plot(_cycles(), _latency(30.0, 60.0), path)
    assert path.read_bytes().startswith(PNG_SIGNATURE)
