"""docs/openapi.yaml declares every status the API answers, and no other.

The statuses come from the code where the code decides them (each refusal class of
``waituntil.core.errors`` carries its status; the handlers add their successes and their
dependency and size failures) and from API Gateway where it answers by itself. schemathesis
(tests/e2e/test_openapi.py) only sees the statuses its requests happen to provoke; a throttle,
a failing function or a retired cursor it never meets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from waituntil.core import errors

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
# API Gateway's own answers on any route: its throttle (429) and a function that failed or
# timed out (502).
GATEWAY = {429, 502}


def _all_subclasses(base: type[errors.RequestRefused]) -> set[type[errors.RequestRefused]]:
    found = {base}
    for subclass in base.__subclasses__():
        found |= _all_subclasses(subclass)
    return found


def _refusals(base: type[errors.RequestRefused]) -> set[int]:
    return {int(cls.status_code) for cls in _all_subclasses(base)}


def _receiver_statuses() -> set[int]:
    # The receiver's refusals are every RequestRefused outside the read API's ReadRefused.
    webhook = {
        int(cls.status_code)
        for cls in _all_subclasses(errors.RequestRefused)
        if not issubclass(cls, errors.ReadRefused)
    }
    # 202 queued; 503 SQS or Secrets Manager failed; 403 the WAF gate (no gate key).
    return webhook | {202, 403, 503} | GATEWAY


def _read_statuses(*, list_route: bool) -> set[int]:
    refused = _refusals(errors.ReadRefused)
    # 405 answers undeclared methods, documented as such, not per operation.
    refused.discard(int(errors.MethodNotAllowed.status_code))
    if not list_route:
        # A cursor pins a list version: only a list page can be 410.
        refused.discard(int(errors.StaleCursor.status_code))
    # 200, 304 (If-None-Match); 500 a body too large for a Lambda response; 503 DynamoDB
    # failed or the first fill is running.
    return refused | {200, 304, 500, 503} | GATEWAY


def _declared() -> dict[str, set[int]]:
    document: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return {
        f"{method.upper()} {path}": {int(status) for status in operation["responses"]}
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "head", "post")
    }


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ("POST /revalidate", _receiver_statuses()),
        ("GET /{table}", _read_statuses(list_route=True)),
        ("HEAD /{table}", _read_statuses(list_route=True)),
        ("GET /{table}/{id}", _read_statuses(list_route=False)),
        ("HEAD /{table}/{id}", _read_statuses(list_route=False)),
    ],
)
def test_each_operation_declares_exactly_the_statuses_it_answers(
    operation: str, expected: set[int]
) -> None:
    # Given the statuses the code and API Gateway answer for an operation
    # When the description's responses for it are read
    declared = _declared()[operation]
    # Then they are the same: nothing the API answers is missing, nothing is invented
    assert declared == expected, (
        f"missing {sorted(expected - declared)}, never answered {sorted(declared - expected)}"
    )
