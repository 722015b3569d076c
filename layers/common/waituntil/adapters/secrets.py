"""Secrets by name, values from Secrets Manager, cached in the container.

``read`` is the plain value (AWSCURRENT). ``accepted_versions`` serves the receiver's rotation
without downtime: it yields AWSCURRENT and, while a rotation is under way, AWSPENDING too, so a
sender switched to the new secret before the rotation finishes is never refused. Both need only
``secretsmanager:GetSecretValue`` on the secret: the version stage is a parameter of that one
call. Both cache what they read for ``max_age_s`` with one mechanism, here, rather than
Powertools' ``SecretsProvider`` for one and this for the other: importing Powertools'
parameters utility (and boto3 with it) cost the receiver's cold start about 20 ms for a call
it never made (docs/SCALE.md, "Cold start").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from waituntil.core.errors import SecretUnavailable

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"


@dataclass(frozen=True)
class _Versions:
    current: str
    pending: str | None
    read_at: float


class SecretReader:
    """Reads a string secret by name; a value is reused for ``max_age_s`` seconds."""

    def __init__(
        self,
        client: SecretsManagerClient,
        max_age_s: int = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._max_age_s = max_age_s
        self._clock = clock
        self._versions: dict[str, _Versions] = {}
        self._current: dict[str, tuple[str, float]] = {}  # name -> (AWSCURRENT, read at)

    def read(self, name: str, *, fresh: bool = False) -> str:
        """AWSCURRENT's value, from the cache unless older than ``max_age_s``; ``fresh`` skips
        the cache (the value was refused: it may have been corrected meanwhile) and caches what
        it reads. Errors name the secret, never its value."""
        cached = self._current.get(name)
        if not fresh and cached is not None and self._clock() - cached[1] < self._max_age_s:
            return cached[0]
        read_at = self._clock()
        value = self._read_stage(name, CURRENT, missing_ok=False)
        assert value is not None  # missing_ok=False raises instead
        if self._max_age_s > 0:
            self._current[name] = (value, read_at)
        return value

    def accepted_versions(self, name: str) -> Iterator[str]:
        """AWSCURRENT, then AWSPENDING if there is one; read lazily, together, cached.

        Lazily: a caller that stops at the first match never triggers a read it does not need
        (a request without a token reads nothing). Together: both stages come from one refresh,
        so a rotation finishing between two refreshes can never leave the new secret out.
        """
        versions = self._versions.get(name)
        if versions is None or self._clock() - versions.read_at >= self._max_age_s:
            versions = self._read_versions(name)
            if self._max_age_s > 0:
                self._versions[name] = versions
        yield versions.current
        if versions.pending is not None and versions.pending != versions.current:
            yield versions.pending

    def _read_versions(self, name: str) -> _Versions:
        read_at = self._clock()
        # AWSPENDING first: finishing a rotation moves AWSCURRENT to the pending version and
        # then drops AWSPENDING. Read in this order, a rotation that finishes between the two
        # calls yields (new, new), never (old, none) which would refuse the new secret.
        pending = self._read_stage(name, PENDING, missing_ok=True)
        current = self._read_stage(name, CURRENT, missing_ok=False)
        assert current is not None  # missing_ok=False raises instead
        return _Versions(current=current, pending=pending, read_at=read_at)

    def _read_stage(self, name: str, stage: str, *, missing_ok: bool) -> str | None:
        try:
            response = self._client.get_secret_value(SecretId=name, VersionStage=stage)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if missing_ok and code == "ResourceNotFoundException":
                return None  # no rotation under way
            raise SecretUnavailable(f"cannot read secret {name!r} ({stage})") from error
        except BotoCoreError as error:
            raise SecretUnavailable(f"cannot read secret {name!r} ({stage})") from error
        value = response.get("SecretString")
        if not value:
            raise SecretUnavailable(f"secret {name!r} ({stage}) is empty or not a string")
        return value
