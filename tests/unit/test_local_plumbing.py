"""The local stack's translation layers, checked against the template and the bundled events.

No stack is started: these pin down the API Gateway event, the SQS settlement rules and the
container's Lambda behaviour that the end-to-end tests rely on.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from local.api_gateway import HttpRequest, api_routes, api_settings, build_event, match_route
from local.lambda_runtime import (
    FunctionContainer,
    FunctionSpec,
    Invocation,
    container_environment,
)
from local.poller import settled_messages
from local.template import Resolver, load_template
from tests.conftest import load_event


@pytest.fixture(scope="module")
def resolver() -> Resolver:
    return Resolver(load_template())


def test_webhook_request_becomes_the_bundled_event_shape(resolver: Resolver) -> None:
    # Given the bundled API Gateway event and the same request made over HTTP
    bundled = load_event("receiver/insert.json")
    request = HttpRequest(
        method="POST",
        target="/revalidate",
        headers=[(name, value) for name, value in bundled["headers"].items()],
        body=bundled["body"].encode(),
        source_ip="203.0.113.10",
    )
    routes = api_routes(resolver)
    match = match_route(routes, "POST", "/revalidate")
    assert match is not None

    # When the local API Gateway builds the event
    event = build_event(
        request,
        match[0],
        match[1],
        api_settings(resolver),
        "req-1",
        now=datetime(2026, 11, 28, 12, 0, tzinfo=UTC),
    )

    # Then it has the bundled event's keys and values where they do not depend on the deployment
    assert match[0].function_id == "ReceiverFunction"
    assert set(event) == set(bundled)
    assert set(bundled["requestContext"]) <= set(event["requestContext"])
    for key in ("resource", "path", "httpMethod"):
        assert event[key] == bundled[key], key
    # And the body is the bytes sent, base64 (the template's BinaryMediaTypes is */*); the
    # bundled events carry it as text, which the receiver takes as well
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == bundled["body"].encode()
    # And the headers are the request's, plus the scheme API Gateway adds (http here)
    assert event["headers"] == {**bundled["headers"], "X-Forwarded-Proto": "http"}
    assert event["multiValueHeaders"] == {
        **bundled["multiValueHeaders"],
        "X-Forwarded-Proto": ["http"],
    }
    context = event["requestContext"]
    assert (context["stage"], context["path"], context["requestId"]) == (
        "v1",
        "/v1/revalidate",
        "req-1",
    )
    assert context["requestTime"] == "28/Nov/2026:12:00:00 +0000"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/revalidate", ("ReceiverFunction", {})),
        ("GET", "/revalidate", ("ReceiverFunction", {})),
        ("GET", "/articles", ("ReaderFunction", {"table": "articles"})),
        ("GET", "/articles/42", ("ReaderFunction", {"table": "articles", "id": "42"})),
        ("GET", "/articles/a%20b", ("ReaderFunction", {"table": "articles", "id": "a b"})),
        ("GET", "/", None),
        ("POST", "/a/b/c", None),
    ],
)
def test_routes_come_from_the_template(
    resolver: Resolver, method: str, path: str, expected: tuple[str, dict[str, str]] | None
) -> None:
    # Given the template's Api events
    routes = api_routes(resolver)

    # When a request path is matched
    match = match_route(routes, method, path)

    # Then a literal path beats {table}, parameters are filled, and no match means 403
    assert (None if match is None else (match[0].function_id, match[1])) == expected


def _messages(count: int) -> list[Any]:
    return [{"MessageId": f"m{index}", "ReceiptHandle": f"r{index}"} for index in range(count)]


@pytest.mark.parametrize(
    ("invocation", "deleted"),
    [
        (Invocation({"batchItemFailures": []}, None, 0.1), ["m0", "m1", "m2"]),
        (Invocation(None, None, 0.1), ["m0", "m1", "m2"]),
        (Invocation({"batchItemFailures": [{"itemIdentifier": "m1"}]}, None, 0.1), ["m0", "m2"]),
        (Invocation({"batchItemFailures": [{"itemIdentifier": ""}]}, None, 0.1), []),
        (Invocation({"batchItemFailures": [{"itemIdentifier": "other"}]}, None, 0.1), []),
        (Invocation(None, {"errorType": "BatchProcessingError"}, 0.1), []),
    ],
    ids=["all-ok", "null-response", "one-failed", "empty-id", "unknown-id", "raised"],
)
def test_settlement_follows_lambdas_report_batch_item_failures(
    invocation: Invocation, deleted: list[str]
) -> None:
    # Given a batch of three messages and the function's outcome
    batch = _messages(3)

    # When the poller settles the batch
    settled = settled_messages(batch, invocation, report_item_failures=True)

    # Then exactly the messages Lambda would delete are deleted
    assert [message["MessageId"] for message in settled] == deleted


def test_container_reports_errors_and_replaces_itself_after_a_timeout(tmp_path: Path) -> None:
    # Given a container for a handler that sleeps as long as it is told, with a 1 s timeout
    (tmp_path / "sleepy.py").write_text(
        "import time\n"
        "def handler(event, context):\n"
        "    if event.get('fail'):\n"
        "        raise ValueError('asked to fail')\n"
        "    time.sleep(event['sleep_s'])\n"
        "    return {'remaining_ms': context.get_remaining_time_in_millis()}\n"
    )
    spec = FunctionSpec(
        logical_id="Sleepy",
        function_name="local-Sleepy",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:local-Sleepy",
        handler="sleepy.handler",
        code_paths=(str(tmp_path),),
        timeout_s=1.0,
        memory_mb=128,
        environment={},
    )
    container = FunctionContainer(spec, container_environment(spec, {}))
    container.start()
    try:
        # When it is invoked normally, then with an error, then past its timeout, then again
        quick = container.invoke({"sleep_s": 0})
        failed = container.invoke({"fail": True})
        started = time.monotonic()
        slow = container.invoke({"sleep_s": 30})
        timed_out_after = time.monotonic() - started
        after = container.invoke({"sleep_s": 0})
    finally:
        container.stop()

    # Then the handler sees its deadline, errors come back as Lambda reports them, a timeout
    # ends the invocation at the function's Timeout, and a fresh container serves the next one
    assert quick.ok and 0 < quick.response["remaining_ms"] <= 1000
    assert failed.error is not None
    assert (failed.error["errorType"], failed.error["errorMessage"]) == (
        "ValueError",
        "asked to fail",
    )
    assert slow.error is not None and slow.error["errorType"] == "Sandbox.Timedout"
    assert timed_out_after < 5
    assert after.ok
