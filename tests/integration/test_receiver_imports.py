"""The receiver's cold start: it never loads the X-Ray SDK (the reader and consumer do)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _loaded_after(statement: str) -> set[str]:
    code = (
        f"import sys; {statement}; "
        "print(','.join(m for m in ('aws_xray_sdk', 'aws_xray_sdk.core') if m in sys.modules))"
    )
    result = subprocess.run(  # noqa: S603 (our interpreter, fixed code)
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        # As in Lambda: tracing enabled, so a Tracer would load the SDK.
        env={
            "PYTHONPATH": f"{ROOT / 'layers/common'}:{ROOT / 'functions'}",
            "PATH": "/usr/bin:/bin",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_LAMBDA_FUNCTION_NAME": "f",
        },
    )
    return set(filter(None, result.stdout.strip().split(",")))


def test_the_receiver_does_not_load_the_xray_sdk() -> None:
    # Given a fresh interpreter with Lambda's import path and tracing on
    # When the receiver's handler is imported
    loaded = _loaded_after("import receiver.handler")
    # Then the X-Ray SDK was not loaded
    assert loaded == set()


@pytest.mark.parametrize(
    "statement", ["import reader.handler", "from waituntil.observability import tracer"]
)
def test_the_tracer_is_still_there_for_whoever_asks(statement: str) -> None:
    # Given the same interpreter
    # When the reader (traced) is imported, or the tracer is asked for by name
    loaded = _loaded_after(statement)
    # Then the X-Ray SDK is loaded for it
    assert "aws_xray_sdk.core" in loaded
