"""A Docker-free ``sam local invoke``: ``python -m local.invoke FUNCTION EVENT``.

Runs one function of the template in this process, with the environment the template gives it,
against the local stack, and prints the response JSON on stdout (the function's logs go to
stderr, as ``sam local invoke`` does). Exit status 0 when the function returned, 1 when it
raised.

Against which stack: a running ``make dev`` stack if there is one (it writes its endpoints to
``.local-data/stack.json``, or ``$LOCAL_STACK_STATE``); otherwise an ephemeral one started for
this call, whose webhook secret is ``local-dev-secret``, the value the events in ``events/``
carry. ``--ephemeral`` ignores a running stack.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from local.lambda_runtime import FunctionSpec, container_environment
from local.lambda_worker import call_handler, load_handler, make_context

# The secret the bundled events in events/ carry.
BUNDLED_EVENTS_SECRET = "local-dev-secret"  # noqa: S105 (a public test value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.invoke", description=__doc__)
    parser.add_argument("function", help="logical id in template.yaml, e.g. ReceiverFunction")
    parser.add_argument(
        "event", type=Path, help="event JSON file, e.g. events/receiver/insert.json"
    )
    parser.add_argument("--ephemeral", action="store_true", help="ignore a running make dev stack")
    arguments = parser.parse_args(argv)
    event = json.loads(arguments.event.read_text())
    with _target_stack(arguments.function, arguments.ephemeral) as (spec, environment, source):
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
    from local.stack import PipelineStack, read_state, state_path

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
    real_url, real_key = os.environ.get("SUPABASE_URL"), os.environ.get("SUPABASE_KEY")
    use_real = bool(real_url and real_key)
    with PipelineStack(
        serve=False,
        webhook_secret=BUNDLED_EVENTS_SECRET,
        supabase_url=real_url if use_real else None,
        supabase_key=real_key if use_real else None,
    ) as stack:
        _check_known(function, stack.specs)
        yield (
            stack.specs[function],
            stack.function_environment(function),
            "an ephemeral local stack",
        )


def _check_known(function: str, specs: dict[str, Any]) -> None:
    if function not in specs:
        known = ", ".join(sorted(specs))
        raise SystemExit(f"no function {function!r} in template.yaml; known: {known}")


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
            f" not {BUNDLED_EVENTS_SECRET!r}, the one the bundled events carry: start it with"
            f" WEBHOOK_SECRET={BUNDLED_EVENTS_SECRET} make dev, or pass --ephemeral.",
            file=sys.stderr,
        )


if __name__ == "__main__":
    raise SystemExit(main())
