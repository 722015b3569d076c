"""The operator commands (`make backfill|rebuild|heal|status|dlq|redrive|verify`) against a
running local stack."""

from __future__ import annotations

import argparse
import time

import pytest

from local.stack import PipelineStack
from ops.__main__ import (
    backfill,
    dlq,
    heal,
    rebuild,
    redrive_command,
    status,
    verify,
    webhook_sql,
)
from ops.target import Target, local_target
from tests.e2e.conftest import QUIET, TABLE, StartStack, supabase_client
from tests.list_checks import orphans, plant_duplicate
from waituntil.read.cache_client import get_item, get_list

pytestmark = pytest.mark.e2e

ROWS = [{"id": n, "title": f"Article {n}"} for n in (1, 2, 3)]


def _target(stack: PipelineStack) -> Target:
    """What the commands find from `make dev`'s state file."""
    return local_target(stack.state())


def test_backfill_fills_an_empty_cache(
    start_stack: StartStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given rows that reached Supabase without a webhook (a migration, or before the deploy)
    stack = start_stack()
    assert stack.supabase is not None
    stack.supabase.seed(TABLE, ROWS)
    store = stack.cache_store()
    assert get_list(store, TABLE) is None

    # When `make backfill` runs
    status = backfill(_target(stack), argparse.Namespace(no_wait=False, timeout=30.0))

    # Then the cache holds every row and the list, and the command said what it did
    assert status == 0
    rows = stack.supabase.rows(TABLE)
    assert [row["title"] for row in rows] == [row["title"] for row in ROWS]
    assert get_list(store, TABLE) == rows
    assert [get_item(store, TABLE, row["id"]) for row in ROWS] == rows
    output = capsys.readouterr().out
    assert "queued a RESYNC" in output
    assert f"{TABLE}: 3 rows cached" in output


def test_heal_heals_webhooks_supabase_lost_now_and_status_shows_the_last_reconcile(
    start_stack: StartStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a converged cache (settle time 1 s rather than 15, for the test's sake)
    stack = start_stack(environment={**QUIET, "RECONCILE_SETTLE_SECONDS": "1"})
    assert stack.supabase is not None
    client = supabase_client(stack)
    client.table(TABLE).insert(ROWS).execute()
    assert stack.wait_until_idle(timeout_s=20)
    # And an update and a delete whose webhooks Supabase loses (make dev DROP_WEBHOOKS=1)
    stack.supabase.net.drop_rate = 1.0
    client.table(TABLE).update({"title": "edited, webhook lost"}).eq("id", 2).execute()
    client.table(TABLE).delete().eq("id", 3).execute()
    assert stack.supabase.wait_for_webhooks(5.0)
    assert all(delivery.status_code is None for delivery in stack.supabase.webhook_log[-2:])
    time.sleep(1.5)  # past the settle time: no webhook can still be in flight
    store = stack.cache_store()
    assert get_list(store, TABLE) != stack.supabase.rows(TABLE)
    capsys.readouterr()

    # When `make heal` runs
    healed = heal(_target(stack), argparse.Namespace(no_wait=False, timeout=60.0))

    # Then both are healed by the time it returns, and it says how many rows it healed
    assert healed == 0
    assert get_list(store, TABLE) == stack.supabase.rows(TABLE)
    assert get_item(store, TABLE, 3) is None
    assert f"{TABLE}: reconciled; 2 rows healed" in capsys.readouterr().out
    # And `make status` shows the table's last successful reconcile and what it healed
    assert status(_target(stack), argparse.Namespace()) == 0
    shown = capsys.readouterr().out
    assert "last successful reconcile" in shown and "2 rows healed in all" in shown


def test_rebuild_replaces_a_list_no_patch_repairs(
    start_stack: StartStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a converged cache whose list was left inconsistent: its first row listed twice
    stack = start_stack()
    assert stack.supabase is not None
    supabase_client(stack).table(TABLE).insert(ROWS).execute()
    assert stack.wait_until_idle(timeout_s=20)
    rows = stack.supabase.rows(TABLE)
    store = stack.cache_store()
    plant_duplicate(store, TABLE)
    assert get_list(store, TABLE) == [rows[0], *rows]

    # When `make rebuild TABLE=articles` runs
    arguments = argparse.Namespace(table=TABLE, no_wait=False, timeout=30.0)
    status = rebuild(_target(stack), arguments)

    # Then the list is whole again, as a fresh version, and the command said what it did
    assert status == 0
    assert get_list(store, TABLE) == rows
    assert store.get_next_head(TABLE) is None
    assert orphans(store, TABLE) == []
    output = capsys.readouterr().out
    assert f"queued a rebuild of {TABLE}" in output
    assert f"{TABLE}: 3 rows cached" in output


def test_a_dead_lettered_change_is_listed_redriven_and_converges(
    start_stack: StartStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a change that failed every delivery (Supabase answered 503) and was dead-lettered
    stack = start_stack(max_receive_count=2, visibility_timeout_s=1)
    assert stack.supabase is not None
    stack.supabase.inject_fault(status=503, times=None, method="GET", table=TABLE)
    supabase_client(stack).table(TABLE).insert({"id": 7, "title": "Unlucky"}).execute()
    deadline = time.monotonic() + 30
    while stack.queue_depth(stack.dlq_url) == 0:
        assert time.monotonic() < deadline, "the change never reached the dead-letter queue"
        time.sleep(0.1)
    assert stack.wait_until_idle(timeout_s=10)
    target = _target(stack)

    # When `make dlq` lists it
    assert dlq(target, argparse.Namespace(limit=100)) == 0
    listing = capsys.readouterr().out

    # Then it names the change and why it is there
    assert "1 message(s) in the dead-letter queue" in listing
    assert f"INSERT public.{TABLE} key=7" in listing
    assert "why: every delivery failed" in listing

    # When Supabase recovers and `make redrive` moves it back
    stack.supabase.clear_faults()
    assert redrive_command(target, argparse.Namespace(wait=True, timeout=30.0)) == 0

    # Then one message moved, the dead-letter queue is empty and the cache converged
    assert "moved 1 message(s)" in capsys.readouterr().out
    assert stack.wait_until_idle(timeout_s=10)
    assert stack.queue_depth(stack.dlq_url) == 0
    assert get_item(stack.cache_store(), TABLE, 7) == stack.supabase.rows(TABLE)[0]


def test_verify_finds_drift_planted_behind_the_projects_back_and_changes_nothing(
    start_stack: StartStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a cache converged on three rows
    stack = start_stack()
    assert stack.supabase is not None
    supabase_client(stack).table(TABLE).insert(ROWS).execute()
    assert stack.wait_until_idle(timeout_s=20)
    target = _target(stack)
    assert verify(target, argparse.Namespace(table=None)) == 0
    assert "in step" in capsys.readouterr().out

    # And drift planted behind the pipeline's back: a row added to Supabase without a webhook,
    # and row 1's cache item deleted straight from DynamoDB
    stack.supabase.seed(TABLE, [{"id": 4, "title": "Sneaked in"}])
    dynamodb = stack.aws.dynamodb()
    dynamodb.delete_item(TableName=stack.table_name, Key={"pk": {"S": f"/{TABLE}/1"}})
    items_before = dynamodb.scan(TableName=stack.table_name)["Items"]

    # When `make verify` runs
    status = verify(target, argparse.Namespace(table=None))

    # Then it reports both, with counts and examples, and exits non-zero
    report = capsys.readouterr().out
    assert status == 1
    assert f"{TABLE}: 4 rows in Supabase, 3 in the list" in report
    assert "row item missing: 2  e.g. 1, 4" in report
    assert "missing from the list: 1  e.g. 4" in report
    # And it changed nothing
    items_after = dynamodb.scan(TableName=stack.table_name)["Items"]
    assert sorted(map(str, items_after)) == sorted(map(str, items_before))


def test_webhook_sql_prints_the_triggers_the_stack_runs_on(
    start_stack: StartStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a running stack (its database wired by the same template)
    stack = start_stack()
    assert stack.supabase is not None
    # When `make webhook-sql` prints the SQL for it
    assert webhook_sql(_target(stack), argparse.Namespace()) == 0
    printed = capsys.readouterr().out
    # Then it names the stack's receiver, secret and cached table, as trigger arguments
    assert "create or replace trigger waituntil_webhook" in printed
    assert f"'{stack.webhook_url}', 'POST'" in printed
    assert f'"Authorization": "Bearer {stack.webhook_secret}"' in printed
    assert 'on "public"."articles"' in printed
    # And run as a user would, it is valid SQL that leaves webhooks working
    stack.supabase.sql(printed)
    supabase_client(stack).table(TABLE).insert({"id": 1, "title": "wired"}).execute()
    assert stack.wait_until_idle(timeout_s=20)
    assert [delivery.status_code for delivery in stack.supabase.webhook_log] == [202]
