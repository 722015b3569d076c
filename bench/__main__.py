"""`make bench`: every benchmark, each reporting ratios against a baseline of the same run."""

from __future__ import annotations

import importlib

from bench import consumer, receiver


def main() -> None:
    receiver.main()
    consumer.main([])
    try:
        reader = importlib.import_module("bench.reader")
    except ModuleNotFoundError:
        return
    reader.main()


if __name__ == "__main__":
    main()
