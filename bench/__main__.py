"""`make bench`: every benchmark, each reporting ratios against a baseline of the same run."""

from __future__ import annotations

from bench import reader, receiver, scale


def main() -> None:
    receiver.main()
    scale.main([])
    reader.main()


if __name__ == "__main__":
    main()
