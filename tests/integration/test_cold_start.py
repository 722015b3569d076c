"""Cold-start hygiene: what importing a handler loads, in a fresh interpreter on Lambda's path.

The HTTP-facing functions never pay for supabase-py; the receiver never loads the X-Ray SDK
(the reader and consumer do, for their traces).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

XRAY = ("aws_xray_sdk", "aws_xray_sdk.core")


def _last_line(code: str, **environment: str) -> str:
    """The last line a fresh interpreter prints running ``code`` on Lambda's path."""
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
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def _loaded_after(statement: str, watched: tuple[str, ...], **environment: str) -> set[str]:
    """Which of ``watched`` a fresh interpreter has loaded after running ``statement``."""
    code = f"import sys; {statement}; print(','.join(m for m in {watched!r} if m in sys.modules))"
    return set(filter(None, _last_line(code, **environment).split(",")))


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


# What Lambda sets and the imported packages read when they are imported: X-Ray's SDK and
# Powertools' Tracer behave as on Lambda (tracing on, no centralized-sampling clients).
ON_LAMBDA = {"LAMBDA_TASK_ROOT": str(ROOT / "functions"), "AWS_LAMBDA_FUNCTION_NAME": "f"}


@pytest.mark.parametrize(
    ("module", "patched"),
    [("reader.handler", ["botocore"]), ("consumer.handler", ["botocore", "httpx"])],
)
def test_a_traced_function_patches_only_the_libraries_it_calls_through(
    module: str, patched: list[str]
) -> None:
    # Given Lambda's environment, tracing on
    # When a traced function's handler is imported
    code = (
        f"import sys, json; import {module}; from aws_xray_sdk.core import patcher; "
        "print(json.dumps([sorted(patcher._PATCHED_MODULES), 'httpx' in sys.modules]))"
    )
    last = _last_line(code, **ON_LAMBDA)
    traced, httpx_loaded = json.loads(last)
    # Then X-Ray records its AWS calls (and the consumer's Supabase reads), and nothing else
    # was imported to be patched: the reader never loads httpx
    assert traced == patched
    assert httpx_loaded == ("httpx" in patched)


HEAVY = (
    "boto3",  # botocore's clients are what the functions use; boto3 adds s3transfer
    "s3transfer",
    "supabase",  # the consumer reads with postgrest-py alone
    "supabase_auth",
    "storage3",
    "realtime",
    "cryptography",
    "aws_lambda_powertools.utilities.parameters",  # secrets are read by the adapter itself
    "aws_lambda_powertools.utilities.parser.models",  # dozens of pydantic models
)


@pytest.mark.parametrize("module", ["receiver.handler", "reader.handler", "consumer.handler"])
def test_no_function_imports_what_it_does_not_use(module: str) -> None:
    # Given Lambda's environment, tracing on / When the handler is imported
    watched = (*HEAVY, "aws_lambda_powertools.event_handler")
    loaded = _loaded_after(f"import {module}", watched, **ON_LAMBDA)
    # Then none of the heavy packages it never calls was loaded (the HTTP functions route
    # the resources API Gateway matched for them themselves, without Powertools' resolvers)
    assert loaded == set()


@pytest.mark.parametrize("module", ["receiver.handler", "reader.handler", "consumer.handler"])
def test_no_message_or_settings_model_is_built_at_import(module: str) -> None:
    # Given Lambda's environment, tracing on
    # When a handler is imported
    code = (
        f"import json, {module}; from waituntil.core import contracts, settings; "
        "print(json.dumps(sorted(name for source in (contracts, settings) "
        "for name, value in vars(source).items() if getattr(value, '__pydantic_complete__', 0) "
        "and value.__module__ == source.__name__)))"
    )
    last = _last_line(code, **ON_LAMBDA)
    # Then none of the contracts' or settings' models has built its validator yet: each is
    # built when first used, so a function pays only for those it uses (a model built at
    # import, HealCheck, was about 6 to 10 ms of every function's cold start)
    assert json.loads(last) == []


@pytest.mark.parametrize("module", ["receiver.handler", "reader.handler", "consumer.handler"])
def test_pydantic_does_not_look_for_plugins_on_lambda(module: str) -> None:
    # Given Lambda's environment with the variables template.yaml gives every function
    from bench.lambda_site import template_constants

    # When a handler is imported and its first model validates, with the scan of installed
    # packages' entry points (pydantic's plugin lookup) counted
    code = (
        "import importlib.metadata as metadata; calls = []; scan = metadata.entry_points; "
        "metadata.entry_points = lambda *a, **k: calls.append(k) or scan(*a, **k); "
        f"import {module}; from waituntil.core.contracts import HealCheck; "
        "HealCheck(keys=['1']); print(len(calls))"
    )
    last = _last_line(code, **ON_LAMBDA, **template_constants())
    # Then no package's entry points were read (about 5 ms of every cold start)
    assert last == "0"
