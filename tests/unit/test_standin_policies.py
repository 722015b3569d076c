"""The stand-in's Row Level Security for the anon role, below HTTP: policy parsing, the
visibility rule per role, and the REST layer's reads and writes under it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from local.supabase_standin.keys import key_claims, make_anon_key, make_service_key
from local.supabase_standin.policies import (
    ANON,
    SERVICE_ROLE,
    parse_anon_policies,
    parse_anon_policy,
    visibility,
)
from local.supabase_standin.rest import Headers, RestApi
from local.supabase_standin.server import SupabaseStandIn
from local.supabase_standin.store import Store

ARTICLES: list[dict[str, Any]] = [
    {"id": 1, "title": "live", "published": True, "lang": "en"},
    {"id": 2, "title": "draft", "published": False, "lang": "en"},
    {"id": 3, "title": "unknown", "published": None, "lang": "fr"},
    {"id": 4, "title": "live fr", "published": True, "lang": "fr"},
]


def _api(policies: dict[str, str]) -> tuple[RestApi, Store]:
    store = Store({"articles": "id", "drafts": "id"})
    store.seed("articles", ARTICLES)
    store.seed("drafts", [{"id": 1}])
    api = RestApi(lambda: store, anon_policies=parse_anon_policies(policies, store.tables))
    return api, store


def _ids(body: bytes) -> list[int]:
    return [row["id"] for row in json.loads(body)]


# -- parsing ---------------------------------------------------------------------------------


def test_policy_filters_are_anded_and_null_hides_the_row() -> None:
    # Given a policy with two filters joined by "&"
    policy = parse_anon_policy("articles", "published=eq.true&lang=eq.en")
    # Then only rows passing both are visible, and NULL (unknown) hides a row as in SQL
    assert [row["id"] for row in ARTICLES if policy.allows(row)] == [1]
    single = parse_anon_policy("articles", "published=is.true")
    assert [row["id"] for row in ARTICLES if single.allows(row)] == [1, 4]
    # And logic trees are accepted too
    either = parse_anon_policy("articles", "or=(published.eq.true,lang.eq.fr)")
    assert [row["id"] for row in ARTICLES if either.allows(row)] == [1, 3, 4]


def test_true_policy_shows_every_row() -> None:
    # Given the policy "true" (or RLS disabled, which anon sees the same way)
    policy = parse_anon_policy("articles", " TRUE ")
    # Then every row is visible and the text is normalised
    assert all(policy.allows(row) for row in ARTICLES)
    assert policy.text == "true"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "expected 'true'"),
        ("published", "expected 'true'"),
        ("published=eq.true&select=id", "row filter only"),
        ("order=id", "row filter only"),
        ("limit=10", "row filter only"),
        ("apikey=x", "row filter only"),
        ("published=zz.true", "unknown operator"),
    ],
)
def test_a_policy_that_is_not_a_row_filter_is_a_value_error(text: str, why: str) -> None:
    # When parsing a policy that is not a filter, Then ValueError says why
    with pytest.raises(ValueError, match=why):
        parse_anon_policy("articles", text)


def test_a_policy_naming_a_column_no_row_has_hides_every_row() -> None:
    # Given a misspelt column (the stand-in is schemaless, so it cannot refuse it up front)
    policy = parse_anon_policy("articles", "publishd=eq.true")
    # Then the column reads as NULL and the policy fails closed: no row is visible
    assert [row["id"] for row in ARTICLES if policy.allows(row)] == []


def test_a_policy_for_a_table_that_is_not_served_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown table 'nope'"):
        parse_anon_policies({"nope": "true"}, ["articles"])


def test_visibility_per_role() -> None:
    # Given a policy on articles only
    policies = parse_anon_policies({"articles": "published=eq.true"}, ["articles", "drafts"])
    # Then the service role sees everything (no test at all)
    assert visibility(SERVICE_ROLE, "articles", policies) is None
    # And anon sees the policy's rows on articles and nothing on a table without a policy
    on_articles = visibility(ANON, "articles", policies)
    on_drafts = visibility(ANON, "drafts", policies)
    assert on_articles is not None and on_drafts is not None
    assert [row["id"] for row in ARTICLES if on_articles(row)] == [1, 4]
    assert [row["id"] for row in ARTICLES if on_drafts(row)] == []


def test_anon_key_is_a_jwt_with_the_anon_role() -> None:
    key = make_anon_key()
    assert key_claims(key)["role"] == "anon"
    assert make_anon_key() != key


# -- the REST layer --------------------------------------------------------------------------


def test_anon_reads_see_only_visible_rows_in_data_count_and_range() -> None:
    # Given articles with a policy, and drafts without one
    api, _store = _api({"articles": "published=eq.true"})
    counted = Headers([("Prefer", "count=exact")])
    # When anon reads everything, with a count
    anon = api.handle("GET", "articles", "order=id", counted, b"", role=ANON)
    service = api.handle("GET", "articles", "order=id", counted, b"")
    # Then anon gets the visible rows and a total over them only; the service role all
    assert _ids(anon.body) == [1, 4]
    assert anon.header("Content-Range") == "0-1/2"
    assert _ids(service.body) == [1, 2, 3, 4]
    assert service.header("Content-Range") == "0-3/4"
    # And a client filter naming a hidden row cannot reveal it
    assert _ids(api.handle("GET", "articles", "id=in.(2,3,4)", counted, b"", role=ANON).body) == [4]
    # And a table without a policy is empty for anon (200, not an error)
    drafts = api.handle("GET", "drafts", "", counted, b"", role=ANON)
    assert (drafts.status, json.loads(drafts.body), drafts.header("Content-Range")) == (
        200,
        [],
        "*/0",
    )


def test_anon_insert_is_an_rls_violation_and_writes_nothing() -> None:
    api, store = _api({"articles": "true"})
    headers = Headers([("Prefer", "return=representation")])
    # When anon inserts, even into a table it may read
    response = api.handle("POST", "articles", "", headers, b'{"id": 9, "title": "x"}', role=ANON)
    # Then PostgREST's answer for the anon role: 401, 42501, with a Bearer challenge
    assert response.status == 401
    assert json.loads(response.body)["code"] == "42501"
    assert json.loads(response.body)["message"] == (
        'new row violates row-level security policy for table "articles"'
    )
    assert response.header("WWW-Authenticate") == "Bearer"
    # And nothing was stored (an upsert of an existing row fails the same way)
    upsert = Headers([("Prefer", "resolution=merge-duplicates")])
    assert api.handle("POST", "articles", "", upsert, b'{"id": 1}', role=ANON).status == 401
    assert [row["id"] for row in store.sorted_rows("articles")] == [1, 2, 3, 4]
    assert store.sorted_rows("articles")[0]["title"] == "live"


def test_anon_update_and_delete_match_no_row() -> None:
    api, store = _api({"articles": "true"})
    headers = Headers([("Prefer", "return=representation")])
    before = store.sorted_rows("articles")
    # When anon updates and deletes visible rows
    updated = api.handle("PATCH", "articles", "id=eq.1", headers, b'{"title": "x"}', role=ANON)
    deleted = api.handle("DELETE", "articles", "id=gte.1", headers, b"", role=ANON)
    # Then, as in PostgreSQL without UPDATE/DELETE policies, no row is affected and no error
    assert (updated.status, json.loads(updated.body)) == (200, [])
    assert (deleted.status, json.loads(deleted.body)) == (200, [])
    assert store.sorted_rows("articles") == before
    # And the service role still writes
    service = api.handle("PATCH", "articles", "id=eq.1", headers, b'{"title": "x"}')
    assert json.loads(service.body)[0]["title"] == "x"


def test_stand_in_refuses_bad_policies_and_a_shared_key_at_construction() -> None:
    # Given construction only (no server is started), When the config is wrong, Then ValueError
    with pytest.raises(ValueError, match="unknown table"):
        SupabaseStandIn({"articles": "id"}, anon_policies={"authors": "true"})
    with pytest.raises(ValueError, match="row filter only"):
        SupabaseStandIn({"articles": "id"}, anon_policies={"articles": "select=id"})
    key = make_service_key()
    with pytest.raises(ValueError, match="must differ"):
        SupabaseStandIn({"articles": "id"}, service_key=key, anon_key=key)
    # And a valid config exposes its policies and a fresh anon key by default
    standin = SupabaseStandIn({"articles": "id"}, anon_policies={"articles": "published=eq.true"})
    assert standin.anon_policies == {"articles": "published=eq.true"}
    assert key_claims(standin.anon_key)["role"] == "anon"
