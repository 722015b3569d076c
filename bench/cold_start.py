"""Cold start: each function's handler import against `import boto3` (the floor every Python
Lambda that calls AWS pays), each in fresh interpreters as on Lambda (``bench.lambda_site``:
the layer's packages alone, Lambda's environment, the runtime's Python version)."""

from __future__ import annotations

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


def main() -> None:
    print("## Cold start\n")
    print(table(rows_of(measure())))
    print()


if __name__ == "__main__":
    main()
