"""Requests the pipeline must refuse change nothing: no message queued, no cache write."""

from __future__ import annotations

import pytest

from local.stack import PipelineStack
from tests.e2e.conftest import (
    TABLE,
    http_request,
    supabase_client,
    wait_for,
    webhook_payload,
)
from waituntil.read.cache_client import get_item, get_list

pytestmark = pytest.mark.e2e


def test_wrong_secret_gets_401_and_changes_nothing(shared_stack: PipelineStack) -> None:
    # Given a cached article
    stack = shared_stack
    supabase_client(stack).table(TABLE).insert({"id": 1, "title": "Cached"}).execute()
    assert stack.wait_until_idle(timeout_s=20)
    store = stack.cache_store()
    cached_list, cached_item = get_list(store, TABLE), get_item(store, TABLE, 1)
    assert cached_item is not None and cached_item["title"] == "Cached"
    batches = stack.consumer_batches

    # When a webhook for it arrives with the wrong secret
    status, _, body = http_request(
        stack.webhook_url,
        method="POST",
        body=webhook_payload("UPDATE", {"id": 1, "title": "Forged"}, {"id": 1, "title": "Cached"}),
        headers={"Authorization": "Bearer not-the-secret", "Content-Type": "application/json"},
    )

    # Then it is refused, nothing is queued and the cache is unchanged
    assert status == 401
    assert body["received"] is False
    assert stack.queue_depth() == 0
    assert stack.wait_until_idle(timeout_s=5)
    assert stack.consumer_batches == batches
    assert get_list(store, TABLE) == cached_list
    assert get_item(store, TABLE, 1) == cached_item


def test_unknown_route_gets_api_gateways_403(shared_stack: PipelineStack) -> None:
    # Given the local API, which serves only the template's routes
    stack = shared_stack

    # When a path that no function declares is called
    status, headers, body = http_request(f"{stack.api_url}/no/such/route", method="POST", body={})

    # Then the answer is the REST API's, not the function's
    assert status == 403
    assert body == {"message": "Missing Authentication Token"}
    assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert stack.queue_depth() == 0


def test_wrong_method_reaches_the_function_through_any(shared_stack: PipelineStack) -> None:
    # Given the receiver's route, declared with Method: ANY
    stack = shared_stack

    # When it is called with GET
    status, headers, body = http_request(stack.webhook_url)

    # Then the function itself answers 405 with an Allow header, as deployed
    assert status == 405
    assert headers["Allow"] == "POST"
    assert body["received"] is False
    assert wait_for(lambda: stack.queue_depth() == 0, timeout_s=2)
