"""Cold start: each function's handler import against `import boto3` (the floor every Python
Lambda that calls AWS pays), each in fresh interpreters as on Lambda (``bench.lambda_site``:
the layer's packages alone, Lambda's environment, the runtime's Python version)."""

from __future__ import annotations

import statistics

from bench.common import Progress, table
from bench.lambda_site import ImportTime, import_times, runtime_python, version_of

# What a cold start of each function imports; boto3 is the baseline, postgrest the consumer's
# heaviest dependency (its Supabase client), measured alone for scale.
MODULES = ("boto3", "receiver.handler", "reader.handler", "consumer.handler", "postgrest")


def measure_times(
    repeats: int = 7, progress: Progress | None = None, python: str | None = None
) -> dict[str, ImportTime]:
    python = python or runtime_python()
    if progress is not None:
        progress.step(
            f"cold start: {len(MODULES)} imports x{repeats}, interleaved, "
            f"python {version_of(python)} as on Lambda"
        )
    return import_times(MODULES, repeats, python)


def measure(repeats: int = 7, progress: Progress | None = None) -> dict[str, float]:
    """Median CPU seconds to import each module (see ``bench.lambda_site`` for why CPU)."""
    return {module: time.cpu_s for module, time in measure_times(repeats, progress).items()}


def rows_of(seconds: dict[str, float]) -> list[tuple[str, ...]]:
    boto3_s = seconds["boto3"]
    rows: list[tuple[str, ...]] = [("import (fresh interpreter)", "median CPU s", "x import boto3")]
    rows += [
        (module, f"{value:.3f}", f"{value / boto3_s:.2f}") for module, value in seconds.items()
    ]
    return rows


def compare(before: str, repeats: int, pythons: list[str]) -> str:
    """The handlers' imports at ``before`` (a git revision, checked out aside) and as they are
    now, interleaved in one run, for each interpreter: a table of CPU medians and ratios."""
    import subprocess
    import tempfile
    from pathlib import Path

    from bench.common import ROOT
    from bench.lambda_site import compared_import_times

    lines = []
    with tempfile.TemporaryDirectory() as directory:
        checkout = Path(directory) / "before"
        subprocess.run(  # noqa: S603 (git from PATH, a revision we were given)
            ["git", "worktree", "add", "--detach", str(checkout), before],  # noqa: S607
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            for python in pythons:
                measured = compared_import_times(
                    {"before": checkout, "now": ROOT}, MODULES[:4], repeats, python
                )
                # One baseline for both: boto3 is the same package in both checkouts.
                boto3_s = statistics.median(
                    [measured[("before", "boto3")].cpu_s, measured[("now", "boto3")].cpu_s]
                )
                rows: list[tuple[str, ...]] = [
                    ("import", "before CPU s", "x boto3", "now CPU s", "x boto3")
                ]
                for module in MODULES[:4]:
                    then, now = measured[("before", module)], measured[("now", module)]
                    rows.append(
                        (
                            module,
                            f"{then.cpu_s:.3f}",
                            f"{then.cpu_s / boto3_s:.2f}",
                            f"{now.cpu_s:.3f}",
                            f"{now.cpu_s / boto3_s:.2f}",
                        )
                    )
                lines += [f"python {version_of(python)}, {repeats} runs each:", table(rows), ""]
        finally:
            subprocess.run(  # noqa: S603
                ["git", "worktree", "remove", "--force", str(checkout)],  # noqa: S607
                cwd=ROOT,
                check=False,
                capture_output=True,
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__)
    parser.add_argument("--before", help="a git revision to compare with, interleaved")
    parser.add_argument("--repeats", type=int, default=7)
    arguments = parser.parse_args(argv)
    if arguments.before:
        pythons = list(dict.fromkeys([runtime_python(), sys.executable]))
        print(compare(arguments.before, arguments.repeats, pythons))
        return
    print("## Cold start\n")
    print(table(rows_of(measure(arguments.repeats))))
    print()


if __name__ == "__main__":
    main()
