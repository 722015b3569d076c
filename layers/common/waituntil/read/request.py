"""What a read needs from the HTTP request, and the checks it passes before the cache is read:
access, table, id and page. Each refusal is a ``ReadRefused`` (``4xx``), never a ``5xx``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from waituntil.core.errors import BadReadRequest, NotCached, ReadForbidden
from waituntil.read.cursor import MAX_PAGE

if TYPE_CHECKING:
    from waituntil.core.settings import ReaderSettings

READ_METHODS = ("GET", "HEAD")
ALLOW = ", ".join(READ_METHODS)
# DynamoDB allows 2048 bytes of partition key; "/<table>/" takes a few of them.
MAX_ID_BYTES = 1024

_PAGE = re.compile(r"[1-9][0-9]{0,8}")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})(?::[0-9]{1,5})?")
_PATH_SAFE = "/%-._~!$&'()*+,;=:@"
_FORBIDDEN_ID_CATEGORIES = frozenset({"Cc", "Cs"})  # control characters, lone surrogates


@dataclass(frozen=True)
class ReadRequest:
    """What a read needs from the HTTP request, as API Gateway delivered it."""

    method: str
    table: str
    raw_id: str | None = None  # still percent-encoded, as REST APIs deliver path parameters
    page: str | None = None
    cursor: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    caller_arn: str | None = None  # requestContext.identity.userArn, set by IAM authorization
    # The requested URL without its query (scheme, host, stage and path), for absolute Link
    # targets; empty: query-only relative targets.
    base_url: str = ""


def check_access(request: ReadRequest, settings: ReaderSettings) -> None:
    """With IAM reads, API Gateway has already refused unsigned requests; this is the backstop."""
    if settings.read_access == "iam" and not request.caller_arn:
        raise ReadForbidden("reads need IAM (SigV4) authorization")


def check_table(table: str, cached_tables: tuple[str, ...]) -> str:
    if table not in cached_tables:
        raise NotCached(f"no cached table named {table[:100]!r}")
    return table


def parse_id(raw: str | None) -> str:
    """The row key from the path: percent-decoded once, non-empty, bounded, printable."""
    if not raw:
        raise BadReadRequest("the id is empty")
    try:
        key = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadReadRequest("the id is not percent-encoded UTF-8") from None
    if not key:
        raise BadReadRequest("the id is empty")
    if any(unicodedata.category(char) in _FORBIDDEN_ID_CATEGORIES for char in key):
        raise BadReadRequest("the id contains control characters")
    if len(key.encode()) > MAX_ID_BYTES:
        raise BadReadRequest(f"the id is longer than {MAX_ID_BYTES} bytes")
    return key


def base_url(domain: str | None, path: str | None, scheme: str | None) -> str:
    """The requested URL without its query, or "" when the request does not say enough.

    ``domain`` is API Gateway's ``requestContext.domainName`` (or the Host header), ``path`` its
    ``requestContext.path`` (the stage, or a custom domain's base path, in front), ``scheme``
    the ``X-Forwarded-Proto`` header. Anything unexpected gives "" (relative links) rather
    than a link to a host or scheme a client slipped into its headers.
    """
    if not domain or not path or not _DOMAIN.fullmatch(domain) or not path.startswith("/"):
        return ""
    scheme = (scheme or "https").strip().lower()
    if scheme not in ("http", "https"):
        return ""
    # Already percent-encoded characters stay as they are; anything else unsafe is encoded.
    return f"{scheme}://{domain.lower()}{quote(path, safe=_PATH_SAFE)}"


def parse_page(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not _PAGE.fullmatch(raw):
        raise BadReadRequest(f"page must be an integer from 1 to {MAX_PAGE}")
    return int(raw)
