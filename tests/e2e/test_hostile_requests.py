"""Hostile requests, sent as an outsider would: raw HTTP to the local stack's webhook URL.

Through the same path as deployed (API gateway -> the receiver's container -> SQS), none may
get a 5xx, and none may queue anything. Each is listed with the 4xx it gets; the list is the
catalogue docs/RELIABILITY.md counts.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest

from local.api_gateway import MAX_REQUEST_BYTES
from local.stack import PipelineStack

pytestmark = pytest.mark.e2e

ROW = '{"id": 42, "title": "t"}'


def payload(record: str = ROW, *, type_: str = "INSERT", table: str = "articles") -> bytes:
    return (
        f'{{"type": "{type_}", "table": "{table}", "schema": "public", '
        f'"record": {record}, "old_record": null}}'
    ).encode()


GOOD = payload()
PLACEHOLDER = b"Bearer <the webhook secret>"
AUTH = (b"Authorization", PLACEHOLDER)
CT_JSON = (b"Content-Type", b"application/json")
JSON = [CT_JSON, AUTH]
DEEP = "[" * 100_000 + "]" * 100_000
# (name, header lines, body, expected status). PLACEHOLDER becomes the stack's secret; None as
# the body sends no body and no Content-Length.
CASES: list[tuple[str, list[tuple[bytes, bytes]], bytes | None, int]] = [
    ("NaN", JSON, payload('{"id": 42, "x": NaN}'), 400),
    ("Infinity", JSON, payload('{"id": 42, "x": Infinity}'), 400),
    ("-Infinity", JSON, payload('{"id": 42, "x": -Infinity}'), 400),
    ("nested 100,000 deep", JSON, payload('{"id": 42, "x": ' + DEEP + "}"), 400),
    ("lone high surrogate", JSON, payload('{"id": 42, "x": "\\ud800"}'), 400),
    ("lone low surrogate", JSON, payload('{"id": 42, "x": "a\\udc00b"}'), 400),
    ("reversed surrogate pair", JSON, payload('{"id": 42, "x": "\\udc00\\ud800"}'), 400),
    ("duplicate type", JSON, b'{"type": "DELETE", ' + GOOD[1:], 400),
    ("duplicate record.id", JSON, payload('{"id": 42, "id": 43}'), 400),
    # API Gateway would hand a text body over with U+FFFD in place of each invalid byte; the
    # API's BinaryMediaTypes (*/*) passes the bytes as sent, so the receiver sees them.
    ("invalid UTF-8 byte", JSON, GOOD.replace(b'"t"', b'"caf\xe9"'), 400),
    ("truncated UTF-8 sequence", JSON, GOOD.replace(b'"t"', b'"\xe2\x82"'), 400),
    (
        "invalid UTF-8, charset=utf-8",
        [(b"Content-Type", b"application/json; charset=utf-8"), AUTH],
        GOOD.replace(b'"t"', b'"\xff"'),
        400,
    ),
    ("UTF-16 with BOM", JSON, GOOD.decode().encode("utf-16"), 400),
    ("UTF-16-LE without BOM", JSON, GOOD.decode().encode("utf-16-le"), 400),
    ("UTF-32", JSON, GOOD.decode().encode("utf-32"), 400),
    ("charset=utf-16", [(b"Content-Type", b"application/json; charset=utf-16"), AUTH], GOOD, 415),
    ("empty body", JSON, b"", 400),
    ("no body at all", JSON, None, 400),
    ("null", JSON, b"null", 400),
    ("array", JSON, b"[]", 400),
    ("string", JSON, b'"INSERT"', 400),
    ("trailing garbage", JSON, GOOD + b"x", 400),
    ("comment", JSON, b"/* hi */" + GOOD, 400),
    ("single quotes", JSON, GOOD.replace(b'"', b"'"), 400),
    ("key of 5,000 digits", JSON, payload('{"id": ' + "9" * 5000 + "}"), 400),
    ("key 1e400", JSON, payload('{"id": 1e400}'), 400),
    ("key of 2,000 characters", JSON, payload('{"id": "' + "k" * 2000 + '"}'), 400),
    ("key true", JSON, payload('{"id": true}'), 400),
    ("key 1.5", JSON, payload('{"id": 1.5}'), 400),
    ("key null", JSON, payload('{"id": null}'), 400),
    ("key object", JSON, payload('{"id": {"a": 1}}'), 400),
    ("key empty string", JSON, payload('{"id": ""}'), 400),
    ("no key", JSON, payload('{"title": "t"}'), 400),
    ("TRUNCATE", JSON, payload(type_="TRUNCATE"), 400),
    ("table name of 1 MB", JSON, payload(table="t" * 1_000_000), 400),
    ("table with NUL", JSON, payload(table="articles\\u0000"), 400),
    ("record is a list", JSON, payload("[42]"), 400),
    ("two Authorization", [*JSON, (b"Authorization", b"Bearer wrong")], GOOD, 400),
    ("two Content-Type", [*JSON, (b"Content-Type", b"text/plain")], GOOD, 400),
    ("wrong secret", [CT_JSON, (b"Authorization", b"Bearer nope")], GOOD, 401),
    ("no Authorization", [CT_JSON], GOOD, 401),
    ("Basic scheme", [CT_JSON, (b"Authorization", b"Basic Zm9vOmJhcg==")], GOOD, 401),
    ("non-ASCII Authorization", [CT_JSON, (b"Authorization", b"Bearer \xe9\xff")], GOOD, 401),
    ("no Content-Type", [AUTH], GOOD, 415),
    ("text/plain", [(b"Content-Type", b"text/plain"), AUTH], GOOD, 415),
    ("form", [(b"Content-Type", b"application/x-www-form-urlencoded"), AUTH], b"a=1", 415),
    ("7 MB (Lambda takes 6)", JSON, payload('{"id": 42, "x": "' + "x" * 7_000_000 + '"}'), 413),
    ("over 10 MB", JSON, b" " * (MAX_REQUEST_BYTES + 1), 413),
    ("Content-Length not a number", [*JSON, (b"Content-Length", b"abc")], b"", 400),
]


def raw_request(
    url: str, headers: list[tuple[bytes, bytes]], body: bytes | None
) -> tuple[int, bytes]:
    """POST with exactly these header lines (repeats and odd bytes included)."""
    parts = urlsplit(url)
    lines = [b"POST %s HTTP/1.1" % parts.path.encode(), b"Host: %s" % parts.netloc.encode()]
    lines += [b"%s: %s" % header for header in headers]
    if body is not None and not any(name.lower() == b"content-length" for name, _ in headers):
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")
    request = b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as client:
        client.sendall(request)
        response = b""
        while chunk := client.recv(65536):
            response += chunk
    head, _, content = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), content


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [pytest.param(headers, body, status, id=name) for name, headers, body, status in CASES],
)
def test_hostile_request_gets_its_4xx_and_queues_nothing(
    shared_stack: PipelineStack, headers: list[tuple[bytes, bytes]], body: bytes | None, status: int
) -> None:
    # Given the running stack and a request Supabase could never send
    stack = shared_stack
    bearer = b"Bearer " + stack.webhook_secret.encode()
    headers = [(name, bearer if value == PLACEHOLDER else value) for name, value in headers]
    # When it is sent over HTTP
    answered, content = raw_request(stack.webhook_url, headers, body)
    # Then it gets the expected 4xx with a JSON error, and nothing reaches the queue
    assert answered == status, content[:300]
    assert json.loads(content)
    assert stack.queue_depth() == 0
