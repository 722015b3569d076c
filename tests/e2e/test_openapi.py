"""docs/openapi.yaml checked against the local stack by schemathesis, a client nobody here wrote.

Schemathesis generates requests from the description (valid ones, and invalid ones for the
negative mode) for every documented operation, and checks every response against it: status
codes, headers, media types, bodies, and no 5xx. Hypothesis drives it, so the examples are
derandomized here as for every property test of ``make test`` (the ``ci`` profile): CI runs
the same requests every time; ``make soak`` (``HYPOTHESIS_PROFILE=soak``) draws fresh ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import settings
from openapi_spec_validator import validate
from schemathesis import CheckContext, Response
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from local.stack import PipelineStack

pytestmark = pytest.mark.e2e

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
# Enough to cover each operation's parameters in both modes and stay within seconds each;
# `make soak` raises it with its profile.
EXAMPLES = 5000 if os.environ.get("HYPOTHESIS_PROFILE") == "soak" else 60

schema = schemathesis.openapi.from_path(SPEC)
schema.config.generation.update(max_examples=EXAMPLES)
# Undocumented methods must be 405 (with Allow). Only the methods API Gateway routes are tried:
# TRACE and QUERY never reach a function there, and what its front door answers for them is
# not ours to emulate (the local gateway's HTTP server answers 501).
# Every check schemathesis has (`--checks all`), named so that a change of its defaults cannot
# narrow the run.
schema.config.checks.update(included_check_names=["all"])
# Undeclared methods are tried among those API Gateway routes, which reach a function that
# answers 405 with Allow. TRACE and QUERY reach none: API Gateway answers them as any request
# no route matches (403 in JSON, which the check accepts only on an authenticated operation);
# tests/integration/test_local_api_gateway.py checks that answer on every path.
schema.config.phases.coverage.unexpected_methods = {
    "get",
    "put",
    "post",
    "delete",
    "patch",
    "options",
}


def positive_data_acceptance_but_for_state(
    ctx: CheckContext, response: Response, case: schemathesis.Case[Any]
) -> bool | None:
    """schemathesis's positive_data_acceptance, except where no schema can tell valid data.

    A cursor is valid only if this API issued it, a page only up to the list's page count:
    state no schema can express. So a schema-valid one may rightly be refused (400, or 410 for
    a retired version), and the refusal must then say it is about the cursor or the page.
    """
    named = {"cursor", "page"} & set(case.query or {})
    if named and response.status_code in (400, 410):
        if case.method.upper() == "HEAD":
            return None  # no body to read; GET of the same URL is checked for its reason
        message = str(response.json().get("message", ""))
        assert any(name in message for name in named), message
        return None
    return positive_data_acceptance(ctx, response, case)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # loopback only: no proxy from the environment
        yield session


def test_the_description_is_valid_openapi_3_1() -> None:
    # Given docs/openapi.yaml / When validated / Then it is an OpenAPI 3.1 document
    document = yaml.safe_load(SPEC.read_text())
    validate(document)
    assert document["openapi"].startswith("3.1")


@schema.parametrize()
@settings(deadline=None)
def test_the_local_stack_conforms_to_its_description(
    case: schemathesis.Case[Any], paged_stack: PipelineStack, session: requests.Session
) -> None:
    # Given a generated request for one documented operation, signed with the stack's secret
    headers = {"Authorization": f"Bearer {paged_stack.webhook_secret}"}
    # When it is sent / Then every check passes: the response is documented, conforms, is
    # not a 5xx, and a schema-valid request is accepted unless it names state the API refuses
    case.call_and_validate(
        base_url=paged_stack.api_url,
        session=session,
        headers=headers,
        excluded_checks=[positive_data_acceptance],
        additional_checks=[positive_data_acceptance_but_for_state],
    )


def test_the_local_stack_serves_its_description(
    paged_stack: PipelineStack, session: requests.Session
) -> None:
    # Given a running local stack
    url = f"{paged_stack.api_url}/openapi.yaml"
    # When its description is fetched, as schemathesis or a browser would
    response = session.get(url, timeout=10)
    # Then it is docs/openapi.yaml, as YAML
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/yaml")
    assert response.content == SPEC.read_bytes()
    # And schemathesis can load it from there (`schemathesis run <url>` works the same way)
    loaded = schemathesis.openapi.from_url(url)
    results = list(loaded.get_all_operations())
    assert all(isinstance(result, Ok) for result in results)  # no operation failed to load
    labels = {result.ok().label for result in results if isinstance(result, Ok)}
    assert labels == {
        "POST /revalidate",
        "GET /{table}",
        "HEAD /{table}",
        "GET /{table}/{id}",
        "HEAD /{table}/{id}",
    }
