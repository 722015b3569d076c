"""The local Supabase's REST API over real HTTP and real PostgreSQL: what supabase-py sends, and
the answers PostgREST gives (rows, ranges, counts, writes, functions, errors, keys, faults)."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
from postgrest.exceptions import APIError
from postgrest.types import CountMethod
from supabase import Client, create_client

from local.supabase import LocalSupabase, make_key
from tests.conftest import Database

ARTICLES = [
    {"id": key, "title": title, "published": key % 2 == 1, "rating": rating}
    for key, title, rating in [
        (1, "alpha", 4.5),
        (2, "beta", None),
        (3, "gamma", 2),
        (4, "Delta", 3),
    ]
]


def client(supabase: LocalSupabase, key: str | None = None) -> Client:
    return create_client(supabase.url, key or supabase.service_key)


def raw(supabase: LocalSupabase, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"apikey": supabase.service_key, **kwargs.pop("headers", {})}
    return httpx.request(method, f"{supabase.url}/rest/v1/{path}", headers=headers, **kwargs)


@pytest.fixture
def seeded(supabase: LocalSupabase) -> LocalSupabase:
    supabase.seed("articles", ARTICLES)
    return supabase


def ids(response: Any) -> list[int]:
    return [row["id"] for row in response.data]


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda q: q.eq("title", "beta"), [2]),
        (lambda q: q.neq("title", "beta"), [1, 3, 4]),
        (lambda q: q.gt("id", 2), [3, 4]),
        (lambda q: q.lte("rating", 3), [3, 4]),
        (lambda q: q.in_("id", ["1", "4"]), [1, 4]),
        (lambda q: q.is_("rating", "null"), [2]),
        (lambda q: q.like("title", "%a"), [1, 2, 3, 4]),
        (lambda q: q.ilike("title", "d*"), [4]),
        (lambda q: q.or_("id.eq.1,and(published.eq.false,rating.gt.2)"), [1, 4]),
        (lambda q: q.not_.eq("published", True), [2, 4]),
        (lambda q: q.filter("title", "match", "^[a-c]"), [1, 2]),
        (lambda q: q.filter("id", "eq(any)", "{2,3}"), [2, 3]),
    ],
)
def test_filters_are_postgresql_comparisons(
    seeded: LocalSupabase, build: Any, expected: list[int]
) -> None:
    # Given four articles / When supabase-py filters them / Then PostgreSQL's answer comes back
    assert (
        ids(build(client(seeded).table("articles").select("id")).order("id").execute()) == expected
    )


def test_select_order_aliases_json_paths_and_casts(seeded: LocalSupabase) -> None:
    # Given an article with a jsonb column
    client(seeded).table("articles").update({"meta": {"lang": "en", "n": [7]}}).eq(
        "id", 1
    ).execute()
    # When columns are selected by alias, JSON path and cast, ordered with nulls first
    read = (
        client(seeded)
        .table("articles")
        .select("key:id,meta->>lang,meta->n->0,rating::text")
        .order("rating", desc=True, nullsfirst=True)
        .execute()
    )
    # Then the keys are PostgREST's and the values PostgreSQL's
    assert read.data[0] == {"key": 2, "lang": None, "0": None, "rating": None}
    assert read.data[1] == {"key": 1, "lang": "en", "0": 7, "rating": "4.5"}


def test_ranges_counts_head_and_the_max_rows_cap(database: Database) -> None:
    # Given 25 rows and a project capping reads at 10 rows
    with LocalSupabase(*database, max_rows=10) as supabase:
        supabase.seed("articles", [{"id": key} for key in range(1, 26)])
        table = client(supabase).table("articles")
        # When read without a limit / Then 10 rows, silently, and the count says 25
        capped = table.select("id", count=CountMethod.exact).order("id").execute()
        assert (ids(capped), capped.count) == (list(range(1, 11)), 25)
        # When a range or limit/offset is asked / Then that window
        assert ids(table.select("id").order("id").range(20, 29).execute()) == list(range(21, 26))
        assert ids(table.select("id").order("id").limit(2).offset(5).execute()) == [6, 7]
        # When HEAD asks for the count / Then no body, the total in Content-Range, 206
        head = raw(supabase, "HEAD", "articles?select=id", headers={"Prefer": "count=exact"})
        assert (head.status_code, head.headers["content-range"], head.content) == (
            206,
            "0-9/25",
            b"",
        )
        # When the range starts past the end / Then 416 PGRST103 with the count, 200 without
        past = raw(supabase, "GET", "articles", headers={"Range": "30-39", "Prefer": "count=exact"})
        assert (past.status_code, past.json()["code"]) == (416, "PGRST103")
        assert raw(supabase, "GET", "articles", headers={"Range": "30-39"}).json() == []
        reversed_range = raw(supabase, "GET", "articles", headers={"Range": "5-2"})
        assert (reversed_range.status_code, reversed_range.json()["code"]) == (416, "PGRST103")


def test_single_and_maybe_single(seeded: LocalSupabase) -> None:
    table = client(seeded).table("articles")
    assert table.select("id").eq("id", 3).single().execute().data == {"id": 3}
    with pytest.raises(APIError) as none:
        table.select("id").eq("id", 99).single().execute()
    assert none.value.code == "PGRST116"
    assert table.select("id").eq("id", 99).maybe_single().execute() is None


def test_inserts_upserts_updates_and_deletes_return_the_written_rows(
    supabase: LocalSupabase,
) -> None:
    table = client(supabase).table("articles")
    # When rows are inserted (one statement), upserted, updated, deleted
    inserted: Any = table.insert(
        [{"id": 1, "title": "a"}, {"id": 2, "title": "b", "tags": ["x"]}]
    ).execute()
    upserted: Any = table.upsert({"id": 2, "title": "B"}).execute()
    ignored = table.upsert({"id": 1, "title": "not this"}, ignore_duplicates=True).execute()
    updated: Any = table.update({"published": True}).in_("id", [1, 2]).execute()
    deleted = table.delete().eq("id", 1).execute()
    # Then each answers with the rows it wrote, as PostgreSQL holds them
    assert [(r["id"], r["title"], r["tags"]) for r in inserted.data] == [
        (1, "a", None),
        (2, "b", ["x"]),
    ]
    assert [r["title"] for r in upserted.data] == ["B"]
    assert ignored.data == []
    assert [r["published"] for r in updated.data] == [True, True]
    assert ids(deleted) == [1]
    assert supabase.rows("articles") == [{**updated.data[1], "id": 2}]
    # And a duplicate key is PostgreSQL's 23505, answered 409, a column that does not exist 400
    with pytest.raises(APIError) as duplicate:
        table.insert({"id": 2}).execute()
    assert duplicate.value.code == "23505"
    with pytest.raises(APIError) as unknown:
        table.insert({"id": 3, "nope": 1}).execute()
    assert unknown.value.code == "PGRST204"


def test_unfiltered_update_or_delete_is_refused_as_supabase_does(seeded: LocalSupabase) -> None:
    for method in ("PATCH", "DELETE"):
        response = raw(seeded, method, "articles", json={"title": "x"})
        assert (response.status_code, response.json()["code"]) == (400, "21000")
    assert len(seeded.rows("articles")) == 4


def test_rpc_calls_a_sql_function_with_named_arguments(seeded: LocalSupabase) -> None:
    # Given SQL functions: one returning a set, one a value
    seeded.sql(
        """create function public.titles_after(after bigint, lim int default 10)
             returns setof articles language sql stable as
             $$ select * from articles where id > after order by id limit lim $$;
           create function public.add(a int, b int) returns int
             language sql as $$ select a + b $$"""
    )
    db = client(seeded)
    # When called through supabase-py / Then PostgreSQL's results, typed from the JSON body
    assert ids(db.rpc("titles_after", {"after": 1, "lim": 2}).execute()) == [2, 3]
    assert db.rpc("add", {"a": 2, "b": 40}).execute().data == 42
    # And an unknown function or argument is PostgREST's 404 PGRST202
    with pytest.raises(APIError) as missing:
        db.rpc("add", {"a": 1, "c": 2}).execute()
    assert missing.value.code == "PGRST202"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("nope", 404, "PGRST205"),
        ("articles?select=nope", 400, "42703"),
        ("articles?nope=eq.1", 400, "42703"),
        ("articles?id=foo.1", 400, "PGRST100"),
        ("articles?id=eq.abc", 400, "22P02"),
        ("articles?order=id.sideways", 400, "PGRST100"),
        ("articles?select=author(name)", 400, "PGRST100"),
        ("articles?select=id::nosuchtype", 400, "42704"),
        ("articles?author.name=eq.x", 400, "PGRST108"),
    ],
)
def test_mistakes_are_postgrests_errors(
    seeded: LocalSupabase, path: str, status: int, code: str
) -> None:
    response = raw(seeded, "GET", path)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert set(response.json()) == {"code", "message", "details", "hint"}


def test_the_key_is_a_jwt_whose_role_postgresql_enforces(seeded: LocalSupabase) -> None:
    # Given keys signed with the project's secret, another secret, expired, for an unknown role
    forged = make_key("service_role", "another-secret-that-is-long-enough-for-hs256")
    expired = jwt.encode(
        {"role": "service_role", "exp": 1},
        "super-secret-jwt-token-with-at-least-32-characters-long",
    )
    nobody = make_key("nobody")
    # When each reads / Then a bad signature or expiry is 401 PGRST301/PGRST303, no key 401
    for key, code in [(forged, "PGRST301"), (expired, "PGRST303"), (nobody, "22023")]:
        response = httpx.get(f"{seeded.url}/rest/v1/articles", headers={"apikey": key})
        assert (response.status_code, response.json()["code"]) == (401, code)
    assert httpx.get(f"{seeded.url}/rest/v1/articles").status_code == 401
    # And anon may read (the migration's policy) but not write: PostgreSQL's grants say so
    anon = client(seeded, seeded.anon_key)
    assert len(anon.table("articles").select("id").execute().data) == 4
    with pytest.raises(APIError) as refused:
        anon.table("articles").update({"title": "x"}).eq("id", 1).execute()
    assert refused.value.code == "42501"
    assert [record.role for record in seeded.request_log][-2:] == ["anon", "anon"]


def test_injected_faults_fail_delay_or_drop_requests_then_clear(seeded: LocalSupabase) -> None:
    seeded.inject_fault(status=503, times=1, table="articles")
    assert raw(seeded, "GET", "articles").status_code == 503
    seeded.inject_fault(status=None, delay_s=1.0, times=1)
    with pytest.raises(httpx.ReadTimeout):
        raw(seeded, "GET", "articles", timeout=0.3)
    seeded.inject_fault(status=None, dropped=True, times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        raw(seeded, "GET", "articles")
    seeded.inject_fault(status=500, times=None, method="POST")
    seeded.clear_faults()
    assert raw(seeded, "GET", "articles").status_code == 200
    log = seeded.request_log
    assert {(503, True), (0, True)} <= {(record.status, record.fault) for record in log}
    assert (log[-1].status, log[-1].fault) == (200, False)
