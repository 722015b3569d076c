"""What only a real database can show: webhooks built by a trigger and sent after commit (pg_net's
semantics), transactions that roll back or commit out of order, Row Level Security, a bulk
insert, hostile filters, and the local database's own failures (a migration, a folder in use)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from postgrest.types import CountMethod
from supabase import create_client

from local.supabase import LocalDatabaseError, LocalSupabase, PostgresCluster
from local.supabase.net import DROPPED, USER_AGENT
from tests.conftest import Database

SECRET = "webhook-secret"


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # as local.http_server's: a burst must not overflow the backlog


class Receiver:
    """An HTTP endpoint that records each POST and answers ``status`` after ``delay_s``."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status, self.delay_s = 202, 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                time.sleep(receiver.delay_s)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/revalidate"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture
def hooked(supabase: LocalSupabase, receiver: Receiver) -> LocalSupabase:
    """Database Webhooks on articles, from the same SQL `make webhook-sql` prints.

    Their timeout is long: these tests are about what the database sends, not how fast the
    receiver answers, and a delivery that timed out on a loaded machine (one of 1,000 did, at
    2 s) would fail them for the machine's sake. A timeout has its own test, with a receiver
    slower than it on purpose (``test_failed_slow_and_unreachable_deliveries_...``)."""
    supabase.wire_webhooks(receiver.url, SECRET, ["articles"], timeout_ms=30_000)
    return supabase


def payloads(supabase: LocalSupabase, wait_s: float = 30) -> list[Any]:
    assert supabase.wait_for_webhooks(wait_s)
    return [delivery.payload for delivery in supabase.webhook_log]


def responses(supabase: LocalSupabase) -> list[tuple[Any, ...]]:
    return supabase.sql(
        "select status_code, timed_out, error_msg from net._http_response order by id"
    )


def test_a_write_is_posted_after_commit_as_supabases_trigger_builds_it(
    hooked: LocalSupabase, receiver: Receiver
) -> None:
    # When a row is inserted and updated through the API
    db = create_client(hooked.url, hooked.service_key)
    db.table("articles").insert(
        {"id": 1, "title": "Hello", "meta": {"b": 1, "a": [2.50]}}
    ).execute()
    db.table("articles").update({"title": "Hi"}).eq("id", 1).execute()
    # Then each is one POST, its body the jsonb that jsonb_build_object made, byte for byte
    # (in either order: pg_net sends a batch of requests at once, as Supabase's does)
    assert sorted(p["type"] for p in payloads(hooked)) == ["INSERT", "UPDATE"]
    [(expected,)] = hooked.sql(
        "select jsonb_build_object('old_record', null, 'record', to_jsonb(a), 'type', 'UPDATE',"
        " 'table', 'articles', 'schema', 'public')::text from articles a"
    )
    [update] = [entry for entry in hooked.webhook_log if entry.payload["type"] == "UPDATE"]
    assert json.loads(expected)["record"] == update.payload["record"]
    assert update.payload["old_record"]["title"] == "Hello"
    assert update.body.startswith('{"type": "UPDATE", "table": "articles", "record": {')
    # And with the trigger's headers, pg_net's user agent; answered 202, recorded in pg_net's table
    headers = receiver.requests[0][0]
    assert (headers["Authorization"], headers["Content-Type"]) == (
        f"Bearer {SECRET}",
        "application/json",
    )
    assert headers["User-Agent"] == USER_AGENT
    assert responses(hooked) == [(202, False, None), (202, False, None)]
    assert hooked.sql("select count(*) from supabase_functions.hooks") == [(2,)]


def test_a_transaction_that_rolls_back_sends_no_webhook(hooked: LocalSupabase) -> None:
    # Given a transaction that inserts two rows, then rolls back
    with psycopg.connect(hooked.owner) as conn:
        conn.execute("insert into articles (id, title) values (1, 'never'), (2, 'never')")
        conn.rollback()
    # When another write commits
    hooked.sql("insert into articles (id, title) values (3, 'kept')")
    # Then only the committed row was sent, and nothing is left queued
    assert [p["record"]["id"] for p in payloads(hooked)] == [3]
    assert hooked.sql("select count(*) from net.http_request_queue") == [(0,)]
    assert len(responses(hooked)) == 1


def test_commit_order_can_differ_from_now_order(hooked: LocalSupabase) -> None:
    # Given two rows, and two overlapping transactions: the first begins first (its now() is
    # earlier) but commits last
    hooked.sql("insert into articles (id, title) values (1, 'a'), (2, 'b')")
    assert hooked.wait_for_webhooks(30)
    first, second = psycopg.connect(hooked.owner), psycopg.connect(hooked.owner)
    try:
        first.execute("update articles set title = 'first' where id = 1")
        time.sleep(0.05)
        second.execute("update articles set title = 'second' where id = 2")
        # When the later one commits, is delivered, then the earlier one commits
        second.commit()
        assert hooked.wait_for_webhooks(30)
        first.commit()
    finally:
        first.close()
        second.close()
    # Then the webhooks arrive in commit order, which is not updated_at's order: a watermark on
    # updated_at taken from the first delivery would skip the second row
    updates = [p["record"] for p in payloads(hooked) if p["type"] == "UPDATE"]
    assert [row["id"] for row in updates] == [2, 1]
    assert updates[1]["updated_at"] < updates[0]["updated_at"]


def test_a_policy_hides_rows_from_anon_everywhere(supabase: LocalSupabase) -> None:
    # Given drafts hidden from the public by an RLS policy
    supabase.sql(
        """drop policy "articles are public" on articles;
           create policy "published only" on articles for select to anon using (published)"""
    )
    supabase.seed(
        "articles", [{"id": k, "title": f"t{k}", "published": k <= 2} for k in range(1, 6)]
    )
    anon = create_client(supabase.url, supabase.anon_key).table("articles")
    # When anon reads, counts and asks for hidden keys / Then PostgreSQL shows published rows only
    visible: Any = anon.select("id", count=CountMethod.exact).order("id").execute()
    assert ([row["id"] for row in visible.data], visible.count) == ([1, 2], 2)
    assert anon.select("id").in_("id", ["3", "4"]).execute().data == []
    # And the service role sees every row
    service = create_client(supabase.url, supabase.service_key).table("articles")
    assert len(service.select("id").execute().data) == 5


def test_a_bulk_insert_of_1000_rows_sends_1000_webhooks(hooked: LocalSupabase) -> None:
    # When 1,000 rows are inserted in one statement
    rows = [{"id": key, "title": f"row {key}"} for key in range(1, 1001)]
    create_client(hooked.url, hooked.service_key).table("articles").insert(rows).execute()
    # Then one webhook per row, as Supabase sends them, each answered and recorded
    sent = payloads(hooked, wait_s=120)
    assert sorted(p["record"]["id"] for p in sent) == list(range(1, 1001))
    assert {p["type"] for p in sent} == {"INSERT"}
    assert hooked.sql(
        "select count(*), count(*) filter (where status_code = 202) from net._http_response"
    ) == [(1000, 1000)]


HOSTILE = [
    ("articles?id=eq.1'%3B delete from articles%3B--", 400, "22P02"),
    ("articles?title=eq.x')%3Bdrop table articles%3B--", 200, None),  # a value is only a value
    ("articles?id;drop table articles=eq.1", 400, "42703"),
    ("articles?id--=eq.1", 400, "42703"),
    ('articles?"id" or 1=1 --=eq.1', 400, "PGRST100"),
    ("articles?id=drop.1", 400, "PGRST100"),
    ("articles?id=eq(some).1", 400, "PGRST100"),
    ("articles?order=id%3Bdrop table articles", 400, "42703"),
    ("articles?order=id.desc/*", 400, "PGRST100"),
    ("articles?select=id::text from pg_authid", 400, "42704"),
    ("articles?select=id,(select 1)", 400, "PGRST100"),
    ("articles?or=(id.eq.1)%3Bdelete from articles", 400, "PGRST100"),
    ("articles%3Bdrop table articles", 404, "PGRST205"),
]


def test_hostile_filters_change_nothing_and_get_postgrests_answers(hooked: LocalSupabase) -> None:
    # Given rows, and webhooks that would show any write
    hooked.seed("articles", [{"id": 1, "title": "kept"}, {"id": 2, "title": "kept too"}])
    before = hooked.rows("articles")
    headers = {"apikey": hooked.service_key}
    for path, status, code in HOSTILE:
        # When a hostile filter is read, updated or deleted with
        for method in ("GET", "PATCH", "DELETE"):
            response = httpx.request(
                method, f"{hooked.url}/rest/v1/{path}", headers=headers, json={"title": "x"}
            )
            # Then PostgREST's answer to a read (a harmless value simply matches nothing), and
            # a client error or a write of nothing to the others
            if method == "GET":
                assert response.status_code == status, (path, response.text)
                assert code is None or response.json()["code"] == code, (path, response.text)
            else:
                assert response.status_code in (204, 400, 404), (method, path, response.text)
    # And nothing changed, nothing was sent
    assert hooked.rows("articles") == before
    assert hooked.wait_for_webhooks(10) and hooked.webhook_log == []


def test_failed_slow_and_unreachable_deliveries_are_recorded_once_and_never_retried(
    supabase: LocalSupabase, receiver: Receiver
) -> None:
    # Given a receiver answering 500, then one slower than the trigger's timeout, then none
    supabase.wire_webhooks(receiver.url, SECRET, ["articles"], timeout_ms=300)
    receiver.status = 500
    supabase.sql("insert into articles (id) values (1)")
    assert supabase.wait_for_webhooks(30)
    receiver.status, receiver.delay_s = 202, 1.0
    supabase.sql("insert into articles (id) values (2)")
    assert supabase.wait_for_webhooks(30)
    supabase.wire_webhooks("http://127.0.0.1:9/revalidate", SECRET, ["articles"], timeout_ms=300)
    supabase.sql("insert into articles (id) values (3)")
    # Then each is in net._http_response as pg_net records it, and was tried once
    assert supabase.wait_for_webhooks(30)
    recorded = responses(supabase)
    assert recorded[0] == (500, False, None)
    assert recorded[1][:2] == (None, True) and "Timeout of 300 ms" in recorded[1][2]
    assert recorded[2] == (None, False, "Couldn't connect to server")
    assert len(receiver.requests) == 2


def test_the_drop_knob_fails_deliveries_without_sending_them(
    database: Database, receiver: Receiver
) -> None:
    # Given every delivery dropped (make dev DROP_WEBHOOKS=1)
    with LocalSupabase(*database, drop_webhooks=1.0) as supabase:
        supabase.wire_webhooks(receiver.url, SECRET, ["articles"], timeout_ms=1000)
        # When rows change / Then nothing reaches the receiver, and each is recorded as failed
        supabase.sql("insert into articles (id) values (1), (2)")
        assert supabase.wait_for_webhooks(30)
        assert receiver.requests == []
        assert responses(supabase) == [(None, False, DROPPED)] * 2


def test_a_failing_migration_names_its_file_and_line_and_applies_nothing(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    # Given a project whose second migration has a typo on its third line
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "1_good.sql").write_text("create table public.good (id int);\n")
    (migrations / "2_bad.sql").write_text("-- typo below\n\ncreate tabel public.bad (id int);\n")
    postgres.create_database("migration_test")
    try:
        # When the database is prepared / Then one line says where, and nothing was applied
        with pytest.raises(LocalDatabaseError) as failed:
            postgres.prepare("migration_test", project=tmp_path)
        message = str(failed.value)
        assert "2_bad.sql failed: syntax error" in message and "(line 3)" in message
        assert "\n" not in message and "fix it" in message
        with psycopg.connect(postgres.conninfo("migration_test")) as conn:
            assert conn.execute("select to_regclass('public.good')").fetchone() == (None,)
    finally:
        postgres.drop_database("migration_test")


def test_a_data_folder_in_use_is_refused_in_one_line(tmp_path: Path) -> None:
    # Given a PostgreSQL running on a folder (another make dev, or one a crash left behind)
    running = PostgresCluster(tmp_path).start()
    try:
        # When another stack is started on it / Then it refuses, naming the pid and the fix
        with pytest.raises(LocalDatabaseError) as refused:
            PostgresCluster(tmp_path).start()
        assert "is in use by PostgreSQL (pid" in str(refused.value)
        assert "choose another DATA= folder" in str(refused.value)
    finally:
        running.stop()
    # And a folder holding something else is refused too
    other = tmp_path / "other"
    (other / "postgres").mkdir(parents=True)
    (other / "postgres" / "supabase.sqlite3").write_text("")
    with pytest.raises(LocalDatabaseError, match="holds no PostgreSQL data"):
        PostgresCluster(other).start()
