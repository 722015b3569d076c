"""Shared bits of the benchmarks: the emulated AWS and statistics."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_PATH = [str(ROOT / "layers/common"), str(ROOT / "functions"), str(ROOT)]


def use_fake_aws() -> None:
    """Credentials and settings for in-process moto, before any project import."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_NAMESPACE": "Bench",
            "POWERTOOLS_SERVICE_NAME": "bench",
        }
    )
    for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]
    for path in reversed(LAMBDA_PATH):
        if path not in sys.path:
            sys.path.insert(0, path)


def import_seconds(module: str, repeats: int = 7) -> float:
    """Median CPU seconds of importing ``module`` in a fresh interpreter as on Lambda (a cold
    start's share: ``bench.lambda_site``)."""
    from bench.lambda_site import import_times

    return import_times([module], repeats)[module].cpu_s


class Progress:
    """One line on stderr per step of a long run, with the time since the start."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._last_count = 0.0

    def step(self, message: str) -> None:
        print(f"[{time.monotonic() - self._started:5.0f} s] {message}", file=sys.stderr, flush=True)

    def count(self, what: str, done: int, total: int) -> None:
        """At most one line every 5 s, and one at the end."""
        now = time.monotonic()
        if done == total or now - self._last_count >= 5:
            self._last_count = now
            self.step(f"{what}: {done}/{total}")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow what the handlers print (Powertools writes metrics as EMF lines to stdout)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


class BenchContext:
    """The bits of a Lambda context Powertools reads."""

    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        # The consumer budgets its work by the time left (60 s, its Timeout): never short here.
        return 60_000
