"""The receiver handler in-process, under moto SQS and Secrets Manager from template.yaml."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from local.template import load_template
from receiver.handler import build_ports, lambda_handler
from tests.conftest import WEBHOOK_SECRET, EmulatedAws, LambdaContext, load_event
from tests.faults import FAULTS, FaultyClient, unreachable
from waituntil.adapters.queue import QueuePublisher
from waituntil.adapters.secrets import SecretReader
from waituntil.core.contracts import Change
from waituntil.core.settings import ReceiverSettings
from waituntil.receive.accept import ReceiverPorts


def _ports(aws: EmulatedAws, **overrides: Any) -> ReceiverPorts:
    settings = ReceiverSettings.model_validate({**aws.environment("ReceiverFunction"), **overrides})
    return build_ports(settings, secrets_client=aws.secrets, sqs=aws.sqs)


def _invoke(event: dict[str, Any], ports: ReceiverPorts, context: LambdaContext) -> dict[str, Any]:
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


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("post", "/revalidate", 202),  # methods are case-insensitive
        ("BREW", "/revalidate", 405),  # any method but POST on the one resource
        ("POST", "/revalidate/", 404),
        ("POST", "/Revalidate", 404),
        ("POST", "/", 404),
    ],
)
def test_one_resource_one_method(
    aws: EmulatedAws, lambda_context: LambdaContext, method: str, path: str, status: int
) -> None:
    # Given a valid webhook sent with a method and to a path
    event = {**load_event("receiver/insert.json"), "httpMethod": method, "path": path}
    # When the receiver handles it / Then only POST /revalidate queues it
    response = _invoke(event, _ports(aws), lambda_context)
    assert response["statusCode"] == status
    assert response["multiValueHeaders"]["Content-Type"] == ["application/json"]
    assert len(aws.queue_messages()) == (1 if status == 202 else 0)


@pytest.mark.parametrize("case", [str.lower, str.upper])
def test_header_names_are_matched_whatever_their_case(
    aws: EmulatedAws, lambda_context: LambdaContext, case: Any
) -> None:
    # Given a valid webhook whose header names arrive in another case (HTTP/2 lower-cases them)
    event = load_event("receiver/insert.json")
    event["headers"] = {case(name): value for name, value in event["headers"].items()}
    event["multiValueHeaders"] = {
        case(name): values for name, values in event["multiValueHeaders"].items()
    }
    # When the receiver handles it / Then its Authorization and Content-Type are found
    assert _invoke(event, _ports(aws), lambda_context)["statusCode"] == 202


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
    ports = ReceiverPorts(
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
    down = ReceiverPorts(
        ports.settings, ports.secrets, QueuePublisher("https://nowhere/x", aws.sqs)
    )
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


# ----- faults at the receiver: a 503 and nothing claimed -------------------------------------


def _faulty_ports(
    aws: EmulatedAws, *, sqs: FaultyClient | None = None, secrets: FaultyClient | None = None
) -> ReceiverPorts:
    settings = ReceiverSettings.model_validate(aws.environment("ReceiverFunction"))
    return build_ports(
        settings,
        secrets_client=secrets or FaultyClient(aws.secrets),  # type: ignore[arg-type]
        sqs=sqs or FaultyClient(aws.sqs),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_sqs_failing_is_503_and_nothing_is_claimed(
    aws: EmulatedAws, lambda_context: LambdaContext, fault: str
) -> None:
    # Given SQS throttling, unreachable, timing out or failing inside
    sqs = FaultyClient(aws.sqs, {"send_message": FAULTS[fault]})
    ports = _faulty_ports(aws, sqs=sqs)
    # When a valid webhook arrives
    response = _invoke(load_event("receiver/insert.json"), ports, lambda_context)
    # Then the send was tried, the answer is 503 with Retry-After, and nothing is queued
    assert sqs.calls == ["send_message"]
    assert response["statusCode"] == 503
    assert response["json"]["received"] is False
    assert (response.get("multiValueHeaders") or {}).get("Retry-After") == ["1"]
    assert aws.queue_messages() == []


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_secrets_manager_down_at_cold_start_is_503(
    aws: EmulatedAws, lambda_context: LambdaContext, fault: str
) -> None:
    # Given a fresh container (nothing cached) and Secrets Manager failing
    secrets = FaultyClient(aws.secrets, {"get_secret_value": FAULTS[fault]})
    sqs = FaultyClient(aws.sqs)
    ports = _faulty_ports(aws, secrets=secrets, sqs=sqs)
    # When a webhook with a bearer token arrives
    response = _invoke(load_event("receiver/insert.json"), ports, lambda_context)
    # Then it cannot be authenticated: 503 (our fault, not the sender's), SQS never called
    assert response["statusCode"] == 503
    assert "get_secret_value" in secrets.calls
    assert sqs.calls == []
    assert aws.queue_messages() == []


def test_a_request_without_a_token_is_401_even_when_secrets_manager_is_down(
    aws: EmulatedAws, lambda_context: LambdaContext
) -> None:
    # Given Secrets Manager down / When a request without Authorization arrives
    secrets = FaultyClient(aws.secrets, {"get_secret_value": unreachable})
    response = _invoke(
        load_event("receiver/no_auth.json"), _faulty_ports(aws, secrets=secrets), lambda_context
    )
    # Then it is refused as the sender's fault, without reading any secret
    assert response["statusCode"] == 401
    assert secrets.calls == []


def test_secrets_manager_down_in_a_warm_container_uses_the_cached_secret(
    aws: EmulatedAws, lambda_context: LambdaContext
) -> None:
    # Given a container that read the secret once
    secrets = FaultyClient(aws.secrets)
    ports = _faulty_ports(aws, secrets=secrets)
    assert _invoke(load_event("receiver/insert.json"), ports, lambda_context)["statusCode"] == 202
    # When Secrets Manager goes down within the cache's max age
    secrets.faults["get_secret_value"] = unreachable
    response = _invoke(load_event("receiver/update.json"), ports, lambda_context)
    # Then webhooks are still accepted and queued
    assert response["statusCode"] == 202
    assert len(aws.queue_messages()) == 2


def test_characters_sqs_refuses_never_reach_it(
    aws: EmulatedAws, lambda_context: LambdaContext
) -> None:
    # Given a row whose text holds U+FFFF (Postgres text may; real SQS refuses it raw)
    event = load_event("receiver/insert.json")
    payload = json.loads(event["body"])
    payload["record"]["title"] = "odd \uffff title"
    event["body"] = json.dumps(payload, ensure_ascii=False)
    # When handled by a receiver whose SQS checks characters as the real one does
    response = _invoke(event, _faulty_ports(aws), lambda_context)
    # Then it is queued (202), and the consumer reads the title back unchanged
    assert response["statusCode"] == 202
    (message,) = aws.queue_messages()
    assert Change.from_message(message["Body"]).record == payload["record"]


# ----- rotating the webhook secret without downtime -----------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _rotating_ports(aws: EmulatedAws, clock: Clock) -> ReceiverPorts:
    ports = _ports(aws)
    return ReceiverPorts(ports.settings, SecretReader(aws.secrets, 300, clock=clock), ports.queue)


def _with_token(token: str) -> dict[str, Any]:
    event = load_event("receiver/insert.json")
    event["headers"]["Authorization"] = f"Bearer {token}"
    event["multiValueHeaders"]["Authorization"] = [f"Bearer {token}"]
    return event


def _finish_rotation(aws: EmulatedAws, name: str) -> None:
    """Step 3 of the rotation procedure (docs/OPERATING.md), as the two CLI calls do it."""
    versions = aws.secrets.list_secret_version_ids(SecretId=name)["Versions"]
    stages = {version["VersionId"]: version.get("VersionStages", []) for version in versions}
    new_id = next(vid for vid, names in stages.items() if "AWSPENDING" in names)
    old_id = next(vid for vid, names in stages.items() if "AWSCURRENT" in names)
    aws.secrets.update_secret_version_stage(
        SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=new_id, RemoveFromVersionId=old_id
    )
    aws.secrets.update_secret_version_stage(
        SecretId=name, VersionStage="AWSPENDING", RemoveFromVersionId=new_id
    )


def test_rotation_accepts_current_and_pending_then_retires_the_old_secret(
    aws: EmulatedAws, lambda_context: LambdaContext
) -> None:
    clock = Clock()
    name = aws.stack.resolver.parameter("WebhookSecretName")
    ports = _rotating_ports(aws, clock)

    def status(token: str) -> int:
        return int(_invoke(_with_token(token), ports, lambda_context)["statusCode"])

    # Given a warm receiver that accepts the current secret only
    assert (status(WEBHOOK_SECRET), status("new-secret")) == (202, 401)
    # When step 1 stages the new secret as AWSPENDING and the cache's max age passes
    aws.secrets.put_secret_value(
        SecretId=name, SecretString="new-secret", VersionStages=["AWSPENDING"]
    )
    clock.now += 300
    # Then both secrets are accepted: Supabase can switch at any moment (step 2)
    assert (status(WEBHOOK_SECRET), status("new-secret")) == (202, 202)
    # When step 3 makes the new secret AWSCURRENT (the old one becomes AWSPREVIOUS)
    _finish_rotation(aws, name)
    # Then the old secret stays valid until the cache's max age (300 s) has passed, no longer
    clock.now += 299
    assert (status(WEBHOOK_SECRET), status("new-secret")) == (202, 202)
    clock.now += 1
    assert (status(WEBHOOK_SECRET), status("new-secret")) == (401, 202)
    # And AWSPREVIOUS (the old secret) is never accepted
    assert "AWSPREVIOUS" in str(aws.secrets.list_secret_version_ids(SecretId=name))
    assert len(aws.queue_messages()) == 6


def test_a_rotation_finishing_between_the_two_reads_never_refuses_the_new_secret(
    aws: EmulatedAws,
) -> None:
    # Given a rotation under way (new secret pending) that finishes right after the first
    # Secrets Manager call of a refresh
    name = aws.stack.resolver.parameter("WebhookSecretName")
    aws.secrets.put_secret_value(SecretId=name, SecretString="new", VersionStages=["AWSPENDING"])

    class FinishAfterFirstCall:
        calls = 0

        def get_secret_value(self, **kwargs: Any) -> Any:
            response = aws.secrets.get_secret_value(**kwargs)
            self.calls += 1
            if self.calls == 1:
                _finish_rotation(aws, name)
            return response

    reader = SecretReader(FinishAfterFirstCall(), 300)  # type: ignore[arg-type]
    # When the reader refreshes / Then the new secret is among those accepted
    assert "new" in list(reader.accepted_versions(name))


def test_the_receiver_may_read_only_its_own_secret() -> None:
    # Given the template / When the receiver's policies are read
    template = load_template()
    policies = template["Resources"]["ReceiverFunction"]["Properties"]["Policies"]
    secret_policies = [p for p in policies if "AWSSecretsManagerGetSecretValuePolicy" in p]
    # Then the one secrets policy is SAM's GetSecretValue template on the webhook secret alone:
    # reading AWSPENDING is a VersionStage parameter of GetSecretValue, no other permission
    (policy,) = secret_policies
    arn = policy["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]
    assert "${WebhookSecretName}-??????" in str(arn)
    assert all("SecretsManager" not in str(p) or p is policy for p in policies)


def test_the_receiver_fits_messages_to_the_limit_its_queues_have(aws: EmulatedAws) -> None:
    # Given the queues as template.yaml creates them, and the receiver's environment from it
    settings = ReceiverSettings.model_validate(aws.environment("ReceiverFunction"))
    # When each queue's limit is read back from SQS
    limits = {
        logical_id: aws.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["MaximumMessageSize"]
        )["Attributes"]["MaximumMessageSize"]
        for logical_id, url in aws.stack.queue_urls.items()
    }
    # Then every queue (the dead-letter queue too: a message is moved there whole) takes the
    # largest message the receiver sends, and that is SQS's own limit
    assert len(limits) == 2
    assert {int(limit) for limit in limits.values()} == {settings.max_message_bytes}
    assert settings.max_message_bytes == 1024 * 1024
