"""Fault injection for boto3 clients: a wrapper that makes chosen operations fail as AWS does.

A fake, not a mock: every other call goes to the real (moto) client, and each injected error is
the exception botocore itself raises for that failure, so the code under test sees exactly
what it would see in Lambda.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)


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


# ----- outcome unknown: a write that applied, whose answer was lost ----------------------------

DYNAMODB_WRITES = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
)


class LostAnswers:
    """DynamoDB writes that apply, then lose their answer: botocore resends them.

    AWS can apply a write and still fail to answer (a 500 after the write, a reset connection,
    a read timeout); botocore's retry then resends the request, whose second run meets the
    state the first one left. This reproduces it on a real client under moto, through
    botocore's own retry decision: ``"500"`` turns the applied answer into an
    ``InternalServerError`` before botocore's retry handler looks at it (``needs-retry``);
    ``"timeout"`` raises a ``ReadTimeoutError`` after moto has applied the request
    (``before-send``, after moto's own handler). ``arm`` says which writes; ``lost`` counts
    the answers lost so far.
    """

    def __init__(self, client: Any, mode: str = "500") -> None:
        self.mode = mode
        self.lost: list[str] = []
        self._armed: list[tuple[Callable[[str, dict[str, Any]], bool], int]] = []
        client.meta.events.register_first("needs-retry.dynamodb", self._needs_retry)
        client.meta.events.register_last("before-send", self._before_send)

    def arm(
        self,
        times: int = 1,
        matching: Callable[[str, dict[str, Any]], bool] | None = None,
    ) -> None:
        """Lose the answer of the next ``times`` writes ``matching(operation, request)``."""
        self._armed.append((matching or (lambda operation, request: True), times))

    @property
    def armed(self) -> bool:
        return bool(self._armed)

    def disarm(self) -> None:
        self._armed.clear()

    def _take(self, operation: str, body: Any) -> bool:
        if operation not in DYNAMODB_WRITES or not self._armed:
            return False
        request = json.loads(body or b"{}")
        matching, times = self._armed[0]
        if not matching(operation, request):
            return False
        if times <= 1:
            self._armed.pop(0)
        else:
            self._armed[0] = (matching, times - 1)
        self.lost.append(operation)
        return True

    def _needs_retry(
        self, response: Any, operation: Any, request_dict: dict[str, Any], **_: Any
    ) -> None:
        if self.mode != "500" or response is None or response[0].status_code >= 300:
            return
        if not self._take(operation.name, request_dict.get("body")):
            return
        http_response, parsed = response
        http_response.status_code = 500
        parsed.clear()
        parsed.update(
            {
                "Error": {"Code": "InternalServerError", "Message": "Internal server error"},
                "ResponseMetadata": {"HTTPStatusCode": 500, "HTTPHeaders": {}},
            }
        )

    def _before_send(self, request: Any, event_name: str, **_: Any) -> None:
        if self.mode != "timeout" or not event_name.startswith("before-send.dynamodb."):
            return
        if self._take(event_name.rsplit(".", 1)[-1], request.body):
            raise ReadTimeoutError(endpoint_url=request.url)


def writes_key(key: str) -> Callable[[str, dict[str, Any]], bool]:
    """A ``LostAnswers`` matcher: the write names item ``key`` (in any of its actions)."""
    needle = json.dumps({"S": key})
    return lambda operation, request: needle in json.dumps(request)


class UnprocessedWrites:
    """A client whose ``BatchWriteItem`` leaves the last request of a call unprocessed (as
    DynamoDB does under throttling: the rest applied, that one handed back) ``times`` times,
    then answers as the real one; ``calls`` counts its ``BatchWriteItem`` calls."""

    def __init__(self, client: Any, times: int) -> None:
        self._client = client
        self.remaining = times
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls += 1
        if self.remaining <= 0:
            return dict(self._client.batch_write_item(RequestItems=RequestItems))
        self.remaining -= 1
        ((table, requests),) = RequestItems.items()
        if len(requests) > 1:
            self._client.batch_write_item(RequestItems={table: requests[:-1]})
        return {"UnprocessedItems": {table: requests[-1:]}}
