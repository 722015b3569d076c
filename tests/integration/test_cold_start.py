"""Cold-start hygiene: the HTTP-facing functions never pay for importing supabase-py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("module", ["receiver.handler", "reader.handler"])
def test_api_functions_do_not_import_supabase(module: str) -> None:
    # Given a fresh interpreter with Lambda's import path / When the handler is imported
    code = (
        f"import sys, {module}; "
        "print(','.join(m for m in ('supabase', 'postgrest', 'httpx') if m in sys.modules))"
    )
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
            "POWERTOOLS_TRACE_DISABLED": "true",
        },
    )
    # Then neither supabase nor its HTTP stack was loaded
    assert result.stdout.strip() == ""
