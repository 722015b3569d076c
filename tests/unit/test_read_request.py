"""The read request's checks without AWS: ids, pages and the base URL of Link targets."""

from __future__ import annotations

import pytest

from waituntil.core.errors import BadReadRequest
from waituntil.read.request import MAX_ID_BYTES, base_url, parse_id, parse_page


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("42", "42"),
        ("3f2b8c1e-9d4a-4c6b-8f00-1a2b3c4d5e6f", "3f2b8c1e-9d4a-4c6b-8f00-1a2b3c4d5e6f"),
        ("hello%20world", "hello world"),
        ("caf%C3%A9", "café"),
        ("naïve", "naïve"),
        ("a%2Fb", "a/b"),
        ("x" * MAX_ID_BYTES, "x" * MAX_ID_BYTES),
    ],
)
def test_ids_are_percent_decoded_once(raw: str, key: str) -> None:
    # Given an id as API Gateway passes it / When parsed / Then it is the cache key
    assert parse_id(raw) == key


@pytest.mark.parametrize(
    "raw",
    [None, "", "%0A", "bad%00id", "tab%09", "del%7F", "c1%C2%85", "%FF", "%ED%A0%80", "x" * 1025],
)
def test_malformed_ids_are_refused(raw: str | None) -> None:
    # Given an empty, control-character, non-UTF-8 or too long id / When parsed / Then 400
    with pytest.raises(BadReadRequest):
        parse_id(raw)


@pytest.mark.parametrize(("raw", "page"), [(None, None), ("1", 1), ("27", 27)])
def test_pages_are_positive_integers(raw: str | None, page: int | None) -> None:
    assert parse_page(raw) == page


@pytest.mark.parametrize("raw", ["0", "-1", "01", "1.5", "two", "", " 1", "1e3", "9" * 10])
def test_bad_pages_are_refused(raw: str) -> None:
    with pytest.raises(BadReadRequest):
        parse_page(raw)


@pytest.mark.parametrize(
    ("domain", "path", "scheme", "expected"),
    [
        (
            "abc.execute-api.eu-west-1.amazonaws.com",
            "/v1/articles",
            None,
            "https://abc.execute-api.eu-west-1.amazonaws.com/v1/articles",
        ),
        ("127.0.0.1:3000", "/v1/articles", "http", "http://127.0.0.1:3000/v1/articles"),
        ("API.example.com", "/base/articles", "HTTPS", "https://api.example.com/base/articles"),
        ("h.example", "/v1/a b", "https", "https://h.example/v1/a%20b"),  # encoded once
        ("h.example", "/v1/a%20b", "https", "https://h.example/v1/a%20b"),
        (None, "/v1/articles", "https", ""),  # no host: relative links
        ("h.example", None, "https", ""),
        ("h.example", "articles", "https", ""),
        ("evil.example/x?", "/v1/articles", "https", ""),  # not a host name
        ("user@evil.example", "/v1/articles", "https", ""),
        ("h.example", "/v1/articles", "javascript", ""),  # neither http nor https
    ],
)
def test_base_url_trusts_only_a_host_name_a_path_and_http_or_https(
    domain: str | None, path: str | None, scheme: str | None, expected: str
) -> None:
    assert base_url(domain, path, scheme) == expected
