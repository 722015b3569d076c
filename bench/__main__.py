"""`make bench`: every benchmark, each reporting ratios against a baseline of the same run."""

from __future__ import annotations

from bench import consumer, reader, receiver


def main() -> None:
    receiver.main()
    consumer.main([])
    reader.main()


if __name__ == "__main__":
    main()
