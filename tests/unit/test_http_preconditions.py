"""Conditional requests (RFC 9110 section 13): If-None-Match, If-Modified-Since, precedence."""

from __future__ import annotations

import pytest

from tests.read_fakes import MODIFIED
from waituntil.read.preconditions import (
    etag_matches,
    http_date,
    is_not_modified,
    not_modified_since,
)
from waituntil.read.request import ReadRequest


@pytest.mark.parametrize(
    ("if_none_match", "matches"),
    [
        ('"abc"', True),
        ('W/"abc"', True),  # weak comparison
        ('"x", W/"abc" , "y"', True),
        ("*", True),
        ("abc", True),  # unquoted, accepted leniently
        ('"abd"', False),
        ('"x", "y"', False),
        ("", False),
    ],
)
def test_if_none_match_uses_weak_comparison(if_none_match: str, matches: bool) -> None:
    assert etag_matches(if_none_match, '"abc"') is matches


@pytest.mark.parametrize(
    ("since", "not_modified"),
    [
        ("Sat, 28 Nov 2026 12:00:00 GMT", True),
        ("Sat, 28 Nov 2026 13:00:00 GMT", True),
        ("Sat, 28 Nov 2026 11:59:59 GMT", False),
        ("yesterday", False),
        ("", False),
    ],
)
def test_if_modified_since_compares_http_dates(since: str, not_modified: bool) -> None:
    assert not_modified_since(since, http_date(MODIFIED)) is not_modified


def test_if_none_match_takes_precedence_over_if_modified_since() -> None:
    # Given a stale etag but a recent If-Modified-Since / When evaluated / Then the etag decides
    request = ReadRequest(
        method="GET",
        table="articles",
        if_none_match='"old"',
        if_modified_since="Sun, 29 Nov 2026 00:00:00 GMT",
    )
    headers = {"ETag": '"new"', "Last-Modified": http_date(MODIFIED)}
    assert is_not_modified(request, headers) is False
