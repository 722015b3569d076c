"""HTTP validators and the conditional requests that compare against them (RFC 9110 sections
8.8 and 13): ``ETag`` and ``Last-Modified`` as the read API writes them, and whether a
``GET``/``HEAD`` carrying ``If-None-Match`` or ``If-Modified-Since`` gets ``304``.

Nothing here knows about the cache: a request is anything with the two precondition fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Protocol

_QUOTED_TAG = re.compile(r'(?:W/)?"([^"]*)"')


class Preconditions(Protocol):
    """The precondition headers of a request, as received (None: absent)."""

    @property
    def if_none_match(self) -> str | None: ...

    @property
    def if_modified_since(self) -> str | None: ...


def quote_etag(value: str) -> str:
    return f'"{value}"'


def http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def is_not_modified(request: Preconditions, headers: Mapping[str, str]) -> bool:
    """Whether a GET/HEAD with these preconditions gets ``304`` for a response with ``headers``."""
    if request.if_none_match is not None:
        return etag_matches(request.if_none_match, headers["ETag"])
    if request.if_modified_since is not None:
        return not_modified_since(request.if_modified_since, headers["Last-Modified"])
    return False


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison: ``W/"x"`` matches ``"x"``; ``*`` matches any current representation."""
    value = if_none_match.strip()
    if value == "*":
        return True
    tags = _QUOTED_TAG.findall(value)
    if not tags:
        # Lenient: some clients send tags unquoted.
        tags = [part.strip().removeprefix("W/") for part in value.split(",")]
    return _opaque(etag) in tags


def not_modified_since(if_modified_since: str, last_modified: str) -> bool:
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False  # an invalid date is ignored (RFC 9110 section 13.1.3)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return parsedate_to_datetime(last_modified) <= since


def _opaque(etag: str) -> str:
    return etag.removeprefix("W/").strip('"')
