"""What a read answers: the response shape, the headers of a served row or page, and the check
that a body fits in one Lambda response.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from waituntil.core.errors import ResponseTooLarge
from waituntil.read.cursor import ListVersion, link_header
from waituntil.read.preconditions import http_date, quote_etag

if TYPE_CHECKING:
    from waituntil.core.settings import ReaderSettings

# Lambda caps a synchronous response at 6 MB of JSON, in which the body is a JSON string (every
# quote escaped, non-ASCII as \\uXXXX). Headroom is left for the headers and the envelope.
MAX_RESPONSE_BYTES = 6_000_000


@dataclass(frozen=True)
class ReadResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""  # empty for 304


def page_headers(
    version: ListVersion,
    page: int,
    chunk_etag: str,
    settings: ReaderSettings,
    list_url: str = "",
) -> dict[str, str]:
    return {
        # The page's content hash: the same rows give the same tag in any list version.
        "ETag": quote_etag(f"{chunk_etag}-p{page}"),
        "Last-Modified": http_date(version.modified_at),
        "Cache-Control": cache_control(settings),
        "Link": link_header(version, page, list_url),
        "X-Total-Count": str(version.row_count),
        "X-Page": str(page),
        "X-Page-Count": str(version.pages),
    }


def cache_control(settings: ReaderSettings) -> str:
    # Responses to signed requests must not land in shared caches unless marked public.
    visibility = "private" if settings.read_access == "iam" else "public"
    return (
        f"{visibility}, max-age={settings.cache_max_age_s}, "
        f"stale-while-revalidate={settings.stale_while_revalidate_s}"
    )


def check_response_size(body: str) -> None:
    # Exact size only when it could matter: one character escapes to at most 12 bytes.
    if len(body) * 12 > MAX_RESPONSE_BYTES and len(json.dumps(body)) > MAX_RESPONSE_BYTES:
        raise ResponseTooLarge(
            f"the stored body ({len(body)} characters) exceeds what one Lambda response carries"
        )
