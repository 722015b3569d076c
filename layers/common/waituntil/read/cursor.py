"""The read API's list cursors: the token that pins one list version and a page of it, and the
``Link`` header whose targets carry those tokens.

A cursor is base64url JSON carrying the version's page count, row count, ETag and time, so a
pinned page costs a single read and still answers the headers of its own version. It is not
signed: a client that edits one only changes the headers it gets back for that URL. Whatever
we did not issue (bad encoding, wrong types, a page past its own count) is refused as a
``BadReadRequest``, never a ``5xx``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from waituntil.core.errors import BadReadRequest

if TYPE_CHECKING:
    from waituntil.cache.model import ListHead

MAX_CURSOR_CHARS = 1024
# The largest page number a request or a cursor may name (nine digits).
MAX_PAGE = 999_999_999

_VERSION = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_ETAG_VALUE = re.compile(r"[A-Za-z0-9_.-]{1,128}")


@dataclass(frozen=True)
class ListVersion:
    """One published version of a table's list: what a cursor pins."""

    table: str
    version: str
    pages: int
    row_count: int
    etag: str
    modified_at: datetime

    @classmethod
    def of(cls, head: ListHead) -> ListVersion:
        return cls(
            table=head.table,
            version=head.version,
            # An empty list still has one (empty) page.
            pages=max(head.chunk_count, 1),
            row_count=head.row_count,
            etag=head.etag,
            modified_at=datetime.fromtimestamp(head.modified_at_ns // 1_000_000_000, tz=UTC),
        )


def encode_cursor(version: ListVersion, page: int) -> str:
    payload = {
        "t": version.table,
        "v": version.version,
        "p": page,
        "n": version.pages,
        "c": version.row_count,
        "e": version.etag,
        "m": int(version.modified_at.timestamp()),
    }
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, table: str) -> tuple[ListVersion, int]:
    """The version and page a cursor pins; ``BadReadRequest`` for anything we did not issue."""
    if not token or len(token) > MAX_CURSOR_CHARS:
        raise BadReadRequest("malformed cursor")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError):
        raise BadReadRequest("malformed cursor") from None
    if not isinstance(payload, dict) or not _valid_cursor(payload):
        raise BadReadRequest("malformed cursor")
    if payload["t"] != table:
        raise BadReadRequest("this cursor belongs to another list")
    version = ListVersion(
        table=table,
        version=payload["v"],
        pages=payload["n"],
        row_count=payload["c"],
        etag=payload["e"],
        modified_at=datetime.fromtimestamp(payload["m"], tz=UTC),
    )
    return version, payload["p"]


def _valid_cursor(payload: dict[str, Any]) -> bool:
    def count(name: str, low: int) -> bool:
        value = payload.get(name)
        # bool is an int in Python; a cursor never holds one.
        return type(value) is int and low <= value <= MAX_PAGE

    def text(name: str, pattern: re.Pattern[str]) -> bool:
        value = payload.get(name)
        return isinstance(value, str) and pattern.fullmatch(value) is not None

    return (
        isinstance(payload.get("t"), str)
        and text("v", _VERSION)
        and text("e", _ETAG_VALUE)
        and count("n", 1)
        and count("p", 1)
        and payload["p"] <= payload["n"]
        and count("c", 0)
        and type(payload.get("m")) is int
        and 0 <= payload["m"] < 2**37  # within datetime's range
    )


def link_header(version: ListVersion, page: int, list_url: str = "") -> str:
    """``next``/``prev``/``first``/``last`` of this version; targets are ``list_url`` (the
    requested URL, see ``read.request.base_url``) with a cursor, or only the query when it is
    empty."""
    relations: list[tuple[str, int]] = []
    if page < version.pages:
        relations.append(("next", page + 1))
    if page > 1:
        relations.append(("prev", page - 1))
    relations += [("first", 1), ("last", version.pages)]
    # base64url needs no percent-encoding in a query.
    return ", ".join(
        f'<{list_url}?cursor={encode_cursor(version, target)}>; rel="{relation}"'
        for relation, target in relations
    )
