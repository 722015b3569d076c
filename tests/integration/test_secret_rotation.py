"""Rotating the webhook secret refuses no webhook: current and pending values are both accepted."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from receiver.handler import Ports, build_ports, lambda_handler
from tests.conftest import WEBHOOK_SECRET, EmulatedAws, LambdaContext, load_event
from waituntil.adapters.secrets import SecretReader
from waituntil.errors import Unauthorized
from waituntil.settings import ReceiverSettings
from waituntil.webhook import check_bearer

NEW_SECRET = "rotated-secret"


def _ports(aws: EmulatedAws) -> Ports:
    # No caching, so each request sees the secret's stages as they are now.
    environment = {**aws.environment("ReceiverFunction"), "SECRET_MAX_AGE_SECONDS": "0"}
    settings = ReceiverSettings.model_validate(environment)
    return build_ports(settings, secrets_client=aws.secrets, sqs=aws.sqs)


def _status(aws: EmulatedAws, context: LambdaContext, secret: str) -> int:
    event: dict[str, Any] = copy.deepcopy(load_event("receiver/insert.json"))
    event["headers"]["Authorization"] = f"Bearer {secret}"
    event["multiValueHeaders"]["Authorization"] = [f"Bearer {secret}"]
    status: int = lambda_handler(event, context, ports=_ports(aws))["statusCode"]
    return status


def _secret_name(aws: EmulatedAws) -> str:
    return aws.environment("ReceiverFunction")["WEBHOOK_SECRET_NAME"]


def test_during_a_rotation_both_values_are_accepted_and_no_other(
    aws: EmulatedAws, lambda_context: LambdaContext
) -> None:
    # Given a rotation under way: the new value stored as the AWSPENDING version
    aws.secrets.put_secret_value(
        SecretId=_secret_name(aws), SecretString=NEW_SECRET, VersionStages=["AWSPENDING"]
    )

    # When webhooks arrive with the old value, the new one, and a wrong one
    statuses = [
        _status(aws, lambda_context, secret) for secret in (WEBHOOK_SECRET, NEW_SECRET, "x")
    ]

    # Then the sender may switch at any moment: old and new are queued, anything else refused
    assert statuses == [202, 202, 401]


def test_without_a_rotation_only_the_current_value_is_accepted(
    aws: EmulatedAws, lambda_context: LambdaContext
) -> None:
    # Given a secret with no pending version
    # When webhooks arrive with the current value and a value that was never stored
    statuses = [_status(aws, lambda_context, secret) for secret in (WEBHOOK_SECRET, NEW_SECRET)]
    # Then only the current one is accepted
    assert statuses == [202, 401]


def test_after_the_rotation_the_old_value_is_refused(
    aws: EmulatedAws, lambda_context: LambdaContext
) -> None:
    # Given a rotation completed: the new value is AWSCURRENT, the old one AWSPREVIOUS, and
    # nothing is pending (moto does not move AWSCURRENT on update_secret_version_stage, so the
    # end state is written directly)
    aws.secrets.put_secret_value(SecretId=_secret_name(aws), SecretString=NEW_SECRET)

    # When webhooks arrive with the old value and the new one
    statuses = [_status(aws, lambda_context, secret) for secret in (WEBHOOK_SECRET, NEW_SECRET)]

    # Then only the new one is accepted
    assert statuses == [401, 202]


def test_the_pending_value_is_cached_like_the_current_one(aws: EmulatedAws) -> None:
    # Given a reader caching for 300 s on a clock we move, and no rotation under way
    now = [0.0]
    reader = SecretReader(aws.secrets, max_age_s=300, clock=lambda: now[0])
    name = _secret_name(aws)
    assert reader.read_accepted(name) == (WEBHOOK_SECRET,)

    # When a rotation starts, read within the cache age and after it
    aws.secrets.put_secret_value(
        SecretId=name, SecretString=NEW_SECRET, VersionStages=["AWSPENDING"]
    )
    now[0] = 299.0
    within = reader.read_accepted(name)
    now[0] = 300.0
    after = reader.read_accepted(name)

    # Then Secrets Manager is asked again only once the cached answer is 300 s old
    assert within == (WEBHOOK_SECRET,)
    assert after == (WEBHOOK_SECRET, NEW_SECRET)


def test_every_secret_is_compared_and_none_means_refused() -> None:
    # Given two accepted secrets
    # When each, and a third, is presented
    check_bearer("Bearer one", "one", "two")
    check_bearer("bearer two", "one", "two")
    # Then both pass, the third is refused, and no secret at all is a programming error
    with pytest.raises(Unauthorized):
        check_bearer("Bearer three", "one", "two")
    with pytest.raises(ValueError, match="no secret"):
        check_bearer("Bearer one")
