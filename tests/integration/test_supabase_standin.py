"""The Supabase stand-in over real HTTP, driven through supabase-py's ``create_client``.

Webhooks are captured by a tiny ThreadingHTTPServer receiver in this file.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from postgrest.exceptions import APIError
from postgrest.types import CountMethod
from supabase import Client, ClientOptions, create_client

from local.supabase_standin import (
    SupabaseStandIn,
    WebhookConfig,
    make_service_key,
)

# postgrest-py warns that its `timeout` argument is deprecated (supabase-py passes it).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]
BIG_N = 2500


# -- helpers ---------------------------------------------------------------------------------


def make_client(
    standin: SupabaseStandIn,
    *,
    timeout: float | httpx.Timeout = 5,
    retry: bool = True,
    key: str | None = None,
) -> Client:
    options = ClientOptions(postgrest_client_timeout=timeout, postgrest_client_retry=retry)
    return create_client(standin.url, key or standin.service_key, options)


def rows_of(result: Any) -> list[dict[str, Any]]:
    """``APIResponse.data`` typed as the list of row objects it is for table reads."""
    rows: list[dict[str, Any]] = result.data
    return rows


def raw(standin: SupabaseStandIn, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"apikey": standin.service_key, **kwargs.pop("headers", {})}
    with httpx.Client(trust_env=False, timeout=5) as http:
        return http.request(method, f"{standin.url}{path}", headers=headers, **kwargs)


@dataclass
class Received:
    payload: dict[str, Any]
    headers: dict[str, str]
    extra: Any = None


class Receiver:
    """Records every webhook POST; can answer slowly, with an error, or run a callback."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.delay_s = 0.0
        self.status = 200
        self.on_receive: Callable[[dict[str, Any]], Any] | None = None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                payload = json.loads(body)
                extra = receiver.on_receive(payload) if receiver.on_receive else None
                with receiver._lock:
                    receiver.received.append(Received(payload, dict(self.headers.items()), extra))
                time.sleep(receiver.delay_s)
                try:
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender timed out and hung up

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/revalidate"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def payloads(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.payload for r in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture
def hooked(receiver: Receiver) -> Iterator[SupabaseStandIn]:
    """A stand-in whose webhooks go to `receiver` (with a shared-secret header)."""
    webhook = WebhookConfig(
        url=receiver.url,
        headers={"Authorization": "Bearer s3cret"},
        timeout_s=2.0,
        max_jitter_s=0.0,
    )
    with SupabaseStandIn({"articles": "id"}, webhook=webhook) as standin:
        yield standin


@pytest.fixture(scope="module")
def big() -> Iterator[SupabaseStandIn]:
    """2,500 seeded rows, read-only tests only."""
    with SupabaseStandIn({"articles": "id"}) as standin:
        standin.seed(
            "articles",
            [{"id": i, "title": f"title {i}", "rank": i % 7} for i in range(1, BIG_N + 1)],
        )
        yield standin


SMALL = [
    {"id": 1, "title": "Alpha", "price": 19.99, "stock": 3, "active": True, "tag": None},
    {"id": 2, "title": "beta", "price": 5, "stock": 0, "active": False, "tag": "x"},
    {"id": 3, "title": "Gamma, Inc", "price": 100.5, "stock": None, "active": None, "tag": "y"},
    {"id": 4, "title": "delta", "price": 7.25, "stock": 10, "active": True, "tag": "x"},
]


@pytest.fixture(scope="module")
def small() -> Iterator[SupabaseStandIn]:
    with SupabaseStandIn({"products": "id"}) as standin:
        standin.seed("products", SMALL)
        yield standin


# -- reads -----------------------------------------------------------------------------------


def test_select_all_returns_every_column_of_every_row(small: SupabaseStandIn) -> None:
    # Given four seeded products
    client = make_client(small)
    # When selecting * without filters
    result = client.table("products").select("*").order("id").execute()
    # Then every row comes back exactly as seeded
    assert result.data == SMALL


def test_select_named_columns_only(small: SupabaseStandIn) -> None:
    client = make_client(small)
    result = client.table("products").select("id, title").eq("id", 2).execute()
    assert result.data == [{"id": 2, "title": "beta"}]


QueryBuilder = Callable[[Any], Any]


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda q: q.eq("id", 2), [2]),
        (lambda q: q.neq("id", 2), [1, 3, 4]),
        (lambda q: q.gt("price", 7.25), [1, 3]),
        (lambda q: q.gte("price", 7.25), [1, 3, 4]),
        (lambda q: q.lt("stock", 3), [2]),
        (lambda q: q.lte("stock", 3), [1, 2]),
        (lambda q: q.in_("title", ["Alpha", "Gamma, Inc"]), [1, 3]),
        (lambda q: q.in_("id", [2, 4]), [2, 4]),
        (lambda q: q.is_("tag", None), [1]),
        (lambda q: q.not_.is_("tag", None), [2, 3, 4]),
        (lambda q: q.is_("active", True), [1, 4]),
        (lambda q: q.is_("active", False), [2]),
        (lambda q: q.like("title", "%ta"), [2, 4]),
        (lambda q: q.like("title", "*ta"), [2, 4]),
        (lambda q: q.ilike("title", "gamma%"), [3]),
        (lambda q: q.not_.eq("tag", "x"), [3]),
        (lambda q: q.eq("tag", "x").gt("stock", 1), [4]),
        (lambda q: q.or_("id.eq.1,stock.gte.10"), [1, 4]),
        (lambda q: q.eq("price", 19.99), [1]),
    ],
)
def test_filters_via_supabase_py(
    small: SupabaseStandIn, build: QueryBuilder, expected: list[int]
) -> None:
    # Given the seeded products, When one supabase-py filter chain runs
    client = make_client(small)
    result = build(client.table("products").select("id")).order("id").execute()
    # Then exactly the rows PostgREST would return come back
    assert [row["id"] for row in result.data] == expected


def test_order_desc_and_nulls(small: SupabaseStandIn) -> None:
    client = make_client(small)
    # When ordered by id descending
    by_id = client.table("products").select("id").order("id", desc=True).execute()
    # Then highest first
    assert [r["id"] for r in rows_of(by_id)] == [4, 3, 2, 1]
    # And NULLs go first on desc (PostgreSQL default) unless nullsfirst=False
    by_stock = client.table("products").select("id").order("stock", desc=True).execute()
    assert [r["id"] for r in rows_of(by_stock)] == [3, 4, 1, 2]
    nulls_last = (
        client.table("products").select("id").order("stock", desc=True, nullsfirst=False).execute()
    )
    assert [r["id"] for r in rows_of(nulls_last)] == [4, 1, 2, 3]


def test_single_and_maybe_single(small: SupabaseStandIn) -> None:
    client = make_client(small)
    # Given .single() on a query matching one row, Then an object comes back
    one = client.table("products").select("title").eq("id", 1).single().execute()
    assert one.data == {"title": "Alpha"}
    # Given .single() on zero rows, Then PGRST116 (406)
    with pytest.raises(APIError) as info:
        client.table("products").select("*").eq("id", 99).single().execute()
    assert info.value.code == "PGRST116"
    # Given .maybe_single() on zero rows, Then None
    assert client.table("products").select("*").eq("id", 99).maybe_single().execute() is None


def test_range_pages_cover_all_rows(big: SupabaseStandIn) -> None:
    # Given 2,500 rows, When reading .range(a, b) pages of 1000 ordered by id
    client = make_client(big)
    ids: list[int] = []
    sizes = []
    for start in (0, 1000, 2000):
        page = client.table("articles").select("id").order("id").range(start, start + 999).execute()
        sizes.append(len(page.data))
        ids.extend(r["id"] for r in rows_of(page))
    # Then 1000 + 1000 + 500 rows, every id once
    assert sizes == [1000, 1000, 500]
    assert ids == list(range(1, BIG_N + 1))


def test_keyset_pagination_reads_everything_in_three_pages(big: SupabaseStandIn) -> None:
    # Given 2,500 rows and the consumer's loop: gt(pk, last).order(pk).limit(1000)
    client = make_client(big)
    big.reset_request_log()
    ids: list[int] = []
    last = 0
    pages = 0
    while True:
        page = client.table("articles").select("*").gt("id", last).order("id").limit(1000).execute()
        pages += 1
        ids.extend(row["id"] for row in rows_of(page))
        if len(page.data) < 1000:
            break
        last = rows_of(page)[-1]["id"]
    # Then all rows arrive in 3 requests, in order, none twice
    assert pages == 3
    assert ids == list(range(1, BIG_N + 1))
    assert [r.status for r in big.request_log] == [200, 200, 200]


def test_unbounded_select_is_silently_capped_at_max_rows(big: SupabaseStandIn) -> None:
    # Given 2,500 rows, When .select("*") without limit, and with limit(5000)
    client = make_client(big)
    unbounded = client.table("articles").select("*").execute()
    asked_more = client.table("articles").select("*").limit(5000).execute()
    # Then exactly 1000 rows each time, and no error
    assert len(unbounded.data) == 1000
    assert len(asked_more.data) == 1000
    # And the raw answer is a plain 200 whose Content-Range tells what was returned
    response = raw(big, "GET", "/rest/v1/articles", params={"select": "id"})
    assert response.status_code == 200
    assert response.headers["content-range"] == "0-999/*"


def test_count_exact_gives_the_total_and_a_206(big: SupabaseStandIn) -> None:
    client = make_client(big)
    big.reset_request_log()
    # When asking for count=CountMethod.exact (and planned, which the stand-in answers exactly)
    exact = client.table("articles").select("id", count=CountMethod.exact).execute()
    planned = client.table("articles").select("id", count=CountMethod.planned).limit(10).execute()
    head = (
        client.table("articles")
        .select("*", count=CountMethod.exact, head=True)
        .eq("rank", 0)
        .execute()
    )
    # Then the count is the total while the data is capped, and the status says partial
    assert (len(exact.data), exact.count) == (1000, BIG_N)
    assert (len(planned.data), planned.count) == (10, BIG_N)
    assert head.data == []
    assert head.count == len([i for i in range(1, BIG_N + 1) if i % 7 == 0])
    assert [r.status for r in big.request_log] == [206, 206, 200]  # HEAD: all 357 fit
    assert big.request_log[2].method == "HEAD"


def test_range_header_and_empty_content_range(big: SupabaseStandIn) -> None:
    # Given a Range header (older clients, curl), Then it is honoured
    response = raw(
        big,
        "GET",
        "/rest/v1/articles",
        params={"select": "id", "order": "id"},
        headers={"Range": "10-14", "Range-Unit": "items", "Prefer": "count=exact"},
    )
    assert response.status_code == 206
    assert [r["id"] for r in response.json()] == [11, 12, 13, 14, 15]
    assert response.headers["content-range"] == f"10-14/{BIG_N}"
    # Given a filter matching nothing with count=exact, Then "*/0" and 200
    empty = raw(
        big, "GET", "/rest/v1/articles", params={"id": "lt.0"}, headers={"Prefer": "count=exact"}
    )
    assert (empty.status_code, empty.headers["content-range"], empty.json()) == (200, "*/0", [])
    # Given an offset past the end with a count, Then 416 PGRST103
    past = raw(
        big,
        "GET",
        "/rest/v1/articles",
        params={"offset": "3000"},
        headers={"Prefer": "count=exact"},
    )
    assert (past.status_code, past.json()["code"]) == (416, "PGRST103")


# -- writes and webhooks ---------------------------------------------------------------------


def test_insert_returns_representation_and_fires_one_insert_webhook(
    hooked: SupabaseStandIn, receiver: Receiver
) -> None:
    # Given an empty table with a webhook, When inserting one row without an id
    client = make_client(hooked)
    result = client.table("articles").insert({"title": "Hello"}).execute()
    # Then the row comes back with its identity key
    assert result.data == [{"id": 1, "title": "Hello"}]
    # And exactly one INSERT webhook arrives with Supabase's payload and headers
    assert hooked.wait_for_webhooks(5)
    assert receiver.payloads() == [
        {
            "type": "INSERT",
            "table": "articles",
            "schema": "public",
            "record": {"id": 1, "title": "Hello"},
            "old_record": None,
        }
    ]
    headers = {k.lower(): v for k, v in receiver.received[0].headers.items()}
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("pg_net/")
    [delivery] = hooked.webhook_log
    assert (delivery.type, delivery.status_code, delivery.error) == ("INSERT", 200, None)


def test_update_fires_update_webhook_with_old_and_new_record(
    hooked: SupabaseStandIn, receiver: Receiver
) -> None:
    # Given a seeded row (seeding fires nothing)
    hooked.seed("articles", [{"id": 7, "title": "old", "views": 1}])
    client = make_client(hooked)
    # When updating it
    result = client.table("articles").update({"title": "new"}).eq("id", 7).execute()
    # Then the new row is returned and one UPDATE webhook carries both versions
    assert result.data == [{"id": 7, "title": "new", "views": 1}]
    assert hooked.wait_for_webhooks(5)
    assert receiver.payloads() == [
        {
            "type": "UPDATE",
            "table": "articles",
            "schema": "public",
            "record": {"id": 7, "title": "new", "views": 1},
            "old_record": {"id": 7, "title": "old", "views": 1},
        }
    ]


def test_upsert_is_update_for_existing_and_insert_for_new(
    hooked: SupabaseStandIn, receiver: Receiver
) -> None:
    hooked.seed("articles", [{"id": 1, "title": "one"}])
    client = make_client(hooked)
    # When upserting an existing row, then a new one
    existing = client.table("articles").upsert({"id": 1, "title": "uno"}).execute()
    assert hooked.wait_for_webhooks(5)
    fresh = client.table("articles").upsert({"id": 2, "title": "dos"}, on_conflict="id").execute()
    assert hooked.wait_for_webhooks(5)
    # Then both return their row; the first fired UPDATE, the second INSERT
    assert existing.data == [{"id": 1, "title": "uno"}]
    assert fresh.data == [{"id": 2, "title": "dos"}]
    assert [(p["type"], p["record"]["id"]) for p in receiver.payloads()] == [
        ("UPDATE", 1),
        ("INSERT", 2),
    ]
    assert receiver.payloads()[0]["old_record"] == {"id": 1, "title": "one"}


def test_delete_fires_delete_webhook_with_null_record(
    hooked: SupabaseStandIn, receiver: Receiver
) -> None:
    hooked.seed("articles", [{"id": 1, "title": "a"}, {"id": 2, "title": "b"}])
    client = make_client(hooked)
    # When deleting one row
    result = client.table("articles").delete().eq("id", 2).execute()
    # Then it is returned, gone, and one DELETE webhook has record null
    assert result.data == [{"id": 2, "title": "b"}]
    assert hooked.rows("articles") == [{"id": 1, "title": "a"}]
    assert hooked.wait_for_webhooks(5)
    assert receiver.payloads() == [
        {
            "type": "DELETE",
            "table": "articles",
            "schema": "public",
            "record": None,
            "old_record": {"id": 2, "title": "b"},
        }
    ]


def test_bulk_write_fires_one_webhook_per_row_in_no_guaranteed_order(
    receiver: Receiver,
) -> None:
    # Given webhooks with jitter (shuffled arrival) and 4 sender threads
    webhook = WebhookConfig(url=receiver.url, max_jitter_s=0.05, max_workers=4)
    with SupabaseStandIn({"articles": "id"}, webhook=webhook) as standin:
        client = make_client(standin)
        # When 6 rows are inserted in one request and then 6 updated in one request
        client.table("articles").insert([{"id": i, "n": i} for i in range(1, 7)]).execute()
        client.table("articles").update({"n": 0}).gte("id", 1).execute()
        assert standin.wait_for_webhooks(5)
        # Then exactly 12 deliveries: one per row and event, none repeated
        seen = sorted((p["type"], p["record"]["id"]) for p in receiver.payloads())
        assert seen == sorted(
            [("INSERT", i) for i in range(1, 7)] + [("UPDATE", i) for i in range(1, 7)]
        )
        assert len(standin.webhook_log) == 12


def test_webhook_is_sent_after_commit(hooked: SupabaseStandIn, receiver: Receiver) -> None:
    # Given a receiver that, on receipt, reads the row back through the REST API
    def read_back(payload: dict[str, Any]) -> Any:
        row_id = payload["record"]["id"]
        response = raw(hooked, "GET", "/rest/v1/articles", params={"id": f"eq.{row_id}"})
        return response.json()

    receiver.on_receive = read_back
    client = make_client(hooked)
    # When a row is inserted
    client.table("articles").insert({"id": 42, "title": "committed"}).execute()
    assert hooked.wait_for_webhooks(5)
    # Then the receiver could already see it: delivery happens after the commit
    assert receiver.received[0].extra == [{"id": 42, "title": "committed"}]


def test_slow_receiver_times_out_is_logged_and_not_retried(receiver: Receiver) -> None:
    # Given a receiver slower than the webhook timeout
    receiver.delay_s = 1.0
    webhook = WebhookConfig(url=receiver.url, timeout_s=0.3)
    with SupabaseStandIn({"articles": "id"}, webhook=webhook) as standin:
        client = make_client(standin)
        # When a row is inserted
        started = time.monotonic()
        client.table("articles").insert({"title": "slow"}).execute()
        answered_in = time.monotonic() - started
        # Then the REST answer did not wait for the webhook
        assert answered_in < 0.8
        # And the delivery is logged as a timeout, after about timeout_s
        assert standin.wait_for_webhooks(5)
        [delivery] = standin.webhook_log
        assert (delivery.status_code, delivery.error) == (None, "timeout")
        assert 0.25 <= delivery.elapsed_s < 0.9
        # And it was sent once: no retry after the timeout
        time.sleep(0.5)
        assert len(receiver.received) == 1


def test_error_answer_and_refused_connection_are_logged_not_retried(receiver: Receiver) -> None:
    # Given a receiver answering 500
    receiver.status = 500
    webhook = WebhookConfig(url=receiver.url)
    with SupabaseStandIn({"articles": "id"}, webhook=webhook) as standin:
        make_client(standin).table("articles").insert({"title": "x"}).execute()
        assert standin.wait_for_webhooks(5)
        # Then the 500 is logged once, and the receiver saw one request
        assert [(d.status_code, d.error) for d in standin.webhook_log] == [(500, None)]
        assert len(receiver.received) == 1
    # Given nothing listening on the webhook port
    closed_url = receiver.url
    receiver.close()
    with SupabaseStandIn({"articles": "id"}, webhook=WebhookConfig(url=closed_url)) as standin:
        make_client(standin).table("articles").insert({"title": "y"}).execute()
        assert standin.wait_for_webhooks(5)
        # Then the failure is logged as a refused connection
        assert [(d.status_code, d.error) for d in standin.webhook_log] == [
            (None, "connection refused")
        ]


def test_awkward_values_round_trip_through_rest_and_webhooks(
    hooked: SupabaseStandIn, receiver: Receiver
) -> None:
    # Given a row full of values that break naive serialisers
    row = {
        "id": 2**60,
        "title": "Ünïcødé — 中文 — emoji 🎉👩‍👩‍👧",
        "price": 19.99,
        "ratio": 0.1 + 0.2,
        "nothing": None,
        "tags": ["a", "b", "🎉", 1, None],
        "meta": {"nested": {"deep": [1, {"x": "y"}]}, "empty": {}, "flag": False},
        "quote": 'He said "hi", then \\ left',
    }
    client = make_client(hooked)
    # When inserted and read back
    inserted = client.table("articles").insert(row).execute()
    fetched = client.table("articles").select("*").eq("id", 2**60).execute()
    # Then every value is exactly preserved in the answer, the read, the store and the webhook
    assert inserted.data == [row]
    assert fetched.data == [row]
    assert hooked.rows("articles") == [row]
    assert hooked.wait_for_webhooks(5)
    assert receiver.payloads()[0]["record"] == row
    # And the response is UTF-8 JSON with the characters themselves
    response = raw(hooked, "GET", "/rest/v1/articles", params={"select": "title"})
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert "🎉".encode() in response.content


def test_duplicate_key_is_409_and_unfiltered_delete_is_refused(hooked: SupabaseStandIn) -> None:
    hooked.seed("articles", [{"id": 1, "title": "a"}])
    client = make_client(hooked)
    # When inserting an existing key, Then 23505
    with pytest.raises(APIError) as dup:
        client.table("articles").insert({"id": 1, "title": "again"}).execute()
    assert dup.value.code == "23505"
    # When deleting without a filter, Then Supabase's safeupdate error
    response = raw(hooked, "DELETE", "/rest/v1/articles")
    assert (response.status_code, response.json()["code"]) == (400, "21000")
    # And nothing was written, so nothing fired
    assert hooked.rows("articles") == [{"id": 1, "title": "a"}]
    assert hooked.wait_for_webhooks(5)
    assert hooked.webhook_log == []


# -- errors, auth, faults --------------------------------------------------------------------


def test_wrong_or_missing_key_is_401(small: SupabaseStandIn) -> None:
    # Given a client with another (well-formed) key
    client = make_client(small, key=make_service_key())
    # When it queries, Then 401 "Invalid API key"
    with pytest.raises(APIError) as info:
        client.table("products").select("*").execute()
    assert info.value.message == "Invalid API key"
    # And without any key at all, 401 too
    with httpx.Client(trust_env=False) as http:
        response = http.get(f"{small.url}/rest/v1/products")
    assert response.status_code == 401
    assert set(response.json()) == {"code", "details", "hint", "message"}


def test_unknown_table_column_and_bad_filter_are_4xx_not_500(small: SupabaseStandIn) -> None:
    client = make_client(small)
    small.reset_request_log()
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: client.table("nope").select("*").execute(), "PGRST205"),
        (lambda: client.table("products").select("nope").execute(), "42703"),
        (lambda: client.table("products").select("*").eq("nope", 1).execute(), "42703"),
        (lambda: client.table("products").select("*").gt("price", "cheap").execute(), "22P02"),
        (
            lambda: client.table("products").select("*").filter("id", "zz", "1").execute(),
            "PGRST100",
        ),
    ]
    for call, code in cases:
        # When the mistaken query runs, Then the PostgREST error code comes back
        with pytest.raises(APIError) as info:
            call()
        assert info.value.code == code
    statuses = [r.status for r in small.request_log if r.status >= 400]
    assert statuses and all(400 <= s < 500 for s in statuses)
    assert raw(small, "GET", "/rest/v1/nope").status_code == 404


def test_injected_503_surfaces_without_retry_and_is_retried_by_default(
    small: SupabaseStandIn,
) -> None:
    small.reset_request_log()
    # Given one 503 armed, When a client with retries disabled reads, Then it gets the error
    small.inject_fault(status=503, times=1, method="GET", table="products")
    with pytest.raises(APIError) as info:
        make_client(small, retry=False).table("products").select("id").execute()
    assert info.value.code == "PGRST001"
    # Given one more 503, When a default client reads, Then postgrest-py retries GET after 1 s
    small.inject_fault(status=503, times=1)
    result = make_client(small).table("products").select("id").order("id").execute()
    assert [r["id"] for r in rows_of(result)] == [1, 2, 3, 4]
    log = small.request_log
    assert [(r.status, r.fault) for r in log] == [(503, True), (503, True), (200, False)]
    assert log[2].headers.get("x-retry-count") == "1"
    assert small.faults == []


def test_injected_delay_makes_a_short_client_time_out(small: SupabaseStandIn) -> None:
    # Given a 1 s delay on the next GET and a client whose timeout is 0.3 s
    # (a float postgrest_client_timeout is truncated to int: pass an httpx.Timeout)
    small.inject_fault(status=None, delay_s=1.0, times=1)
    client = make_client(small, timeout=httpx.Timeout(0.3))
    # When it reads, Then httpx times out (postgrest-py does not retry timeouts)
    with pytest.raises(httpx.TimeoutException):
        client.table("products").select("id").execute()
    # And the next request is served normally
    assert len(client.table("products").select("id").execute().data) == 4
    # And the abandoned request still finishes on the server (logged late, as a 200): wait
    # for it so it cannot land in the log after the next test's requests
    assert small.wait_for_requests(timeout_s=5)
    assert small.request_log[-1].status == 200


def test_delay_only_fault_then_serves_normally(small: SupabaseStandIn) -> None:
    # Given a 0.3 s delay without a status on every GET of products, until cleared
    small.inject_fault(status=None, delay_s=0.3, times=None, method="GET", table="products")
    client = make_client(small)
    started = time.monotonic()
    result = client.table("products").select("id").eq("id", 1).execute()
    # Then the answer is right, just late
    assert result.data == [{"id": 1}]
    assert time.monotonic() - started >= 0.3
    small.clear_faults()
    started = time.monotonic()
    client.table("products").select("id").eq("id", 1).execute()
    assert time.monotonic() - started < 0.3


# -- row level security (the anon key) -------------------------------------------------------

RLS_N = 250


def rls_visible(article_id: int) -> bool:
    """Which seeded articles the policy published=eq.true shows (NULL hides, as in SQL)."""
    return article_id % 3 != 0 and article_id % 50 != 0


def rls_published(article_id: int) -> bool | None:
    return None if article_id % 50 == 0 else article_id % 3 != 0


VISIBLE_IDS = [i for i in range(1, RLS_N + 1) if rls_visible(i)]


@pytest.fixture
def rls(receiver: Receiver) -> Iterator[SupabaseStandIn]:
    """Three tables, three RLS situations: a filter (articles), "true" (authors), no policy
    (drafts). Webhooks go to `receiver`."""
    webhook = WebhookConfig(url=receiver.url, timeout_s=2.0)
    with SupabaseStandIn(
        {"articles": "id", "authors": "slug", "drafts": "id"},
        webhook=webhook,
        anon_policies={"articles": "published=eq.true", "authors": "true"},
    ) as standin:
        standin.seed(
            "articles",
            [
                {"id": i, "title": f"t{i}", "published": rls_published(i), "note": f"n{i}"}
                for i in range(1, RLS_N + 1)
            ],
        )
        standin.seed("authors", [{"slug": "ann", "name": "Ann", "email": "ann@example.com"}])
        standin.seed("drafts", [{"id": 1, "title": "secret"}])
        yield standin


def anon_client(standin: SupabaseStandIn) -> Client:
    return make_client(standin, key=standin.anon_key)


def test_anon_key_reads_only_the_rows_the_policy_shows(rls: SupabaseStandIn) -> None:
    anon, service = anon_client(rls), make_client(rls)
    # When both roles read every article
    anon_rows = rows_of(anon.table("articles").select("*").order("id").execute())
    service_rows = rows_of(service.table("articles").select("*").order("id").execute())
    # Then anon gets exactly the published rows (unpublished and NULL are hidden)
    assert [r["id"] for r in anon_rows] == VISIBLE_IDS
    assert all(r["published"] is True for r in anon_rows)
    # And the service key bypasses RLS: every row
    assert [r["id"] for r in service_rows] == list(range(1, RLS_N + 1))
    # And .in_() naming hidden rows returns only the visible ones
    wanted = [1, 3, 4, 50, 99]  # 3 and 99 unpublished, 50 NULL
    anon_in = anon.table("articles").select("id").in_("id", wanted).order("id").execute()
    service_in = service.table("articles").select("id").in_("id", wanted).order("id").execute()
    assert [r["id"] for r in rows_of(anon_in)] == [1, 4]
    assert [r["id"] for r in rows_of(service_in)] == [1, 3, 4, 50, 99]
    # And a hidden row asked for by key is simply absent, exactly like a missing row
    assert anon.table("articles").select("*").eq("id", 3).maybe_single().execute() is None
    with pytest.raises(APIError) as info:
        anon.table("articles").select("*").eq("id", 3).single().execute()
    assert info.value.code == "PGRST116"


def test_anon_keyset_pages_counts_and_ranges_cover_visible_rows_only(
    rls: SupabaseStandIn,
) -> None:
    anon = anon_client(rls)
    # When anon pages with the consumer's keyset loop, 50 rows a page
    ids: list[int] = []
    last = 0
    while True:
        page = anon.table("articles").select("id").gt("id", last).order("id").limit(50).execute()
        ids.extend(r["id"] for r in rows_of(page))
        if len(page.data) < 50:
            break
        last = rows_of(page)[-1]["id"]
    # Then the pages hold every visible row once, in order, and no hidden one
    assert ids == VISIBLE_IDS
    # And count="exact" counts visible rows only, for a GET, a HEAD and a range
    exact = anon.table("articles").select("id", count=CountMethod.exact).limit(10).execute()
    head = (
        anon.table("articles")
        .select("*", count=CountMethod.exact, head=True)
        .lte("id", 30)
        .execute()
    )
    counted = anon.table("articles").select("id", count=CountMethod.exact)
    ranged = counted.order("id").range(5, 9).execute()
    assert (len(exact.data), exact.count) == (10, len(VISIBLE_IDS))
    assert (head.data, head.count) == ([], len([i for i in VISIBLE_IDS if i <= 30]))
    assert [r["id"] for r in rows_of(ranged)] == VISIBLE_IDS[5:10]
    assert ranged.count == len(VISIBLE_IDS)
    # And the service key counts every row
    service = make_client(rls).table("articles").select("id", count=CountMethod.exact)
    assert service.limit(1).execute().count == RLS_N


def test_no_policy_hides_the_table_from_anon_and_true_shows_it_all(
    rls: SupabaseStandIn,
) -> None:
    anon = anon_client(rls)
    # Given drafts has no anon policy (RLS enabled, no policy): anon gets 200 and nothing
    drafts = anon.table("drafts").select("*", count=CountMethod.exact).execute()
    assert (drafts.data, drafts.count) == ([], 0)
    # While the service key sees the row
    assert make_client(rls).table("drafts").select("id").execute().data == [{"id": 1}]
    # And authors' policy "true" shows anon every row, as the service key sees it
    assert anon.table("authors").select("*").execute().data == rls.rows("authors")


def test_a_column_outside_select_is_absent_for_both_roles(rls: SupabaseStandIn) -> None:
    for client in (anon_client(rls), make_client(rls)):
        # When selecting named columns
        authors = client.table("authors").select("slug,name").execute()
        article = client.table("articles").select("id,title").eq("id", 1).execute()
        # Then only those come back: the email and note columns never leave the stand-in
        assert authors.data == [{"slug": "ann", "name": "Ann"}]
        assert article.data == [{"id": 1, "title": "t1"}]


def test_a_row_hidden_by_update_leaves_anon_reads_but_its_webhook_has_the_full_row(
    rls: SupabaseStandIn, receiver: Receiver
) -> None:
    anon, service = anon_client(rls), make_client(rls)
    # Given row 1 is published, so anon sees it
    assert anon.table("articles").select("id").eq("id", 1).execute().data == [{"id": 1}]
    # When the service key unpublishes row 1
    service.table("articles").update({"published": False}).eq("id", 1).execute()
    # Then anon no longer sees it, in a targeted read or in the list; the service key does
    assert anon.table("articles").select("*").eq("id", 1).execute().data == []
    listed = anon.table("articles").select("id").order("id").execute()
    assert [r["id"] for r in rows_of(listed)] == [i for i in VISIBLE_IDS if i != 1]
    assert len(service.table("articles").select("id").eq("id", 1).execute().data) == 1
    # When a hidden row is inserted
    service.table("articles").insert({"id": 999, "title": "draft", "published": False}).execute()
    assert rls.wait_for_webhooks(5)
    # Then anon cannot read it
    assert anon.table("articles").select("*").eq("id", 999).execute().data == []
    # And both webhooks carried the full rows: the trigger runs as the table owner, not anon
    assert receiver.payloads() == [
        {
            "type": "UPDATE",
            "table": "articles",
            "schema": "public",
            "record": {"id": 1, "title": "t1", "published": False, "note": "n1"},
            "old_record": {"id": 1, "title": "t1", "published": True, "note": "n1"},
        },
        {
            "type": "INSERT",
            "table": "articles",
            "schema": "public",
            "record": {"id": 999, "title": "draft", "published": False, "note": None},
            "old_record": None,
        },
    ]


def test_anon_writes_follow_rls_with_select_only_policies(rls: SupabaseStandIn) -> None:
    anon = anon_client(rls)
    before = rls.rows("articles")
    # When anon inserts (or upserts), Then PostgREST's RLS violation for the anon role
    with pytest.raises(APIError) as info:
        anon.table("articles").insert({"id": 1000, "title": "x", "published": True}).execute()
    assert info.value.code == "42501"
    with pytest.raises(APIError) as upsert:
        anon.table("articles").upsert({"id": 1, "title": "x"}).execute()
    assert upsert.value.code == "42501"
    response = raw(
        rls,
        "POST",
        "/rest/v1/articles",
        json={"id": 1001},
        headers={"apikey": rls.anon_key, "Authorization": f"Bearer {rls.anon_key}"},
    )
    assert response.status_code == 401
    # When anon updates or deletes visible rows, Then no row matches (no UPDATE/DELETE policy)
    assert anon.table("articles").update({"title": "x"}).eq("id", 1).execute().data == []
    assert anon.table("articles").delete().gte("id", 1).execute().data == []
    # And nothing changed, so nothing fired
    assert rls.rows("articles") == before
    assert rls.wait_for_webhooks(5)
    assert rls.webhook_log == []


def test_role_follows_the_bearer_token_then_the_apikey_and_is_logged(
    rls: SupabaseStandIn,
) -> None:
    rls.reset_request_log()
    params = {"select": "id", "id": "in.(1,3)"}
    # When the apikey is anon but the Bearer token is the service key, Then the service role
    both = raw(
        rls,
        "GET",
        "/rest/v1/articles",
        params=params,
        headers={"apikey": rls.anon_key, "Authorization": f"Bearer {rls.service_key}"},
    )
    assert both.json() == [{"id": 1}, {"id": 3}]
    # When only the anon apikey is sent, Then the anon role
    apikey_only = raw(
        rls, "GET", "/rest/v1/articles", params=params, headers={"apikey": rls.anon_key}
    )
    assert apikey_only.json() == [{"id": 1}]
    # When the Bearer token is neither key, Then 401 as before
    forged = raw(
        rls,
        "GET",
        "/rest/v1/articles",
        headers={"apikey": rls.anon_key, "Authorization": f"Bearer {make_service_key()}"},
    )
    assert (forged.status_code, forged.json()["code"]) == (401, "PGRST301")
    # And the request log names the role each request ran as
    assert [(r.status, r.role) for r in rls.request_log] == [
        (200, "service_role"),
        (200, "anon"),
        (401, None),
    ]


# -- lifecycle -------------------------------------------------------------------------------


def test_rows_survive_stop_and_start_with_a_data_dir(tmp_path: Path) -> None:
    key = make_service_key()
    # Given a stand-in on disk with rows written through the API
    first = SupabaseStandIn({"articles": "id"}, data_dir=tmp_path, service_key=key)
    first.start()
    client = make_client(first)
    client.table("articles").insert([{"title": "a"}, {"title": "b"}]).execute()
    client.table("articles").update({"title": "B"}).eq("id", 2).execute()
    first.stop()
    first.stop()  # idempotent
    # When a new stand-in starts on the same folder
    with SupabaseStandIn({"articles": "id"}, data_dir=tmp_path, service_key=key) as second:
        again = make_client(second)
        # Then the rows are there and identity continues
        assert again.table("articles").select("*").order("id").execute().data == [
            {"id": 1, "title": "a"},
            {"id": 2, "title": "B"},
        ]
        assert rows_of(again.table("articles").insert({"title": "c"}).execute())[0]["id"] == 3
    assert (tmp_path / "supabase.sqlite3").exists()


def test_restart_of_the_same_instance_keeps_in_memory_rows() -> None:
    standin = SupabaseStandIn({"articles": "id"})
    standin.seed("articles", [{"id": 1}])
    standin.start()
    standin.stop()
    standin.start()
    try:
        assert make_client(standin).table("articles").select("id").execute().data == [{"id": 1}]
    finally:
        standin.stop()


def test_seed_is_fast_for_5000_rows() -> None:
    with SupabaseStandIn({"articles": "id"}) as standin:
        started = time.monotonic()
        standin.seed("articles", [{"id": i, "title": f"t{i}"} for i in range(5000)])
        assert time.monotonic() - started < 2.0
        assert len(standin.rows("articles")) == 5000


def test_a_webhook_dropped_on_purpose_is_logged_and_never_sent() -> None:
    # Given a stand-in that loses every webhook (make dev DROP_WEBHOOKS=1), aimed at a port
    # nothing listens on
    config = WebhookConfig(url="http://127.0.0.1:9/revalidate", drop_share=1.0)
    with SupabaseStandIn({"articles": "id"}, webhook=config) as standin:
        from supabase import create_client

        # When a row changes
        create_client(standin.url, standin.service_key).table("articles").insert(
            {"id": 1, "title": "lost"}
        ).execute()
        assert standin.wait_for_webhooks(5.0)
        # Then the delivery is logged as dropped, with no answer: nothing was sent
        (delivery,) = standin.webhook_log
        assert (delivery.status_code, delivery.error) == (None, "dropped")
        # And a share outside 0-1 is refused
        with pytest.raises(ValueError, match="drop_share"):
            WebhookConfig(url="http://127.0.0.1:9/", drop_share=1.5)
