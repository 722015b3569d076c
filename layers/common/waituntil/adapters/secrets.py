"""Secrets by name, values from Secrets Manager, cached in the container by Powertools."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from waituntil.errors import SecretUnavailable

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


class SecretReader:
    """Reads a string secret by name; a value is reused for ``max_age_s`` seconds."""

    def __init__(self, client: SecretsManagerClient, max_age_s: int = 300) -> None:
        self._provider = SecretsProvider(boto3_client=client)
        self._max_age_s = max_age_s

    def read(self, name: str) -> str:
        try:
            value = self._provider.get(name, max_age=self._max_age_s)
        except GetParameterError as error:
            # The message names the secret, never its value.
            raise SecretUnavailable(f"cannot read secret {name!r}") from error
        if not isinstance(value, str) or not value:
            raise SecretUnavailable(f"secret {name!r} is empty or not a string")
        return value
