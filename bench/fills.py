"""First fills under the latency model, each in a child process (``bench.fill_child``):
the table sizes up to 1,000,000 rows, the row writer's pool sizes, and the moto-only
figures of the same run beside them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from bench.common import LAMBDA_PATH, ROOT, Progress
from bench.latency import Latencies

FILL_ROWS = (1_000, 10_000, 100_000, 1_000_000)
WRITER_ROWS = 10_000
WRITERS = (1, 2, 4, 8, 16)
MOTO_ROWS = 1_000


@dataclass(frozen=True)
class Fill:
    figures: dict[str, Any]  # what bench.fill_child printed

    @property
    def rows(self) -> int:
        return int(self.figures["rows"])

    @property
    def workers(self) -> int:
        return int(self.figures["workers"])

    @property
    def seconds(self) -> float:
        return float(self.figures["seconds"])

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def units_per_kb(self) -> float | None:
        units = self.figures.get("write_units")
        return None if units is None else units / (self.figures["row_bytes"] / 1024)

    @property
    def rss_growth_mb(self) -> float:
        return float(self.figures["rss_peak_mb"] - self.figures["rss_start_mb"])


def run_fill(
    rows: int,
    workers: int,
    *,
    backend: str = "memory",
    latency: bool = True,
    latencies: Latencies | None = None,
    progress: Progress | None = None,
) -> Fill:
    if progress is not None:
        progress.step(
            f"fill: {rows:,} rows, {workers} writers, {backend}, "
            f"{'with' if latency else 'without'} latency"
        )
    spec = ",".join(f"{k}={v * 1000:g}" for k, v in (latencies or Latencies()).seconds.items())
    command = [
        sys.executable,
        "-m",
        "bench.fill_child",
        str(rows),
        str(workers),
        backend,
        "model" if latency else "none",
        spec,
    ]
    process = subprocess.run(  # noqa: S603 (our own interpreter and module)
        command,
        stdout=subprocess.PIPE,
        stderr=None if progress is not None else subprocess.DEVNULL,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(LAMBDA_PATH)},
    )
    if process.returncode != 0:
        raise SystemExit(f"fill child failed ({rows} rows, {workers} writers, {backend})")
    fill = Fill(json.loads(process.stdout.strip().splitlines()[-1]))
    if progress is not None:
        progress.step(f"  {fill.rows_per_s:,.0f} rows/s, {fill.seconds:.1f} s")
    return fill


@dataclass
class FillFigures:
    sizes: list[Fill]  # the model, the consumer's own pool
    writers: list[Fill]  # the model, WRITER_ROWS rows, each pool size
    moto: list[Fill]  # moto, no latency: 1 thread and the pool
    cpu_floor: Fill | None  # the memory services, no latency: the consumer's CPU alone
    cpu_places: list[tuple[str, float]] = field(default_factory=list)  # ms of CPU per row


def measure(
    latencies: Latencies,
    *,
    sizes: tuple[int, ...] = FILL_ROWS,
    writer_rows: int = WRITER_ROWS,
    writers: tuple[int, ...] = WRITERS,
    moto_rows: int = MOTO_ROWS,
    progress: Progress | None = None,
) -> FillFigures:
    from waituntil.adapters.cache_store import WRITE_WORKERS

    pool = WRITE_WORKERS
    sweep = [
        run_fill(writer_rows, count, latencies=latencies, progress=progress) for count in writers
    ]
    floor = run_fill(writer_rows, pool, latency=False, progress=progress)
    moto = [
        run_fill(moto_rows, count, backend="moto", latency=False, progress=progress)
        for count in (1, pool)
    ]
    if progress is not None:
        progress.step(f"fill: where the CPU goes (cProfile, {writer_rows // 2:,} rows)")
    places = cpu_profile(max(writer_rows // 2, 500))
    grown = [run_fill(rows, pool, latencies=latencies, progress=progress) for rows in sizes]
    return FillFigures(sizes=grown, writers=sweep, moto=moto, cpu_floor=floor, cpu_places=places)


def cpu_profile(rows: int = 5_000) -> list[tuple[str, float]]:
    """Where a fill's CPU goes: cProfile of a fill of ``rows`` rows, one writer, no latency,
    in process; self time per row (ms) summed by where the code lives, most first."""
    import cProfile
    import pstats
    from collections import Counter

    from bench.latency import NO_LATENCY
    from bench.latency_consumer import drain_fill
    from bench.latency_stack import model_stack

    with model_stack(rows, NO_LATENCY, queue="memory") as stack:
        ports = stack.consumer_ports(workers=1)
        profile = cProfile.Profile()
        profile.enable()
        drain_fill(stack, ports)
        profile.disable()
    by_place: Counter[str] = Counter()
    stats: Any = pstats.Stats(profile)
    for (path, _, _), (_, _, self_s, _, _) in stats.stats.items():
        by_place[_place(path)] += self_s
    return [(place, seconds / rows * 1000) for place, seconds in by_place.most_common()]


_STDLIB_PLACES = {
    "encoder.py": "json (stdlib)",
    "decoder.py": "json (stdlib)",
    "hmac.py": "SigV4 signing: hmac, hashlib (stdlib)",
    "message.py": "email headers, for botocore's HTTP (stdlib)",
    "_policybase.py": "email headers, for botocore's HTTP (stdlib)",
    "feedparser.py": "email headers, for botocore's HTTP (stdlib)",
    "parse.py": "urllib.parse (stdlib)",
}


def _place(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/")[1].split("/")[0]
    if "/waituntil/" in path or "/functions/" in path:
        return "the consumer's own code (waituntil, handler)"
    if "/bench/" in path:
        return "the stand-in services and the benchmark"
    if path == "~":
        return "C builtins (called from all of the above)"
    return _STDLIB_PLACES.get(path.rsplit("/", 1)[-1], "other stdlib")
