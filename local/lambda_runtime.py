"""The template's functions as local Lambda containers: one child process per function.

Why a process per function rather than every handler in the stack's own process: the handlers
read their settings from ``os.environ`` once per process (``functools.cache``) and share
module-level Powertools objects (logger keys, metric sets, the REST resolver's current event)
that are safe only because Lambda runs one invocation at a time per container. A child
process gets exactly the environment the template gives that function (no union of variables
and no conflicting ``POWERTOOLS_SERVICE_NAME``), a real cold start, and its own globals. The
stack's process never changes its own ``os.environ``, so tests that share it with
``mock_aws`` are unaffected. The price is about a second of imports per container at start.

Like Lambda, a container serves one invocation at a time (callers queue on a lock), is killed
when an invocation exceeds the function's ``Timeout`` and is replaced by a fresh one (a cold
start) at the next invocation. Unlike Lambda, there is one container per function: concurrent
requests wait for each other instead of starting more containers.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from local.template import Resolver, function_environment, function_property, resources_of_type

ROOT = Path(__file__).resolve().parent.parent
# Lambda gives the init phase 10 s; a loaded 2-core CI machine importing boto3, Powertools
# and supabase for several containers at once needs more headroom than that.
INIT_TIMEOUT_S = 30.0
STOP_GRACE_S = 3.0
# Variables the local environment must not leak into a container: Lambda sets its own.
_HOST_PREFIXES = ("AWS_", "POWERTOOLS_", "_HANDLER", "LAMBDA_")


@dataclass(frozen=True)
class FunctionSpec:
    """What Lambda needs to run one ``AWS::Serverless::Function`` of the template."""

    logical_id: str
    function_name: str
    function_arn: str
    handler: str
    code_paths: tuple[str, ...]
    timeout_s: float
    memory_mb: int
    environment: dict[str, str]  # the template's variables, resolved


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation: a JSON response, or the error Lambda would report."""

    response: Any
    error: dict[str, Any] | None
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.error is None


def function_specs(resolver: Resolver) -> dict[str, FunctionSpec]:
    """Every function of the template, with its code paths, limits and environment."""
    template = resolver.template
    region = resolver.pseudo["AWS::Region"]
    account = resolver.pseudo["AWS::AccountId"]
    specs: dict[str, FunctionSpec] = {}
    for logical_id in resources_of_type(template, "AWS::Serverless::Function"):
        runtime = str(function_property(template, logical_id, "Runtime"))
        if not runtime.startswith("python3"):
            raise NotImplementedError(f"{logical_id}: the local stack runs Python only")
        name = f"{resolver.pseudo['AWS::StackName']}-{logical_id}"
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            function_name=name,
            function_arn=f"arn:aws:lambda:{region}:{account}:function:{name}",
            handler=str(function_property(template, logical_id, "Handler")),
            code_paths=_code_paths(resolver, logical_id),
            timeout_s=float(resolver.resolve(function_property(template, logical_id, "Timeout"))),
            memory_mb=int(resolver.resolve(function_property(template, logical_id, "MemorySize"))),
            environment=function_environment(resolver, logical_id),
        )
    return specs


def _code_paths(resolver: Resolver, logical_id: str) -> tuple[str, ...]:
    """CodeUri (Lambda's /var/task), then each layer's ContentUri (/opt/python)."""
    template = resolver.template
    code_uri = function_property(template, logical_id, "CodeUri")
    if not isinstance(code_uri, str):
        raise NotImplementedError(f"{logical_id}: only a local CodeUri folder is supported")
    paths = [str((ROOT / code_uri).resolve())]
    layers = resources_of_type(template, "AWS::Serverless::LayerVersion")
    for layer in function_property(template, logical_id, "Layers") or []:
        layer_id = layer.get("Ref") if isinstance(layer, dict) else None
        if layer_id not in layers:
            raise NotImplementedError(f"{logical_id}: only layers of this template are supported")
        paths.append(str((ROOT / layers[layer_id]["Properties"]["ContentUri"]).resolve()))
    return tuple(paths)


def container_environment(
    spec: FunctionSpec, aws_environment: dict[str, str], overrides: dict[str, str] | None = None
) -> dict[str, str]:
    """The process environment of one container.

    The host's variables minus anything AWS- or Powertools-related (a developer's
    ``AWS_PROFILE`` must not reach real AWS), then what Lambda's runtime sets, then the
    template's variables, then local-only ``overrides`` (log level, metrics off).
    """
    host = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_HOST_PREFIXES) and name not in spec.environment
    }
    runtime = {
        **aws_environment,
        "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
        "_HANDLER": spec.handler,
        "TZ": ":UTC",
        # No X-Ray daemon locally: the tracer would only warn on every segment.
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    return {**host, **runtime, **spec.environment, **(overrides or {})}


class FunctionContainer:
    """One warm container for one function (see the module docstring)."""

    def __init__(
        self, spec: FunctionSpec, environment: dict[str, str], log_path: Path | None = None
    ) -> None:
        self.spec = spec
        self._environment = environment
        self._log_path = log_path  # None: the function's logs go to this process's stderr
        self._log_file: IO[str] | None = None
        self._lock = threading.Lock()  # one invocation at a time, as in a Lambda container
        self._process: subprocess.Popen[str] | None = None
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._stopped = False

    # ----- lifecycle ----------------------------------------------------------------------

    def spawn(self) -> None:
        """Start the process; its init phase (imports) runs while other containers start."""
        self._replies = queue.Queue()
        if self._log_path is not None and self._log_file is None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self._log_path.open("a", encoding="utf-8")
        process = subprocess.Popen(  # noqa: S603 (our interpreter, our module, no shell)
            [sys.executable, "-m", "local.lambda_worker", *self.spec.code_paths],
            cwd=ROOT,
            env=self._environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
            encoding="utf-8",
        )
        self._process = process
        self._reader = threading.Thread(
            target=_read_replies,
            args=(process.stdout, self._replies),
            name=f"container-{self.spec.logical_id}",
            daemon=True,
        )
        self._reader.start()

    def wait_ready(self) -> None:
        """Block until the handler is imported; raise if the init phase failed."""
        try:
            message = self._replies.get(timeout=INIT_TIMEOUT_S)
        except queue.Empty:
            self._terminate()
            raise RuntimeError(
                f"{self.spec.logical_id}: init took over {INIT_TIMEOUT_S} s"
            ) from None
        if message is None or "init_error" in message:
            self._terminate()
            detail = (message or {}).get("init_error", {}).get("errorMessage", "process exited")
            raise RuntimeError(f"{self.spec.logical_id}: init failed: {detail}")

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def begin_stop(self) -> None:
        """Ask the process to exit (end of its input) without waiting: containers of a stack
        then wind down in parallel (each takes a few hundred ms to exit)."""
        self._stopped = True
        process = self._process
        if process is not None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()

    def stop(self) -> None:
        """Close the container; an invocation in flight ends with an error."""
        self.begin_stop()
        self._terminate()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # ----- invoking -----------------------------------------------------------------------

    def invoke(self, event: dict[str, Any]) -> Invocation:
        with self._lock:
            started = time.monotonic()
            if self._stopped:
                return _failed("Local.ContainerStopped", "the local stack is stopping", started)
            if self._process is None or self._process.poll() is not None:
                try:
                    self.start()  # a cold start: the first request, or after a timeout
                except RuntimeError as error:
                    return _failed("Runtime.InitError", str(error), started)
            process = self._process
            assert process is not None and process.stdin is not None
            request_id = str(uuid.uuid4())
            deadline_ms = int((time.time() + self.spec.timeout_s) * 1000)
            request = {
                "event": event,
                "request_id": request_id,
                "deadline_ms": deadline_ms,
                "function_arn": self.spec.function_arn,
            }
            try:
                process.stdin.write(json.dumps(request) + "\n")
                process.stdin.flush()
                reply = self._replies.get(timeout=self.spec.timeout_s)
            except (BrokenPipeError, OSError):
                reply = None
            except queue.Empty:
                # Lambda stops the execution environment at the timeout and starts a new one.
                self._terminate(graceful=False)
                message = f"Task timed out after {self.spec.timeout_s:.2f} seconds"
                return _failed("Sandbox.Timedout", message, started)
            if reply is None:
                self._terminate()
                if self._stopped:
                    return _failed("Local.ContainerStopped", "the local stack stopped", started)
                return _failed("Runtime.ExitError", "Runtime exited without a response", started)
            return Invocation(
                response=reply.get("response"),
                error=reply.get("error"),
                duration_s=time.monotonic() - started,
            )

    # ----- internals ----------------------------------------------------------------------

    def _terminate(self, *, graceful: bool = True) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if not graceful:
            process.kill()
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # the worker exits at end of input
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()  # a handler still running (e.g. past its timeout)
            process.wait()
        if self._reader is not None:
            self._reader.join(timeout=STOP_GRACE_S)
            self._reader = None
        if process.stdout is not None:
            process.stdout.close()


def _read_replies(stream: IO[str] | None, replies: queue.Queue[dict[str, Any] | None]) -> None:
    if stream is not None:
        try:
            for line in stream:
                replies.put(json.loads(line))
        except (OSError, ValueError):
            pass  # the pipe closed under us: the process is gone
    replies.put(None)  # end of the process


def _failed(error_type: str, message: str, started: float) -> Invocation:
    return Invocation(
        response=None,
        error={"errorType": error_type, "errorMessage": message},
        duration_s=time.monotonic() - started,
    )
