"""SQS answered in process, for the benchmarks that poll a queue as Lambda does.

moto's SQS long poll checks the queue in a loop of short sleeps, in the caller's process, and
each of its answers costs about a millisecond of CPU: five pollers waiting on a quiet queue
would burn a core here, which Lambda's pollers never cost the function. This answers SQS's
JSON protocol (``SendMessage``, ``SendMessageBatch``, ``ReceiveMessage`` with long polling,
``DeleteMessage``, ``DeleteMessageBatch``, ``ChangeMessageVisibility`` and its batch) for
the clients it is attached to; a waiting receive blocks on a condition variable (no CPU),
and a message goes to the receive that has waited longest, as SQS hands a message to one of
the pollers waiting. Visibility timeouts are kept (a received message comes back if it is
not deleted in time, or when ``ChangeMessageVisibility`` said).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse


@dataclass
class _Message:
    message_id: str
    body: str
    sent_at: float
    receive_count: int = 0
    visible_at: float = 0.0
    handle: str = ""


class MemorySQS:
    def __init__(self, visibility_timeout_s: float = 660.0) -> None:
        self._visibility_s = visibility_timeout_s
        self._queues: dict[str, deque[_Message]] = {}
        self._inflight: dict[str, dict[str, _Message]] = {}
        self._ready = threading.Condition()
        self.requests: dict[str, int] = {}
        self.sent_at: dict[str, float] = {}  # message id -> when SendMessage stored it

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send.sqs", self.on_send)
        try:
            from moto.core.models import botocore_stubber
        except ImportError:
            return
        with contextlib.suppress(AttributeError, ValueError):  # not in this client's hooks
            client.meta.events.unregister("before-send", botocore_stubber)

    def depth(self, queue_url: str) -> int:
        with self._ready:
            return len(self._queues.get(queue_url, ())) + len(self._inflight.get(queue_url, {}))

    def on_send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        target = request.headers["X-Amz-Target"]
        operation = (target.decode() if isinstance(target, bytes) else str(target)).split(".")[-1]
        body = request.body
        params = json.loads(body.decode() if isinstance(body, bytes) else str(body or "{}"))
        with self._ready:
            self.requests[operation] = self.requests.get(operation, 0) + 1
        handler = {
            "SendMessage": self._send,
            "SendMessageBatch": self._send_batch,
            "ReceiveMessage": self._receive,
            "DeleteMessage": self._delete,
            "DeleteMessageBatch": self._delete_batch,
            "ChangeMessageVisibility": self._change_visibility,
            "ChangeMessageVisibilityBatch": self._change_visibility_batch,
        }.get(operation)
        if handler is None:
            status, answer = (
                400,
                {
                    "__type": "com.amazonaws.sqs#InvalidAction",
                    "message": f"the memory SQS has no {operation}",
                },
            )
        else:
            status, answer = 200, handler(params)
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "memory"}
        payload = json.dumps(answer).encode()
        return AWSResponse(request.url, status, headers, _Raw(payload))  # type: ignore[arg-type]

    # ----- operations ----------------------------------------------------------------------

    def _store(self, queue_url: str, body: str) -> dict[str, str]:
        message = _Message(str(uuid.uuid4()), body, time.perf_counter())
        with self._ready:
            self._queues.setdefault(queue_url, deque()).append(message)
            self.sent_at[message.message_id] = message.sent_at
            self._ready.notify()
        return {
            "MessageId": message.message_id,
            "MD5OfMessageBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 (SQS's)
        }

    def _send(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._store(params["QueueUrl"], params["MessageBody"])

    def _send_batch(self, params: dict[str, Any]) -> dict[str, Any]:
        successful = []
        for entry in params["Entries"]:
            stored = self._store(params["QueueUrl"], entry["MessageBody"])
            successful.append({"Id": entry["Id"], **stored})
        return {"Successful": successful, "Failed": []}

    def _receive(self, params: dict[str, Any]) -> dict[str, Any]:
        queue_url = params["QueueUrl"]
        most = int(params.get("MaxNumberOfMessages", 1))
        deadline = time.monotonic() + float(params.get("WaitTimeSeconds", 0))
        visibility = float(params.get("VisibilityTimeout", self._visibility_s))
        with self._ready:
            while True:
                self._requeue_expired(queue_url)
                queue = self._queues.setdefault(queue_url, deque())
                if queue:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return {}
                self._ready.wait(min(left, 1.0))
            taken: list[_Message] = []
            inflight = self._inflight.setdefault(queue_url, {})
            while queue and len(taken) < most:
                message = queue.popleft()
                message.receive_count += 1
                message.handle = str(uuid.uuid4())
                message.visible_at = time.monotonic() + visibility
                inflight[message.handle] = message
                taken.append(message)
        return {
            "Messages": [
                {
                    "MessageId": message.message_id,
                    "ReceiptHandle": message.handle,
                    "MD5OfBody": hashlib.md5(message.body.encode()).hexdigest(),  # noqa: S324
                    "Body": message.body,
                    "Attributes": {"ApproximateReceiveCount": str(message.receive_count)},
                }
                for message in taken
            ]
        }

    def _requeue_expired(self, queue_url: str) -> None:
        inflight = self._inflight.get(queue_url, {})
        now = time.monotonic()
        for handle in [h for h, m in inflight.items() if m.visible_at <= now]:
            self._queues.setdefault(queue_url, deque()).append(inflight.pop(handle))

    def _delete(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._ready:
            self._inflight.get(params["QueueUrl"], {}).pop(params["ReceiptHandle"], None)
        return {}

    def _delete_batch(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._ready:
            inflight = self._inflight.get(params["QueueUrl"], {})
            for entry in params["Entries"]:
                inflight.pop(entry["ReceiptHandle"], None)
        return {"Successful": [{"Id": entry["Id"]} for entry in params["Entries"]], "Failed": []}

    def _change_visibility(self, params: dict[str, Any]) -> dict[str, Any]:
        self._change_visibility_batch(
            {
                "QueueUrl": params["QueueUrl"],
                "Entries": [{"Id": "0", **params}],
            }
        )
        return {}

    def _change_visibility_batch(self, params: dict[str, Any]) -> dict[str, Any]:
        """A received message becomes visible again that many seconds from now; a handle no
        longer in flight (deleted, or visible again already) fails, as on SQS."""
        successful, failed = [], []
        with self._ready:
            inflight = self._inflight.get(params["QueueUrl"], {})
            for entry in params["Entries"]:
                message = inflight.get(entry["ReceiptHandle"])
                if message is None:
                    failed.append(
                        {
                            "Id": entry["Id"],
                            "SenderFault": True,
                            "Code": "ReceiptHandleIsInvalid",
                            "Message": "not in flight",
                        }
                    )
                    continue
                message.visible_at = time.monotonic() + float(entry["VisibilityTimeout"])
                successful.append({"Id": entry["Id"]})
            self._ready.notify_all()
        return {"Successful": successful, "Failed": failed}


class _Raw(BytesIO):
    def stream(self, **_: Any) -> Any:
        contents = self.read()
        while contents:
            yield contents
            contents = self.read()
