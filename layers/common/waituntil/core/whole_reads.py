"""Reads by key that a source may cut short, made whole: one mechanism for every such read.

Supabase (PostgREST) answers at most max-rows rows to one request, silently. A project may set
max-rows below what this deployment declares (``SUPABASE_PAGE_SIZE``), so an ``in.(...)`` read
of more keys than that answers with only some of the rows that exist. Taking the others for
deleted would tombstone live rows. An answer that returns none of the keys asked cannot have
been cut short, so that, and only that, proves the keys still missing are absent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

Found = TypeVar("Found")


def read_whole(
    ask: Callable[[list[str]], Mapping[str, Found]], keys: Sequence[str]
) -> dict[str, Found]:
    """What ``ask`` finds for each of ``keys``, asking again for the keys an answer left out
    until an answer finds none of them (one more request when some keys are truly absent).

    ``ask`` reads some keys once and returns what it found by key; it may return fewer keys
    than exist (a truncated answer), never keys it was not asked for."""
    found: dict[str, Found] = {}
    missing = list(dict.fromkeys(keys))
    while missing:
        asked = set(missing)
        # Only keys asked for count: each round then finds at least one, so this ends.
        answered = {key: value for key, value in ask(missing).items() if key in asked}
        if not answered:
            break
        found.update(answered)
        missing = [key for key in missing if key not in answered]
    return found
