"""The receiver's use case on fakes: what is queued, and what is refused with nothing queued."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import WEBHOOK_SECRET, load_event
from tests.fakes import MemoryQueue
from waituntil.core.contracts import Change
from waituntil.core.errors import (
    InvalidHeaders,
    PayloadTooLarge,
    QueueUnavailable,
    SecretUnavailable,
    Unauthorized,
)
from waituntil.core.settings import ReceiverSettings
from waituntil.receive.accept import ReceiverPorts, WebhookRequest, accept

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SECRET_NAME = "webhook-secret"


@dataclass
class FakeSecrets:
    """The webhook secret's versions; counts the reads, can be down."""

    versions: tuple[str, ...] = (WEBHOOK_SECRET,)
    down: bool = False
    reads: list[str] = field(default_factory=list)

    def accepted_versions(self, name: str) -> Iterator[str]:
        self.reads.append(name)
        if self.down:
            raise SecretUnavailable(f"cannot read secret {name!r}")
        yield from self.versions


class DownQueue:
    def publish(self, body: str) -> str:
        raise QueueUnavailable("the change queue did not accept the message")


def _ports(
    secrets: FakeSecrets | None = None, queue: Any = None, **environment: str
) -> ReceiverPorts:
    settings = ReceiverSettings.model_validate(
        {
            "QUEUE_URL": "https://queue",
            "WEBHOOK_SECRET_NAME": SECRET_NAME,
            "MAX_MESSAGE_BYTES": "262144",
            **environment,
        }
    )
    return ReceiverPorts(
        settings=settings,
        secrets=secrets or FakeSecrets(),
        queue=MemoryQueue() if queue is None else queue,
        clock=lambda: NOW,
    )


def _request(event_file: str = "receiver/insert.json", **changes: Any) -> WebhookRequest:
    """The request parts of one of the bundled API Gateway events."""
    event = load_event(event_file)
    request = WebhookRequest(
        body=event["body"],
        is_base64_encoded=event["isBase64Encoded"],
        authorization=event["headers"].get("Authorization"),
        content_type=event["headers"].get("Content-Type"),
        multi_value_headers=event["multiValueHeaders"],
        request_id=event["requestContext"]["requestId"],
    )
    return WebhookRequest(**{**request.__dict__, **changes})


def test_a_valid_webhook_is_queued_with_its_key_time_and_correlation_id() -> None:
    # Given a receiver with a working queue, and Supabase's INSERT webhook
    queue = MemoryQueue()
    request = _request()
    # When it is accepted
    accepted = accept(request, _ports(queue=queue))
    # Then exactly one message is queued, and the answer carries that message's id
    (body,) = queue.bodies
    assert accepted.message_id == "m1"
    change = Change.from_message(body)
    assert change == accepted.change
    assert (change.type, change.table, change.key, change.bodies_dropped) == (
        "INSERT",
        "articles",
        42,
        False,
    )
    assert change.record == json.loads(request.body or "")["record"]
    assert (change.received_at, change.correlation_id) == (NOW, request.request_id)


def test_a_pending_secret_is_accepted_mid_rotation() -> None:
    # Given a rotation under way: the sender already uses the pending secret
    secrets = FakeSecrets(versions=("old-secret", "new-secret"))
    queue = MemoryQueue()
    # When a webhook with the new secret arrives
    accept(_request(authorization="Bearer new-secret"), _ports(secrets, queue))
    # Then it is queued
    assert len(queue.bodies) == 1


def test_a_wrong_bearer_is_unauthorized_and_nothing_is_sent() -> None:
    # Given a webhook with a secret that is not the webhook secret
    queue = MemoryQueue()
    secrets = FakeSecrets()
    # When it is handled / Then it is refused as unauthorized, after reading the secret
    with pytest.raises(Unauthorized):
        accept(_request(authorization="Bearer not-the-secret"), _ports(secrets, queue))
    assert secrets.reads == [SECRET_NAME]
    assert queue.bodies == []


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"authorization": None}, Unauthorized),
        (
            {"multi_value_headers": {"Authorization": [f"Bearer {WEBHOOK_SECRET}", "Bearer x"]}},
            InvalidHeaders,
        ),
    ],
    ids=["no token", "Authorization twice"],
)
def test_a_request_refused_on_its_headers_reads_no_secret(
    changes: dict[str, Any], error: type[Exception]
) -> None:
    # Given Secrets Manager down, and a request without a token or with two
    secrets = FakeSecrets(down=True)
    queue = MemoryQueue()
    # When it is handled / Then it is the sender's fault (4xx), no secret read, nothing sent
    with pytest.raises(error):
        accept(_request(**changes), _ports(secrets, queue))
    assert secrets.reads == [] and queue.bodies == []


def test_secrets_down_is_a_dependency_failure_and_nothing_is_sent() -> None:
    # Given Secrets Manager down / When a webhook with a token arrives
    queue = MemoryQueue()
    with pytest.raises(SecretUnavailable):
        accept(_request(), _ports(FakeSecrets(down=True), queue))
    # Then nothing is queued (the handler answers 503)
    assert queue.bodies == []


def test_queue_down_raises_queue_unavailable() -> None:
    # Given SQS refusing every message / When a valid webhook arrives
    # Then the failure reaches the caller: no id, so no 2xx can be answered
    with pytest.raises(QueueUnavailable):
        accept(_request(), _ports(queue=DownQueue()))


def test_a_body_over_the_limit_is_refused_and_nothing_is_sent() -> None:
    # Given a receiver that accepts at most 100 bytes of body
    queue = MemoryQueue()
    # When a larger webhook arrives / Then 413's error, nothing queued
    with pytest.raises(PayloadTooLarge):
        accept(_request(), _ports(queue=queue, MAX_BODY_BYTES="100"))
    assert queue.bodies == []


def test_bodies_too_large_for_a_message_are_dropped_and_the_key_kept() -> None:
    # Given an UPDATE whose bodies exceed the message limit (set low here)
    payload = json.loads(_request("receiver/update.json").body or "")
    payload["record"]["body"] = "x" * 4000
    queue = MemoryQueue()
    # When it is accepted
    accepted = accept(
        _request("receiver/update.json", body=json.dumps(payload)),
        _ports(queue=queue, MAX_MESSAGE_BYTES="2048"),
    )
    # Then the message holds the key without the bodies, and fits the limit
    (body,) = queue.bodies
    assert len(body.encode()) <= 2048
    change = Change.from_message(body)
    assert (change.key, change.record, change.old_record, change.bodies_dropped) == (
        42,
        None,
        None,
        True,
    )
    assert accepted.change.bodies_dropped


def test_a_base64_body_is_read_as_its_bytes() -> None:
    # Given the INSERT webhook as API Gateway passes a binary media type: base64
    plain = _request()
    encoded = base64.b64encode((plain.body or "").encode()).decode()
    queue = MemoryQueue()
    # When it is accepted / Then the same change is queued
    accepted = accept(_request(body=encoded, is_base64_encoded=True), _ports(queue=queue))
    assert accepted.change.record == json.loads(plain.body or "")["record"]


def test_an_update_that_changes_the_key_queues_both_keys() -> None:
    # Given Supabase's webhook for UPDATE articles SET id = 4200 WHERE id = 42
    queue = MemoryQueue()
    request = _request("receiver/update_key.json")
    # When it is accepted
    accept(request, _ports(queue=queue))
    # Then the one queued change carries the new key and the old one
    (body,) = queue.bodies
    change = Change.from_message(body)
    assert (change.type, change.key, change.old_key) == ("UPDATE", 4200, 42)
    assert change.keys == ("4200", "42")


def test_an_update_that_keeps_its_key_has_no_old_key() -> None:
    # Given an UPDATE of a row's title only / When accepted / Then one key travels
    queue = MemoryQueue()
    accept(_request("receiver/update.json"), _ports(queue=queue))
    change = Change.from_message(queue.bodies[0])
    assert (change.key, change.old_key, change.keys) == (42, None, ("42",))
