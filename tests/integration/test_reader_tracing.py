"""The reader never puts a response in its traces: pages carry rows and can pass X-Ray's 64 KB."""

from __future__ import annotations

from typing import Any

import pytest

from reader.handler import build_ports, lambda_handler
from tests.conftest import EmulatedAws, LambdaContext, load_event
from waituntil.core.observability import tracer
from waituntil.core.settings import ReaderSettings


@pytest.mark.parametrize("event_file", ["reader/list.json", "reader/item.json"])
def test_no_reader_response_is_captured_in_a_trace(
    aws: EmulatedAws,
    lambda_context: LambdaContext,
    monkeypatch: pytest.MonkeyPatch,
    event_file: str,
) -> None:
    # Given the reader over an empty cache, and Powertools' hook that copies a traced
    # function's return value into the trace, recording what it is asked to capture
    settings = ReaderSettings.model_validate(aws.environment("ReaderFunction"))
    ports = build_ports(settings, dynamodb=aws.dynamodb)
    captured: list[tuple[str | None, Any]] = []

    def record(
        method_name: str | None = None,
        data: Any = None,
        subsegment: Any = None,
        capture_response: bool | str | None = None,
    ) -> None:
        if capture_response:
            captured.append((method_name, data))

    monkeypatch.setattr(tracer, "_add_response_as_metadata", record)

    # When a list and a row are requested (the handler and the route both run traced)
    response = lambda_handler(load_event(event_file), lambda_context, ports=ports)

    # Then a response was produced, and none of the traced functions asked for it to be kept
    assert response["statusCode"] == 404
    assert captured == []
