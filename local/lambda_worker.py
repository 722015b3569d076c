"""One Lambda execution environment for one function: the child process of a container.

``python -m local.lambda_worker CODE_PATH...`` with the function's environment (``_HANDLER``
names the handler, as in Lambda). It puts the code paths first on ``sys.path`` (what Lambda
does with ``/var/task`` and ``/opt/python``), imports the handler once (the init phase), then
serves invocations one at a time, like a Lambda container, until its stdin closes.

Protocol, one JSON document per line:
- parent -> child (stdin): ``{"event": ..., "request_id": ..., "deadline_ms": ...,
  "function_arn": ...}``
- child -> parent (the original stdout): first ``{"ready": true}`` or ``{"init_error": ...}``,
  then per invocation ``{"response": ...}`` or ``{"error": {"errorType", "errorMessage",
  "stackTrace"}}`` (the shape Lambda reports).

The handler's own output (Powertools logs, EMF metrics) goes to stderr, so it cannot corrupt
the protocol and still reaches the console as Lambda's logs reach CloudWatch.

This module imports nothing from the project at module level: the child must start fast and
see only what a Lambda container sees (``local`` is removed from ``sys.path`` before the
handler is imported, so a handler that imports local-only code fails here as it would in AWS).
"""

from __future__ import annotations

import decimal
import importlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

Handler = Callable[[dict[str, Any], Any], Any]

_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LambdaContext:
    """The context object Lambda's Python runtime passes to handlers (the fields used)."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_ms: int
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def make_context(request_id: str, deadline_ms: int, function_arn: str) -> LambdaContext:
    """A context from the runtime variables the container was started with."""
    name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    return LambdaContext(
        function_name=name,
        function_version=os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        invoked_function_arn=function_arn,
        memory_limit_in_mb=int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")),
        aws_request_id=request_id,
        log_group_name=os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{name}"),
        log_stream_name=os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "local"),
        deadline_ms=deadline_ms,
    )


def load_handler(handler: str, code_paths: list[str]) -> Handler:
    """Import ``module.function`` with the code paths first on sys.path, as Lambda does."""
    module_name, _, function_name = handler.rpartition(".")
    if not module_name:
        raise ValueError(f"handler {handler!r} is not module.function")
    for path in reversed(code_paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    module = importlib.import_module(module_name)
    function: Handler = getattr(module, function_name)
    return function


def call_handler(
    handler: Handler, event: dict[str, Any], context: LambdaContext
) -> tuple[Any, dict[str, Any] | None]:
    """(response, None) or (None, error), the response marshalled through JSON as Lambda does."""
    try:
        result = handler(event, context)
    except Exception as error:  # Lambda reports any exception as the result
        print(f"[ERROR] {type(error).__name__}: {error}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return None, error_payload(error)
    try:
        return json.loads(json.dumps(result, default=_lambda_json_default)), None
    except (TypeError, ValueError) as error:
        return None, {
            "errorType": "Runtime.MarshalError",
            "errorMessage": f"Unable to marshal response: {error}",
        }


def error_payload(error: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorType": error_type or type(error).__name__,
        "errorMessage": str(error),
        "stackTrace": traceback.format_tb(error.__traceback__),
    }


def _lambda_json_default(value: Any) -> Any:
    # The Python runtime's serializer accepts Decimal (boto3 returns them for DynamoDB numbers).
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _serve(handler: Handler, requests: TextIO, replies: TextIO) -> None:
    while line := requests.readline():
        request = json.loads(line)
        context = make_context(
            request["request_id"], request["deadline_ms"], request["function_arn"]
        )
        response, error = call_handler(handler, request["event"], context)
        _send(replies, {"error": error} if error is not None else {"response": response})


def _send(replies: TextIO, message: dict[str, Any]) -> None:
    replies.write(json.dumps(message) + "\n")
    replies.flush()


def main(code_paths: list[str]) -> int:
    # Ctrl-C reaches the whole process group: the stack, not the terminal, stops containers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    sys.path[:] = [path for path in sys.path if Path(path or ".").resolve() != _ROOT]
    try:
        handler = load_handler(os.environ["_HANDLER"], code_paths)
    except Exception as error:  # reported to the parent, which fails loudly
        traceback.print_exc(file=sys.stderr)
        _send(replies, {"init_error": error_payload(error, "Runtime.ImportModuleError")})
        return 1
    _send(replies, {"ready": True})
    _serve(handler, sys.stdin, replies)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
