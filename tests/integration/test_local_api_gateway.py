"""The local API gateway answers oversized requests as API Gateway does: 413, no reset.

A client (pg_net, urllib, requests) writes the whole body before it reads the answer. A server
that answers 413 and closes without reading the body leaves unread bytes in its socket, and
the kernel then resets the connection: the client sees ECONNRESET or a broken pipe, not the
413. So the gateway reads and discards the excess before it answers (and answers at once when
the client asked for ``Expect: 100-continue`` and so waits before sending the body).
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from local.api_gateway import MAX_REQUEST_BYTES, ApiGateway, ApiSettings, api_routes
from local.lambda_runtime import Invocation
from local.template import Resolver, load_template


class RecordingFunctions:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, function_id: str, event: dict[str, Any]) -> Invocation:
        self.events.append(event)
        return Invocation(response={"statusCode": 202, "body": "{}"}, error=None, duration_s=0)


@pytest.fixture
def gateway() -> Iterator[tuple[ApiGateway, RecordingFunctions]]:
    resolver = Resolver(load_template(), parameters={"SupabaseUrl": "http://127.0.0.1:1"})
    functions = RecordingFunctions()
    api = ApiGateway()
    api.serve(api_routes(resolver), ApiSettings(), functions)
    yield api, functions
    api.stop()


def _connection(api: ApiGateway) -> http.client.HTTPConnection:
    host, port = api.url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=30)


def test_a_body_over_10_mb_gets_413_not_a_reset(
    gateway: tuple[ApiGateway, RecordingFunctions],
) -> None:
    # Given a webhook body one byte over API Gateway's 10 MB limit
    api, functions = gateway
    body = b"x" * (MAX_REQUEST_BYTES + 1)
    # When a client sends all of it, then reads the answer
    connection = _connection(api)
    connection.request(
        "POST", "/revalidate", body=body, headers={"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    # Then it reads API Gateway's 413, and the function was never invoked
    assert response.status == 413
    assert json.loads(response.read()) == {"message": "Request Too Long"}
    assert functions.events == []


def test_a_chunked_body_over_10_mb_gets_413(
    gateway: tuple[ApiGateway, RecordingFunctions],
) -> None:
    # Given a chunked upload that passes 10 MB
    api, functions = gateway
    chunks = (b"y" * 1_048_576 for _ in range(20))
    # When sent / Then 413, nothing invoked
    connection = _connection(api)
    connection.request("POST", "/revalidate", body=chunks, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413
    assert functions.events == []


def test_expect_100_continue_is_answered_413_before_the_body(
    gateway: tuple[ApiGateway, RecordingFunctions],
) -> None:
    # Given a client (curl does this for large bodies) announcing 11 MB and waiting
    api, functions = gateway
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(
            b"POST /revalidate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (MAX_REQUEST_BYTES + 1)
        )
        # When it reads before sending anything / Then the answer is already a 413
        status_line = client.recv(4096).split(b"\r\n", 1)[0]
    # (the reason phrase is "Content Too Large" from Python 3.13, as in RFC 9110)
    assert status_line.startswith(b"HTTP/1.1 413 ")
    assert functions.events == []


def test_a_body_at_the_limit_reaches_the_function(
    gateway: tuple[ApiGateway, RecordingFunctions],
) -> None:
    # Given a body of exactly 10 MB / When sent / Then the function gets it (it answers itself)
    api, functions = gateway
    connection = _connection(api)
    connection.request("POST", "/revalidate", body=b"z" * MAX_REQUEST_BYTES)
    assert connection.getresponse().status == 202
    assert len(functions.events) == 1


def _raw(api: ApiGateway, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(request)
        response = b""
        while chunk := client.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split(" ")[1]), headers, body


@pytest.mark.parametrize("method", ["TRACE", "QUERY", "PROPFIND", "BREW"])
@pytest.mark.parametrize("path", ["/revalidate", "/articles", "/articles/1"])
def test_a_method_api_gateway_has_no_route_for_gets_its_403_in_json(
    gateway: tuple[ApiGateway, RecordingFunctions], method: str, path: str
) -> None:
    # Given routes declared with Method: ANY, which API Gateway maps to its seven methods
    # (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS) and no other
    api, functions = gateway
    # When a request uses another method
    status, headers, body = _raw(
        api, f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    # Then it gets the REST API's answer to a request no route matches, in JSON, and no
    # function is invoked (http.server alone answers 501 with an HTML page)
    assert status == 403
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"message": "Missing Authentication Token"}
    assert functions.events == []


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"GET /articles HTTP/9.9", 505),
        (b"GET /articles HTTP/1.1 extra", 400),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1", 414),
    ],
)
def test_a_request_http_cannot_parse_gets_a_json_error(
    gateway: tuple[ApiGateway, RecordingFunctions], request_line: bytes, status: int
) -> None:
    # Given a request line the HTTP server cannot parse
    api, functions = gateway
    # When it is sent
    answered, headers, body = _raw(api, request_line + b"\r\nHost: x\r\n\r\n")
    # Then the error is JSON as every other answer of the API, never an HTML page
    assert answered == status
    assert headers["Content-Type"] == "application/json"
    assert set(json.loads(body)) == {"message"}
    assert functions.events == []
