"""Fault injection for boto3 clients: a wrapper that makes chosen operations fail as AWS does.

A fake, not a mock: every other call goes to the real (moto) client, and each injected error is
the exception botocore itself raises for that failure, so the code under test sees exactly
what it would see in Lambda.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError


def throttled(operation: str) -> Exception:
    return ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, operation
    )


def unreachable(operation: str) -> Exception:
    return EndpointConnectionError(endpoint_url=f"https://{operation.lower()}.invalid")


def timed_out(operation: str) -> Exception:
    return ConnectTimeoutError(endpoint_url=f"https://{operation.lower()}.invalid")


def internal_error(operation: str) -> Exception:
    return ClientError(
        {"Error": {"Code": "InternalFailure", "Message": "We encountered an internal error"}},
        operation,
    )


FAULTS: dict[str, Callable[[str], Exception]] = {
    "throttled": throttled,
    "unreachable": unreachable,
    "timed_out": timed_out,
    "internal_error": internal_error,
}
# Characters SQS accepts in a message body (SendMessage documentation); moto accepts any.
SQS_ALLOWED = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


class FaultyClient:
    """Delegates to ``client``; the operations in ``faults`` raise instead, and every call
    is counted in ``calls`` (so a test can say "nothing was sent")."""

    def __init__(self, client: Any, faults: dict[str, Callable[[str], Exception]] | None = None):
        self._client = client
        self.faults = dict(faults or {})
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute) or name.startswith("_") or name in ("exceptions", "meta"):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if name in self.faults:
                raise self.faults[name](_operation_name(name))
            if name == "send_message" and not SQS_ALLOWED.fullmatch(kwargs["MessageBody"]):
                # Real SQS refuses these characters (InvalidMessageContents); moto does not.
                raise ClientError(
                    {"Error": {"Code": "InvalidMessageContents", "Message": "bad chars"}},
                    "SendMessage",
                )
            return attribute(*args, **kwargs)

        return call


def _operation_name(method: str) -> str:
    return "".join(part.capitalize() for part in method.split("_"))
