"""The secret reader's plain read (the consumer's Supabase keys) on a fake Secrets Manager."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from waituntil.adapters.secrets import SecretReader
from waituntil.core.errors import SecretUnavailable

NAME = "supabase-key"


@dataclass
class FakeSecretsManager:
    """GetSecretValue over a dict of AWSCURRENT values; counts calls, can fail as AWS does."""

    values: dict[str, str]
    fail: Exception | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    def get_secret_value(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request)
        if self.fail is not None:
            raise self.fail
        if request["SecretId"] not in self.values or request["VersionStage"] != "AWSCURRENT":
            raise ClientError(
                {"Error": {"Code": "ResourceNotFoundException", "Message": "not found"}},
                "GetSecretValue",
            )
        return {"SecretString": self.values[request["SecretId"]]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reader(client: FakeSecretsManager, max_age_s: int, clock: Clock) -> SecretReader:
    return SecretReader(client, max_age_s, clock=clock)  # type: ignore[arg-type]


def test_a_value_is_reused_until_its_max_age_then_read_again() -> None:
    # Given a reader keeping values for 300 s
    client, clock = FakeSecretsManager({NAME: "v1"}), Clock()
    reader = _reader(client, 300, clock)
    # When it reads the secret twice within 300 s, then once after a rotation and 300 s
    first, second = reader.read(NAME), reader.read(NAME)
    client.values[NAME] = "v2"
    clock.now += 299
    still = reader.read(NAME)
    clock.now += 1
    fresh = reader.read(NAME)
    # Then Secrets Manager was asked twice, for AWSCURRENT, and the new value came at 300 s
    assert (first, second, still, fresh) == ("v1", "v1", "v1", "v2")
    assert client.calls == [{"SecretId": NAME, "VersionStage": "AWSCURRENT"}] * 2


def test_a_fresh_read_skips_the_cache_and_keeps_what_it_read() -> None:
    # Given a reader that cached v1 for 300 s, and the secret corrected to v2 since
    client, clock = FakeSecretsManager({NAME: "v1"}), Clock()
    reader = _reader(client, 300, clock)
    reader.read(NAME)
    client.values[NAME] = "v2"
    # When a caller whose value was refused reads it fresh, then reads it as usual
    fresh, after = reader.read(NAME, fresh=True), reader.read(NAME)
    # Then the fresh read asked Secrets Manager, and its value is the one cached from then on
    assert (fresh, after) == ("v2", "v2")
    assert len(client.calls) == 2


def test_max_age_zero_reads_every_time() -> None:
    # Given a reader that keeps nothing / When it reads twice / Then it asks twice
    client = FakeSecretsManager({NAME: "v1"})
    reader = _reader(client, 0, Clock())
    reader.read(NAME)
    reader.read(NAME)
    assert len(client.calls) == 2


@pytest.mark.parametrize(
    "fail",
    [
        EndpointConnectionError(endpoint_url="https://secretsmanager.invalid"),
        ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Get"),
    ],
)
def test_a_failed_read_names_the_secret_and_is_not_kept(fail: Exception) -> None:
    # Given Secrets Manager failing
    client = FakeSecretsManager({NAME: "the-value"}, fail=fail)
    reader = _reader(client, 300, Clock())
    # When the secret is read / Then a typed error names it, never a value
    with pytest.raises(SecretUnavailable, match=NAME) as raised:
        reader.read(NAME)
    assert "the-value" not in str(raised.value)
    # And once Secrets Manager is back, the next read asks again (a failure is not cached)
    client.fail = None
    assert reader.read(NAME) == "the-value"


def test_an_empty_or_missing_secret_is_unavailable() -> None:
    # Given one empty secret and one that does not exist
    reader = _reader(FakeSecretsManager({NAME: ""}), 300, Clock())
    # When each is read / Then each is refused with a typed error
    with pytest.raises(SecretUnavailable):
        reader.read(NAME)
    with pytest.raises(SecretUnavailable):
        reader.read("no-such-secret")
