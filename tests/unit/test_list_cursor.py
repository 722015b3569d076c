"""List cursors without AWS: the round trip, tampering refused, and the Link header."""

from __future__ import annotations

import base64
import json

import pytest

from tests.read_fakes import VERSION
from waituntil.core.errors import BadReadRequest
from waituntil.read.cursor import decode_cursor, encode_cursor, link_header


def test_a_cursor_round_trips_its_version_and_page() -> None:
    # Given a cursor for page 2 of a version
    token = encode_cursor(VERSION, 2)
    # When decoded for the same table
    version, page = decode_cursor(token, "articles")
    # Then it pins that version (counts, etag, time) and page, and is URL-safe as it stands
    assert (version, page) == (VERSION, 2)
    assert token.replace("-", "").replace("_", "").isalnum()


def _forge(**fields: object) -> str:
    payload = json.loads(base64.urlsafe_b64decode(encode_cursor(VERSION, 1) + "=="))
    payload.update(fields)
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "not-a-cursor",
        "",
        "!!!!",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "A" * 2000,
        _forge(p=4),  # past its own page count
        _forge(p=0),
        _forge(n=True),
        _forge(v="../other"),
        _forge(e='"injected'),
        _forge(m="yesterday"),
        _forge(c=-1),
    ],
)
def test_malformed_cursors_are_refused(token: str) -> None:
    with pytest.raises(BadReadRequest, match="malformed cursor"):
        decode_cursor(token, "articles")


def test_a_cursor_of_another_table_is_refused() -> None:
    with pytest.raises(BadReadRequest, match="another list"):
        decode_cursor(encode_cursor(VERSION, 1), "authors")


# ----- Link headers ---------------------------------------------------------------------------


def _relations(header: str, base: str = "") -> dict[str, int]:
    result: dict[str, int] = {}
    for part in header.split(", "):
        target, relation = part.split("; ")
        assert target.startswith(f"<{base}?cursor=")
        token = target.removeprefix(f"<{base}?cursor=").removesuffix(">")
        version, page = decode_cursor(token, "articles")
        assert version == VERSION  # every link pins the same version
        result[relation.removeprefix('rel="').removesuffix('"')] = page
    return result


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (1, {"next": 2, "first": 1, "last": 3}),
        (2, {"next": 3, "prev": 1, "first": 1, "last": 3}),
        (3, {"prev": 2, "first": 1, "last": 3}),
    ],
)
def test_links_name_the_neighbours_within_one_version(page: int, expected: dict[str, int]) -> None:
    assert _relations(link_header(VERSION, page)) == expected


def test_link_targets_are_absolute_when_the_request_url_is_known() -> None:
    # Given the URL a client requested, stage included
    base = "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/articles"
    # When the links of page 2 are built / Then every target is that URL with a cursor
    assert _relations(link_header(VERSION, 2, base), base) == {
        "next": 3,
        "prev": 1,
        "first": 1,
        "last": 3,
    }
