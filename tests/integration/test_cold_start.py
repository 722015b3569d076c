"""Cold-start hygiene: what importing a handler loads, in a fresh interpreter on Lambda's path.

The HTTP-facing functions never pay for supabase-py; the receiver never loads the X-Ray SDK
(the reader and consumer do, for their traces).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

XRAY = ("aws_xray_sdk", "aws_xray_sdk.core")


def _loaded_after(statement: str, watched: tuple[str, ...], **environment: str) -> set[str]:
    """Which of ``watched`` a fresh interpreter has loaded after running ``statement``."""
    code = f"import sys; {statement}; print(','.join(m for m in {watched!r} if m in sys.modules))"
    result = subprocess.run(  # noqa: S603 (our interpreter, fixed code)
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={
            "PYTHONPATH": f"{ROOT / 'layers/common'}:{ROOT / 'functions'}",
            "PATH": "/usr/bin:/bin",
            "AWS_DEFAULT_REGION": "us-east-1",
            **environment,
        },
    )
    return set(filter(None, result.stdout.strip().split(",")))


@pytest.mark.parametrize("module", ["receiver.handler", "reader.handler"])
def test_api_functions_do_not_import_supabase(module: str) -> None:
    # Given a fresh interpreter with Lambda's import path / When the handler is imported
    loaded = _loaded_after(
        f"import {module}", ("supabase", "postgrest", "httpx"), POWERTOOLS_TRACE_DISABLED="true"
    )
    # Then neither supabase nor its HTTP stack was loaded
    assert loaded == set()


def test_the_receiver_does_not_load_the_xray_sdk() -> None:
    # Given tracing on, as in Lambda (a Tracer would load the SDK)
    # When the receiver's handler is imported / Then the X-Ray SDK was not loaded
    assert _loaded_after("import receiver.handler", XRAY, AWS_LAMBDA_FUNCTION_NAME="f") == set()


@pytest.mark.parametrize(
    "statement", ["import reader.handler", "from waituntil.core.observability import tracer"]
)
def test_the_tracer_is_still_there_for_whoever_asks(statement: str) -> None:
    # Given the same interpreter
    # When the reader (traced) is imported, or the tracer is asked for by name
    loaded = _loaded_after(statement, XRAY, AWS_LAMBDA_FUNCTION_NAME="f")
    # Then the X-Ray SDK is loaded for it
    assert "aws_xray_sdk.core" in loaded
