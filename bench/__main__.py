"""`make bench` / `make bench-quick`: every benchmark, reported as ratios within one run.

Prints the tables as it goes (with progress on stderr), then writes the report:
`docs/BENCHMARKS.md` (the tables and headline ratios), `docs/benchmarks/figures.csv` (every raw
figure: per-request samples, import medians) and PNG plots. `--quick` runs each part briefly
(under a minute) and writes to `.local-data/bench-quick/` instead, so that a development run
never overwrites the committed report.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import sys
import warnings
from collections.abc import Callable
from datetime import UTC, datetime

from bench import cold_start, reader, receiver, scale
from bench.common import ROOT, Progress, quiet, table
from bench.report import Report, write_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (development)")
    arguments = parser.parse_args(argv)
    quick = arguments.quick
    out = ROOT / (".local-data/bench-quick" if quick else "docs")
    progress = Progress()

    imports = cold_start.measure(repeats=3 if quick else 7, progress=progress)
    print("## Cold start\n")
    print(table(cold_start.rows_of(imports)), end="\n\n", flush=True)

    progress.step("receiver: acknowledgement against the bare send_message")
    ack = receiver.measure_samples(50 if quick else receiver.REQUESTS, progress)
    print("## Receiver\n")
    print(table(receiver.rows_of(ack)), end="\n\n", flush=True)

    # The consumer at scale: patch against full read, at each table size (the longest part).
    scale_args = ["--rows", "1000"] if quick else []
    progress.step("consumer: warm batches and fills at each table size (the longest part)")
    consumer_text = _captured(lambda: scale.main(scale_args))
    print(consumer_text, flush=True)

    progress.step("reader: reads against the bare get_item")
    # The reader's benchmark reads its sample count from the module (quick runs take fewer).
    reader.REQUESTS = 30 if quick else 300
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Powertools' "no metrics" warning, once per read
        with quiet():
            reader_rows = reader.measure_requests()
    print("## Reader\n")
    print(table(reader_rows), end="\n\n", flush=True)

    report = Report(
        when=datetime.now(UTC),
        machine=f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}",
        quick=quick,
        imports=imports,
        ack=ack,
        consumer_text=consumer_text,
        reader_rows=reader_rows,
    )
    written = write_report(report, out)
    progress.step("report: " + ", ".join(str(path.relative_to(ROOT)) for path in written))


def _captured(run: Callable[[], None]) -> str:
    """What a benchmark prints (its tables), kept for the report."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        run()
    return buffer.getvalue()


if __name__ == "__main__":
    main(sys.argv[1:])
