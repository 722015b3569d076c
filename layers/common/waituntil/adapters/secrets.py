"""Secrets by name, values from Secrets Manager, cached in the container by Powertools."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from waituntil.errors import SecretUnavailable

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


PENDING = "AWSPENDING"


class SecretReader:
    """Reads a string secret by name; a value is reused for ``max_age_s`` seconds."""

    def __init__(
        self,
        client: SecretsManagerClient,
        max_age_s: int = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._provider = SecretsProvider(boto3_client=client)
        self._max_age_s = max_age_s
        self._clock = clock
        self._pending: dict[str, tuple[str | None, float]] = {}  # name -> (value, read at)

    def read_accepted(self, name: str) -> tuple[str, ...]:
        """The current value, and the pending one while a rotation is under way.

        Rotating a shared secret is two steps on two systems (the new value here, then the
        header in Supabase's webhook); accepting the AWSPENDING version as well lets the sender
        switch at any moment in between without one webhook being refused (README, "Rotating
        secrets"). Powertools' cache keys on the name alone, hence a cache of its own here.
        """
        current = self.read(name)
        value, read_at = self._pending.get(name, (None, float("-inf")))
        if self._clock() - read_at >= self._max_age_s:
            value = self._read_pending(name)
            self._pending[name] = (value, self._clock())
        return (current,) if value is None or value == current else (current, value)

    def _read_pending(self, name: str) -> str | None:
        try:
            response = self._client.get_secret_value(SecretId=name, VersionStage=PENDING)
        except self._client.exceptions.ResourceNotFoundException:
            return None  # no rotation under way: the usual case
        except Exception as error:
            raise SecretUnavailable(f"cannot read the pending version of {name!r}") from error
        value = response.get("SecretString")
        return value or None

    def read(self, name: str) -> str:
        try:
            value = self._provider.get(name, max_age=self._max_age_s)
        except GetParameterError as error:
            # The message names the secret, never its value.
            raise SecretUnavailable(f"cannot read secret {name!r}") from error
        if not isinstance(value, str) or not value:
            raise SecretUnavailable(f"secret {name!r} is empty or not a string")
        return value
