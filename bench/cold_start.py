"""Cold start: each function's handler import against `import boto3` (the floor every Python
Lambda that calls AWS pays), each in a fresh interpreter."""

from __future__ import annotations

from bench.common import Progress, import_seconds, table

# What a cold start of each function imports; boto3 is the baseline, supabase the heaviest
# dependency (the consumer's, imported lazily, so not in consumer.handler's own figure).
MODULES = ("boto3", "receiver.handler", "reader.handler", "consumer.handler", "supabase")


def measure(repeats: int = 7, progress: Progress | None = None) -> dict[str, float]:
    """Median seconds to import each module."""
    seconds = {}
    for module in MODULES:
        if progress is not None:
            progress.step(f"cold start: import {module} x{repeats}")
        seconds[module] = import_seconds(module, repeats)
    return seconds


def rows_of(seconds: dict[str, float]) -> list[tuple[str, ...]]:
    boto3_s = seconds["boto3"]
    rows: list[tuple[str, ...]] = [("import (fresh interpreter)", "median s", "x import boto3")]
    rows += [
        (module, f"{value:.3f}", f"{value / boto3_s:.2f}") for module, value in seconds.items()
    ]
    return rows


def main() -> None:
    print("## Cold start\n")
    print(table(rows_of(measure())))
    print()


if __name__ == "__main__":
    main()
