"""A first fill through the consumer's handler: continuations, and a killed invocation resuming.

The table is small and pages are short so the test is quick; what it shows does not depend on
size: each invocation has time for a few pages, continues in a new message, and an invocation
that dies mid-page (a timeout or an out-of-memory kill, which no handler code survives) is
resumed from the last checkpoint by SQS's redelivery, not restarted.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from local.supabase import LocalSupabase
from tests.conftest import Database, EmulatedAws, LambdaContext
from tests.consumer_support import (
    batch,
    cache_equals,
    change,
    consumer_ports,
    resync,
    run,
    sqs_event,
)
from waituntil.adapters.supabase_source import SupabaseSource, key_groups
from waituntil.cache.layout import row_item_key
from waituntil.core.table_policy import TablePolicy

ROWS = 300
PAGE_ROWS = 50
PAGES_PER_INVOCATION = 2


class Killed(BaseException):
    """The invocation dies here. A BaseException, as the process's end is: neither the batch
    processor nor the handler gets to report, clean up or send anything after it."""


class ShortInvocation(LambdaContext):
    """An invocation with time for ``pages`` budget checks, then none: deterministic, where
    a real clock would make the pages per invocation depend on this machine's load."""

    def __init__(self, pages: int) -> None:
        self._checks_left = pages

    def get_remaining_time_in_millis(self) -> int:  # type: ignore[override]
        self._checks_left -= 1
        return 60_000 if self._checks_left >= 0 else 0


def _rows() -> list[dict[str, Any]]:
    return [{"id": key, "title": f"article {key}", "body": "x" * 200} for key in range(1, ROWS + 1)]


def _page_reads(supabase: LocalSupabase) -> list[str]:
    """The ``id`` filter of each full page read (``select=*`` ordered by id), in order."""
    reads = []
    for request in supabase.request_log:
        query = urllib.parse.parse_qs(request.query)
        if query.get("order") == ["id.asc"] and query.get("select") == ["*"]:
            reads.append(query.get("id", ["from the start"])[0])
    return reads


def _drain_in_short_invocations(aws: EmulatedAws, ports: Any) -> int:
    invocations = 0
    while messages := aws.queue_messages():
        for start in range(0, len(messages), 10):
            event = sqs_event(*(m["Body"] for m in messages[start : start + 10]))
            assert run(event, ports, ShortInvocation(PAGES_PER_INVOCATION)) == []
            invocations += 1
            assert invocations < 100, "the fill never finished"
    return invocations


def _fill_two_pages(aws: EmulatedAws, supabase: LocalSupabase, **settings: str) -> tuple[Any, str]:
    """300 rows in Supabase, nothing cached, pages of 50 rows; one change starts the fill and
    its first invocation, with time for two pages, continues: (ports, the continuation)."""
    supabase.seed("articles", _rows())
    ports = consumer_ports(
        aws, supabase, tables="articles", SUPABASE_PAGE_SIZE=str(PAGE_ROWS), **settings
    )
    assert run(batch(change("UPDATE", 1)), ports, LambdaContext()) == []
    fill = aws.queue_messages()
    assert len(fill) == 1 and json.loads(fill[0]["Body"])["type"] == "RESYNC"
    assert run(sqs_event(fill[0]["Body"]), ports, ShortInvocation(PAGES_PER_INVOCATION)) == []
    continuation = aws.queue_messages()
    assert len(continuation) == 1
    assert _page_reads(supabase) == ["from the start", f"gt.{PAGE_ROWS}"]
    return ports, str(continuation[0]["Body"])


def test_a_fill_continues_across_invocations_and_a_killed_one_resumes_from_its_checkpoint(
    aws: EmulatedAws, supabase: LocalSupabase
) -> None:
    # Given a fill under way: two pages cached, its continuation queued
    ports, continuation = _fill_two_pages(aws, supabase)

    # When the next invocation is killed while writing its second page's rows (151-200)
    killed_at = row_item_key("articles", 3 * PAGE_ROWS + PAGE_ROWS // 2)

    def die_mid_page(params: dict[str, Any], **_: Any) -> None:
        # A first fill puts its pages in batches (the first page of an invocation row by row)
        puts = [
            request["PutRequest"]["Item"]["pk"]["S"]
            for requests in params.get("RequestItems", {}).values()
            for request in requests
            if "PutRequest" in request
        ]
        if killed_at in [params.get("Key", {}).get("pk", {}).get("S"), *puts]:
            raise Killed

    events = ["UpdateItem", "BatchWriteItem"]
    for event in events:
        aws.dynamodb.meta.events.register(f"provide-client-params.dynamodb.{event}", die_mid_page)
    with pytest.raises(Killed):
        run(sqs_event(continuation), ports, LambdaContext())
    for event in events:
        aws.dynamodb.meta.events.unregister(f"provide-client-params.dynamodb.{event}", die_mid_page)
    assert aws.queue_messages() == []  # the dead invocation sent nothing
    # Then SQS's redelivery of the same message resumes after the last checkpointed page
    # (the one before the kill), not from the start, and the fill runs to the end
    supabase.reset_request_log()
    assert run(sqs_event(continuation), ports, ShortInvocation(PAGES_PER_INVOCATION)) == []
    assert _page_reads(supabase)[0] == f"gt.{3 * PAGE_ROWS}"
    invocations = _drain_in_short_invocations(aws, ports)
    assert invocations >= 2  # the last pages, then the deletes phase and the publish of the whole
    # And the cache is Supabase's table, as items and as a complete list
    cache_equals(ports, supabase.rows("articles"))


def test_supabase_failing_mid_fill_fails_the_record_and_its_retry_resumes(
    aws: EmulatedAws, supabase: LocalSupabase
) -> None:
    # Given a fill under way (postgrest-py's own retry off, so the outage reaches the consumer)
    ports, continuation = _fill_two_pages(aws, supabase, SUPABASE_RETRY="false")
    # When Supabase answers 503 to every read
    supabase.inject_fault(status=503, times=None, table="articles")
    event = sqs_event(continuation)
    # Then the invocation fails (its only record failed: SQS keeps the message and redelivers
    # it), and no continuation was sent
    with pytest.raises(BatchProcessingError):
        run(event, ports, ShortInvocation(PAGES_PER_INVOCATION))
    assert aws.queue_messages() == []
    # When Supabase is back and SQS redelivers the message
    supabase.clear_faults()
    supabase.reset_request_log()
    assert run(event, ports, ShortInvocation(PAGES_PER_INVOCATION)) == []
    # Then it resumes where the fill was (after page 2), and the fill completes
    assert _page_reads(supabase)[0] == f"gt.{2 * PAGE_ROWS}"
    _drain_in_short_invocations(aws, ports)
    cache_equals(ports, supabase.rows("articles"))


@pytest.mark.parametrize("declared_page_size", ["100", "1000"])
def test_a_project_capping_reads_below_1000_rows_still_syncs_whole(
    aws: EmulatedAws, database: Database, declared_page_size: str
) -> None:
    # Given a project whose max-rows setting is 100 (PostgREST truncates any read there),
    # declared to the consumer as its page size, or not (left at 1,000), and 300 rows
    with LocalSupabase(*database, max_rows=100) as capped:
        capped.seed("articles", _rows())
        ports = consumer_ports(
            aws, capped, tables="articles", SUPABASE_PAGE_SIZE=declared_page_size
        )
        # When a change starts the fill and it runs, and then a resync checks every row again
        assert run(batch(change("UPDATE", 1)), ports, LambdaContext()) == []
        _drain_in_short_invocations(aws, ports)
        assert run(batch(resync("articles")), ports, LambdaContext()) == []
        _drain_in_short_invocations(aws, ports)
        # Then no read was cut short: every row is cached, none taken for deleted
        cache_equals(ports, capped.rows("articles"))


def test_existence_checks_cut_short_by_max_rows_never_take_a_row_for_deleted(
    database: Database,
) -> None:
    # Given a project that answers at most 100 rows to a read, 300 rows of which 20 are gone,
    # and a source that was told the default (1,000): its key groups will be cut short
    rows = [row for row in _rows() if row["id"] % 15 != 0]
    with LocalSupabase(*database, max_rows=100) as capped:
        capped.seed("articles", rows)
        source = SupabaseSource(
            capped.url, {"anon": lambda fresh=False: capped.anon_key}, {"articles": TablePolicy()}
        )
        # When the deletes phase asks which of the 300 keys still exist
        existing = source.existing_keys("articles", [str(key) for key in range(1, ROWS + 1)])
    # Then exactly the rows Supabase has are found: none is taken for deleted
    assert existing == {str(row["id"]) for row in rows}


def test_key_groups_keep_under_both_the_url_and_the_row_caps() -> None:
    # Given 250 short keys, When grouped for in.(...) reads under a 100-row cap
    groups = key_groups([str(key) for key in range(250)], max_keys=100)
    # Then no group exceeds the cap, and every key is in exactly one group, in order
    assert [len(group) for group in groups] == [100, 100, 50]
    assert [key for group in groups for key in group] == [str(key) for key in range(250)]
    # And long keys are grouped by the URL budget first
    long_keys = ["k" * 997 for _ in range(7)]
    assert [len(group) for group in key_groups(long_keys, max_keys=100)] == [3, 3, 1]
