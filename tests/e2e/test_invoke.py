"""``python -m local.invoke``: a Docker-free ``sam local invoke`` with the bundled events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from local.state_file import write_state
from tests.conftest import ROOT
from tests.e2e.conftest import StartStack, wait_for

pytestmark = pytest.mark.e2e


def _invoke(function: str, event: str, state_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our interpreter and module)
        [sys.executable, "-m", "local.invoke", function, event],
        cwd=ROOT,
        env={**os.environ, "LOCAL_STACK_STATE": str(state_file)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _response(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_invoke_receiver_without_a_running_stack(tmp_path: Path) -> None:
    # Given no running stack (the state file does not exist)
    state_file = tmp_path / "no-stack.json"

    # When the receiver is invoked with the bundled insert event
    result = _invoke("ReceiverFunction", "events/receiver/insert.json", state_file)

    # Then an ephemeral stack accepts the event's secret and the response is a 202
    response = _response(result)
    assert response["statusCode"] == 202
    assert json.loads(response["body"])["received"] is True
    assert "ephemeral" in result.stderr


def test_invoke_consumer_without_a_running_stack(tmp_path: Path) -> None:
    # Given no running stack
    state_file = tmp_path / "no-stack.json"

    # When the consumer is invoked with the bundled SQS batch
    result = _invoke("ConsumerFunction", "events/consumer/batch.json", state_file)

    # Then every record succeeded (the empty table is a valid source)
    assert _response(result) == {"batchItemFailures": []}


def test_invoke_uses_a_running_stack(start_stack: StartStack, tmp_path: Path) -> None:
    # Given a running stack that carries the bundled events' secret and has written its state
    stack = start_stack(webhook_secret="local-dev-secret")
    state_file = tmp_path / "stack.json"
    write_state(stack, state_file)
    batches = stack.consumer_batches

    # When the receiver is invoked with the bundled insert event
    result = _invoke("ReceiverFunction", "events/receiver/insert.json", state_file)

    # Then it ran against that stack: its consumer picked the queued change up
    assert _response(result)["statusCode"] == 202
    assert "running stack" in result.stderr
    assert wait_for(lambda: stack.consumer_batches > batches, timeout_s=10)
