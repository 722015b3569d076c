"""The running local stack's state file: written by ``make dev`` (``local.dev``), read by
``make invoke`` (``local.invoke``) and the operator commands (``ops.target``).

``.local-data/stack.json``, or ``$LOCAL_STACK_STATE``: the endpoints and function specs of
``PipelineStack.state()`` and the pid that owns them. A file whose process is gone (a stack
that was killed) reads as no stack.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local.lambda_runtime import ROOT

if TYPE_CHECKING:
    from local.stack import PipelineStack

DEFAULT_STATE_PATH = ROOT / ".local-data" / "stack.json"


def state_path() -> Path:
    return Path(os.environ.get("LOCAL_STACK_STATE") or DEFAULT_STATE_PATH)


def write_state(stack: PipelineStack, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(stack.state(), indent=2))
    temporary.replace(path)


def read_state(path: Path) -> dict[str, Any] | None:
    """The state of a running stack, or None (no file, or its process is gone)."""
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None  # left behind by a stack that was killed
    return state


def remove_state(path: Path) -> None:
    state = read_state(path)
    if state is not None and state.get("pid") == os.getpid():
        path.unlink(missing_ok=True)
