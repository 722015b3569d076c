"""A change the consumer cannot apply is retried, then parked in the dead-letter queue."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import TABLE, StartStack, supabase_client
from waituntil.core.contracts import Change
from waituntil.read.cache_client import get_item, get_list

pytestmark = pytest.mark.e2e

MAX_RECEIVES = 2


def test_failing_consumer_retries_then_dead_letters(start_stack: StartStack) -> None:
    # Given a stack whose queue redrives after 2 receives, and a Supabase that answers every
    # read with 503 (writes still work, so webhooks still fire)
    stack = start_stack(max_receive_count=MAX_RECEIVES, visibility_timeout_s=1)
    assert stack.supabase is not None
    stack.supabase.inject_fault(status=503, times=None, method="GET", table=TABLE)
    store = stack.cache_store()

    # When an article is inserted
    supabase_client(stack).table(TABLE).insert({"id": 7, "title": "Unlucky"}).execute()
    assert stack.supabase.wait_for_webhooks(10)
    assert [delivery.status_code for delivery in stack.supabase.webhook_log] == [202]

    # Then the consumer fails on every delivery; the change comes back after the visibility
    # timeout, and after MaxReceiveCount receives SQS moves it to the dead-letter queue; the
    # cache is never written meanwhile
    deadline = time.monotonic() + 30
    while stack.queue_depth(stack.dlq_url) == 0:
        assert time.monotonic() < deadline, "the change never reached the dead-letter queue"
        assert get_item(store, TABLE, 7) is None
        assert get_list(store, TABLE) is None
        time.sleep(0.1)
    assert stack.wait_until_idle(timeout_s=10)
    assert stack.consumer_batches == MAX_RECEIVES
    reads = [record for record in stack.supabase.request_log if record.method == "GET"]
    assert len(reads) >= MAX_RECEIVES  # postgrest-py also retries a 503 itself
    assert {record.status for record in reads} == {503}
    assert get_item(store, TABLE, 7) is None
    # And the parked message is the change itself, ready to be redriven
    parked = stack.aws.sqs().receive_message(QueueUrl=stack.dlq_url)["Messages"]
    change = Change.from_message(parked[0]["Body"])
    assert (change.type, change.table, change.key) == ("INSERT", TABLE, 7)
    record = json.loads(parked[0]["Body"])["record"]
    assert record == stack.supabase.rows(TABLE)[0]  # the row as its trigger rendered it
