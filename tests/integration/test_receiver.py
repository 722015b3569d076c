"""The receiver handler in-process, under moto SQS and Secrets Manager from template.yaml."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from receiver.handler import Ports, build_ports, lambda_handler
from tests.conftest import WEBHOOK_SECRET, EmulatedAws, LambdaContext, load_event
from waituntil.adapters.queue import QueuePublisher
from waituntil.contracts import Change
from waituntil.settings import ReceiverSettings


def _ports(aws: EmulatedAws, **overrides: Any) -> Ports:
    settings = ReceiverSettings.model_validate({**aws.environment("ReceiverFunction"), **overrides})
    return build_ports(settings, secrets_client=aws.secrets, sqs=aws.sqs)


def _invoke(event: dict[str, Any], ports: Ports, context: LambdaContext) -> dict[str, Any]:
    response: dict[str, Any] = lambda_handler(event, context, ports=ports)
    response["json"] = json.loads(response["body"]) if response.get("body") else None
    return response


@pytest.mark.parametrize(
    ("event_file", "change_type", "key"),
    [
        ("receiver/insert.json", "INSERT", 42),
        ("receiver/update.json", "UPDATE", 42),
        ("receiver/delete.json", "DELETE", 42),
    ],
)
def test_valid_webhook_is_queued_then_acknowledged(
    aws: EmulatedAws, lambda_context: LambdaContext, event_file: str, change_type: str, key: int
) -> None:
    # Given a Supabase webhook with the right secret
    event = load_event(event_file)
    # When the receiver handles it
    response = _invoke(event, _ports(aws), lambda_context)
    # Then it answers 202 with the SQS message id, and that message holds the change
    assert response["statusCode"] == 202
    messages = aws.queue_messages()
    assert len(messages) == 1
    assert response["json"] == {"received": True, "id": messages[0]["MessageId"]}
    change = Change.from_message(messages[0]["Body"])
    payload = json.loads(event["body"])
    assert (change.type, change.table, change.schema_name, change.key) == (
        change_type,
        "articles",
        "public",
        key,
    )
    assert (change.record, change.old_record) == (payload["record"], payload["old_record"])
    assert change.correlation_id == event["requestContext"]["requestId"]
    assert change.bodies_dropped is False


@pytest.mark.parametrize(
    ("event_file", "status"),
    [
        ("receiver/no_auth.json", 401),
        ("receiver/bad_secret.json", 401),
        ("receiver/not_json.json", 415),
        ("receiver/malformed_json.json", 400),
        ("receiver/bad_type.json", 400),
        ("receiver/unknown_table.json", 400),
        ("receiver/missing_key.json", 400),
        ("receiver/wrong_method.json", 405),
        ("receiver/wrong_path.json", 404),
    ],
)
def test_bad_requests_get_a_json_error_and_queue_nothing(
    aws: EmulatedAws, lambda_context: LambdaContext, event_file: str, status: int
) -> None:
    # Given a request that is not an acceptable webhook
    event = load_event(event_file)
    # When the receiver handles it
    response = _invoke(event, _ports(aws), lambda_context)
    # Then the status names the problem, the body is a JSON error, and nothing is queued
    assert response["statusCode"] == status
    assert response["json"]["received"] is False
    assert response["json"]["message"]
    assert aws.queue_messages() == []


def test_wrong_method_says_which_is_allowed(
    aws: EmulatedAws, lambda_context: LambdaContext
) -> None:
    # Given GET /revalidate / When handled / Then 405 with Allow: POST
    response = _invoke(load_event("receiver/wrong_method.json"), _ports(aws), lambda_context)
    headers = response.get("multiValueHeaders") or {}
    assert headers.get("Allow") == ["POST"]


def test_oversized_body_is_refused_with_413(
    aws: EmulatedAws, lambda_context: LambdaContext
) -> None:
    # Given a body larger than the receiver accepts
    ports = _ports(aws, MAX_BODY_BYTES="100")
    # When handled / Then 413 and nothing queued
    response = _invoke(load_event("receiver/insert.json"), ports, lambda_context)
    assert response["statusCode"] == 413
    assert aws.queue_messages() == []


def test_change_too_big_for_sqs_is_queued_by_key(
    aws: EmulatedAws, lambda_context: LambdaContext
) -> None:
    # Given an UPDATE whose row bodies exceed the queue's message limit (set low here)
    event = load_event("receiver/update.json")
    payload = json.loads(event["body"])
    payload["record"]["body"] = "x" * 4000
    event["body"] = json.dumps(payload)
    ports = _ports(aws, MAX_MESSAGE_BYTES="2048")
    # When handled
    response = _invoke(event, ports, lambda_context)
    # Then it is still accepted, and the queued message keeps the key without the bodies
    assert response["statusCode"] == 202
    (message,) = aws.queue_messages()
    change = Change.from_message(message["Body"])
    assert (change.key, change.record, change.bodies_dropped) == (42, None, True)
    assert len(message["Body"].encode()) <= 2048


def test_queue_down_means_no_2xx(aws: EmulatedAws, lambda_context: LambdaContext) -> None:
    # Given SQS refusing the message (the queue does not exist)
    ports = _ports(aws)
    ports = Ports(
        ports.settings, ports.secrets, QueuePublisher(ports.settings.queue_url + "-gone", aws.sqs)
    )
    # When a valid webhook arrives
    response = _invoke(load_event("receiver/insert.json"), ports, lambda_context)
    # Then the answer is 503 (Supabase records a failure), never a 2xx
    assert response["statusCode"] == 503
    assert response["json"]["received"] is False


def test_missing_secret_is_503_not_401(aws: EmulatedAws, lambda_context: LambdaContext) -> None:
    # Given the webhook secret cannot be read from Secrets Manager
    aws.secrets.delete_secret(
        SecretId=aws.stack.resolver.parameter("WebhookSecretName"), ForceDeleteWithoutRecovery=True
    )
    # When a webhook arrives / Then the fault is ours: 503, nothing queued
    response = _invoke(load_event("receiver/insert.json"), _ports(aws), lambda_context)
    assert response["statusCode"] == 503
    assert aws.queue_messages() == []


def test_secret_and_authorization_header_never_reach_the_logs(
    aws: EmulatedAws,
    lambda_context: LambdaContext,
    captured_logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given accepted, refused and failed requests
    ports = _ports(aws)
    for event_file in (
        "receiver/insert.json",
        "receiver/bad_secret.json",
        "receiver/bad_type.json",
    ):
        _invoke(load_event(event_file), ports, lambda_context)
    down = Ports(ports.settings, ports.secrets, QueuePublisher("https://nowhere/x", aws.sqs))
    _invoke(load_event("receiver/insert.json"), down, lambda_context)
    # When we read everything they logged
    printed = capsys.readouterr()
    text = captured_logs.getvalue() + printed.out + printed.err
    # Then logs exist (with the correlation id) but hold neither secret nor header
    assert "change queued" in text
    assert "c0ffee00-0000-4000-8000-000000000001" in text
    assert WEBHOOK_SECRET not in text
    assert "not-the-secret" not in text
    assert "Bearer" not in text
