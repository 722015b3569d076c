"""A Docker-free ``sam local invoke``: ``python -m local.invoke FUNCTION EVENT``.

Runs one function of the template in this process, with the environment the template gives it,
against the local stack, and prints the response JSON on stdout (the function's logs go to
stderr, as ``sam local invoke`` does). Exit status 0 when the function returned, 1 when it
raised.

Against which stack: a running ``make dev`` stack if there is one (it writes its endpoints to
``.local-data/stack.json``, or ``$LOCAL_STACK_STATE``); otherwise an ephemeral one started for
this call. Either way the webhook secret is ``local-dev-secret``, the value the events in
``events/`` carry, unless ``make dev`` was given another (``WEBHOOK_SECRET``) or is reachable
from elsewhere (``HOST=0.0.0.0``). ``--ephemeral`` ignores a running stack.

Mistakes (no arguments, an unknown function, a missing or malformed event file) are one line
on stderr and exit status 2, worded for ``make invoke FUNCTION=... EVENT=...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from local import BUNDLED_EVENTS_SECRET
from local.lambda_runtime import FunctionSpec, container_environment
from local.lambda_worker import call_handler, load_handler, make_context

USAGE = (
    "usage: make invoke FUNCTION=<logical id> EVENT=<event file>"
    "   e.g. make invoke FUNCTION=ReceiverFunction EVENT=events/receiver/insert.json"
)


class UsageError(Exception):
    """A mistake in the command line: printed as one line, exit status 2."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.invoke", description=__doc__)
    parser.add_argument(
        "function", nargs="?", help="logical id in template.yaml, e.g. ReceiverFunction"
    )
    parser.add_argument(
        "event", nargs="?", type=Path, help="event JSON file, e.g. events/receiver/insert.json"
    )
    parser.add_argument("--ephemeral", action="store_true", help="ignore a running make dev stack")
    arguments = parser.parse_args(argv)
    try:
        event = read_event(arguments.function, arguments.event)
        # Before any stack starts: a typo is answered at once.
        _check_known(arguments.function, _template_functions())
        return _invoke(arguments.function, event, arguments.ephemeral)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2


def read_event(function: str | None, path: Path | None) -> dict[str, Any]:
    if not function or path is None:
        raise UsageError(f"{USAGE}\n  functions: {', '.join(_template_functions())}")
    try:
        event: Any = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"no event file {path} (the bundled ones are in events/)") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder; EVENT= takes one event file") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UsageError(f"cannot read the event {path}: {error}") from None
    if not isinstance(event, dict):
        raise UsageError(f"the event {path} is not a JSON object")
    return event


def _template_functions() -> list[str]:
    from local.template import load_template, resources_of_type

    return sorted(resources_of_type(load_template(), "AWS::Serverless::Function"))


def _invoke(function: str, event: dict[str, Any], ephemeral: bool) -> int:
    with _target_stack(function, ephemeral) as (spec, environment, source):
        print(f"invoking {spec.logical_id} against {source}", file=sys.stderr)
        response, error, duration_s = _invoke_in_process(spec, environment, event)
    print(f"{spec.logical_id} finished in {duration_s * 1000:.0f} ms", file=sys.stderr)
    if error is not None:
        print(json.dumps(error, indent=2))
        return 1
    print(json.dumps(response, indent=2))
    _hint_on_refused_secret(spec, response, source)
    return 0


@contextlib.contextmanager
def _target_stack(
    function: str, ephemeral: bool
) -> Iterator[tuple[FunctionSpec, dict[str, str], str]]:
    """The function's spec and full environment, from a running stack or an ephemeral one."""
    from local.dev import real_supabase
    from local.stack import PipelineStack
    from local.state_file import read_state, state_path

    state = None if ephemeral else read_state(state_path())
    if state is not None:
        specs = state["functions"]
        _check_known(function, specs)
        spec = _spec_from_state(specs[function])
        aws = {
            "AWS_ENDPOINT_URL": state["aws_endpoint"],
            "AWS_REGION": state["region"],
            "AWS_DEFAULT_REGION": state["region"],
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
        }
        environment = container_environment(spec, aws, state.get("environment") or {})
        yield spec, environment, f"the running stack (pid {state['pid']})"
        return
    try:
        real_url, real_key = real_supabase(os.environ)
    except ValueError as error:
        raise UsageError(str(error)) from None
    with PipelineStack(
        serve=False,
        webhook_secret=BUNDLED_EVENTS_SECRET,
        supabase_url=real_url,
        supabase_key=real_key,
    ) as stack:
        _check_known(function, stack.specs)
        yield (
            stack.specs[function],
            stack.function_environment(function),
            "an ephemeral local stack",
        )


def _check_known(function: str, specs: Iterable[str]) -> None:
    if function not in specs:
        known = ", ".join(sorted(specs))
        raise UsageError(f"no function {function!r} in template.yaml; known: {known}")


def _spec_from_state(data: dict[str, Any]) -> FunctionSpec:
    return FunctionSpec(**{**data, "code_paths": tuple(data["code_paths"])})


def _invoke_in_process(
    spec: FunctionSpec, environment: dict[str, str], event: dict[str, Any]
) -> tuple[Any, dict[str, Any] | None, float]:
    """This process becomes the function's container for one invocation."""
    os.environ.clear()
    os.environ.update(environment)
    started = time.monotonic()
    # The handler's logs and metrics go to stderr; stdout is kept for the response.
    with contextlib.redirect_stdout(sys.stderr):
        handler = load_handler(spec.handler, list(spec.code_paths))
        context = make_context(
            str(uuid.uuid4()),
            int((time.time() + spec.timeout_s) * 1000),
            spec.function_arn,
        )
        response, error = call_handler(handler, event, context)
    return response, error, time.monotonic() - started


def _hint_on_refused_secret(spec: FunctionSpec, response: Any, source: str) -> None:
    if isinstance(response, dict) and response.get("statusCode") == 401 and "running" in source:
        print(
            f"hint: {spec.logical_id} refused the secret. The running stack's webhook secret is"
            f" not {BUNDLED_EVENTS_SECRET!r}, the one the bundled events carry: start it without"
            " WEBHOOK_SECRET (and without HOST=0.0.0.0), or pass --ephemeral.",
            file=sys.stderr,
        )


if __name__ == "__main__":
    raise SystemExit(main())
