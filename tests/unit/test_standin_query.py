"""The Supabase stand-in's pure logic: PostgREST query grammar, filters, ordering, ranges,
Prefer, the store's write semantics, webhook payloads and the service key (no sockets)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from local.supabase_standin.errors import PostgrestError
from local.supabase_standin.keys import key_claims, make_service_key
from local.supabase_standin.query import (
    ColumnRef,
    Condition,
    Logic,
    OrderTerm,
    RowRange,
    content_range,
    effective_range,
    evaluate,
    matches,
    parse_column,
    parse_filter,
    parse_logic,
    parse_order,
    parse_prefer,
    parse_query,
    parse_range_header,
    parse_select,
    project,
    range_status,
    sort_rows,
    split_top,
)
from local.supabase_standin.rest import Headers, RestApi
from local.supabase_standin.store import Change, Store
from local.supabase_standin.webhooks import WebhookConfig, build_payload, jsonb_order

ROWS: list[dict[str, Any]] = [
    {"id": 1, "title": "Alpha", "price": 19.99, "stock": 3, "active": True, "tag": None},
    {"id": 2, "title": "beta", "price": 5, "stock": 0, "active": False, "tag": "x"},
    {"id": 3, "title": "Gamma, Inc", "price": 100.5, "stock": None, "active": None, "tag": "y"},
    {"id": 4, "title": "delta", "price": 2**60, "stock": 10, "active": True, "tag": "x"},
]


def ids_matching(key: str, value: str) -> list[int]:
    condition = parse_filter(key, value)
    return [row["id"] for row in ROWS if matches([condition], row)]


# -- lexing ----------------------------------------------------------------------------------


def test_split_top_respects_quotes_and_parentheses() -> None:
    # Given a list mixing quoted commas and a nested parenthesised group
    text = 'a.eq.1,b.in.(1,2),c.eq."x,y",and(d.eq.1,e.eq.2)'
    # When it is split at top-level commas
    parts = split_top(text)
    # Then quoted and parenthesised commas stay inside their items
    assert parts == ["a.eq.1", "b.in.(1,2)", 'c.eq."x,y"', "and(d.eq.1,e.eq.2)"]


def test_parse_column_with_json_path_resolves_nested_values() -> None:
    # Given a column reference with -> and ->> operators
    ref = parse_column("meta->dims->>w")
    row = {"meta": {"dims": {"w": 12}}}
    # Then it names the last key and reads the nested value as text
    assert ref == ColumnRef("meta", (("dims", False), ("w", True)))
    assert ref.output_name() == "w"
    assert ref.resolve(row) == "12"
    assert parse_column("meta->dims").resolve(row) == {"w": 12}
    assert parse_column('"odd name"').name == "odd name"


def test_parse_column_rejects_arrow_after_text_arrow() -> None:
    # Given ->> followed by another JSON operator (invalid in PostgreSQL)
    # When parsed / Then it is a 400 parse error, not a crash
    with pytest.raises(PostgrestError) as info:
        parse_column("meta->>a->b")
    assert info.value.status == 400
    assert info.value.code == "PGRST100"


# -- filters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("id", "eq.2", [2]),
        ("id", "neq.2", [1, 3, 4]),
        ("id", "gt.2", [3, 4]),
        ("id", "gte.2", [2, 3, 4]),
        ("id", "lt.2", [1]),
        ("id", "lte.2", [1, 2]),
        ("price", "eq.19.99", [1]),
        ("price", "gt.19.99", [3, 4]),
        ("price", f"eq.{2**60}", [4]),
        ("title", "eq.beta", [2]),
        ("title", "gt.a", [2, 4]),  # strings compare as strings: "Alpha" < "a" (code points)
        ("title", 'in.(Alpha,"Gamma, Inc")', [1, 3]),
        ("id", "in.(1,4)", [1, 4]),
        ("id", "in.()", []),
        ("id", "in.(1.0,4)", [1, 4]),  # a literal is read as the column's type
        ("active", "in.(true)", [1, 4]),
        ("active", "not.in.(true)", [2]),  # NULL stays unknown under not
        ("tag", "is.null", [1]),
        ("tag", "not.is.null", [2, 3, 4]),
        ("active", "is.true", [1, 4]),
        ("active", "is.false", [2]),
        ("active", "not.is.true", [2, 3]),
        ("title", "like.*ta", [2, 4]),
        ("title", "like.%ta", [2, 4]),
        ("title", "like.A_pha", [1]),
        ("title", "ilike.*A*", [1, 2, 3, 4]),
        ("title", "ilike.gamma*", [3]),
        ("title", "not.like.*ta", [1, 3]),
        ("title", "match.^[a-z]", [2, 4]),
        ("title", "imatch.^g", [3]),
        ("tag", "isdistinct.x", [1, 3]),
        ("stock", "eq.0", [2]),
    ],
)
def test_filter_operators_select_the_rows_postgrest_would(
    key: str, value: str, expected: list[int]
) -> None:
    # Given the sample rows, When one filter is applied, Then exactly the expected rows match
    assert ids_matching(key, value) == expected


def test_comparisons_with_null_are_unknown_and_never_match_even_negated() -> None:
    # Given rows where stock is NULL for id 3
    # When filtering with neq and with not.eq
    # Then the NULL row is excluded both times (SQL three-valued logic)
    assert ids_matching("stock", "neq.3") == [2, 4]
    assert ids_matching("stock", "not.eq.3") == [2, 4]
    assert ids_matching("tag", "neq.x") == [3]


def test_filter_value_that_cannot_be_read_as_the_column_type_is_a_400() -> None:
    # Given a numeric column, When filtered with a word, Then 22P02 (like PostgreSQL), not a crash
    with pytest.raises(PostgrestError) as info:
        ids_matching("price", "gt.cheap")
    assert (info.value.status, info.value.code) == (400, "22P02")
    # And LIKE on a number is "operator does not exist", also a 400
    with pytest.raises(PostgrestError) as info2:
        ids_matching("stock", "like.1*")
    assert (info2.value.status, info2.value.code) == (400, "42883")
    # And one unreadable literal in a list fails the query, even after a literal that matched
    with pytest.raises(PostgrestError) as info3:
        ids_matching("id", "in.(1,one)")
    assert (info3.value.status, info3.value.code) == (400, "22P02")


@pytest.mark.parametrize(
    "value",
    ["eq", "nope.1", "cs.{a}", "like(any).{a*}", "is.maybe", "in.1,2"],
)
def test_malformed_or_unsupported_filters_are_400_parse_errors(value: str) -> None:
    # Given a filter PostgREST would not parse (or the stand-in does not implement)
    # When parsed, Then a PGRST100 error with status 400 is raised
    with pytest.raises(PostgrestError) as info:
        parse_filter("title", value)
    assert (info.value.status, info.value.code) == (400, "PGRST100")


def test_logic_trees_or_and_not_nest() -> None:
    # Given or=(id.eq.1,and(tag.eq.x,stock.gt.5)) and its negation
    tree = parse_logic("or", "(id.eq.1,and(tag.eq.x,stock.gt.5))")
    negated = parse_logic("not.or", '(id.eq.1,title.eq."Gamma, Inc")')
    # Then the tree has the right shape and selects the right rows
    assert isinstance(tree, Logic)
    assert tree.op == "or"
    assert isinstance(tree.children[1], Logic)
    assert [r["id"] for r in ROWS if evaluate(tree, r) is True] == [1, 4]
    assert [r["id"] for r in ROWS if evaluate(negated, r) is True] == [2, 4]


def test_parse_query_splits_reserved_params_from_filters() -> None:
    # Given the params supabase-py sends for a keyset page
    params = [("select", "*"), ("id", "gt.1000"), ("order", "id.asc"), ("limit", "1000")]
    # When parsed
    query = parse_query(params)
    # Then select=* is "all columns", one filter, one order term, the limit
    assert query.select is None
    assert query.filters == [Condition(ColumnRef("id"), "gt", False, "1000")]
    assert query.order == [OrderTerm(ColumnRef("id"), desc=False, nulls_first=False)]
    assert (query.limit, query.offset) == (1000, 0)


@pytest.mark.parametrize(("key", "value"), [("limit", "-1"), ("limit", "ten"), ("offset", "1.5")])
def test_bad_limit_or_offset_is_a_400(key: str, value: str) -> None:
    # Given a non-integer or negative limit/offset, When parsed, Then 400
    with pytest.raises(PostgrestError) as info:
        parse_query([(key, value)])
    assert info.value.status == 400


# -- order -----------------------------------------------------------------------------------


def test_order_desc_puts_nulls_first_by_default_and_asc_last() -> None:
    # Given rows whose stock includes NULL
    # When ordered by stock desc, then asc, then asc.nullsfirst
    desc = sort_rows(ROWS, parse_order("stock.desc"))
    asc = sort_rows(ROWS, parse_order("stock.asc"))
    asc_nulls_first = sort_rows(ROWS, parse_order("stock.asc.nullsfirst"))
    desc_nulls_last = sort_rows(ROWS, parse_order("stock.desc.nullslast"))
    # Then PostgreSQL's defaults (and the explicit overrides) hold
    assert [r["id"] for r in desc] == [3, 4, 1, 2]
    assert [r["id"] for r in asc] == [2, 1, 4, 3]
    assert [r["id"] for r in asc_nulls_first] == [3, 2, 1, 4]
    assert [r["id"] for r in desc_nulls_last] == [4, 1, 2, 3]


def test_order_on_several_columns_is_stable_per_term() -> None:
    # Given order=tag.asc,id.desc
    ordered = sort_rows(ROWS, parse_order("tag.asc,id.desc"))
    # Then rows are grouped by tag (NULL last) and by id descending inside a group
    assert [r["id"] for r in ordered] == [4, 2, 3, 1]


def test_order_on_a_column_of_mixed_types_does_not_crash() -> None:
    # Given a column holding numbers, strings, JSON and NULL
    rows: list[dict[str, Any]] = [
        {"v": "b"},
        {"v": 2},
        {"v": {"a": 1}},
        {"v": None},
        {"v": True},
        {"v": 1.5},
    ]
    # When sorted, Then a deterministic order comes back
    assert [r["v"] for r in sort_rows(rows, parse_order("v"))] == [
        True,
        1.5,
        2,
        "b",
        {"a": 1},
        None,
    ]


def test_bad_order_modifier_is_a_400() -> None:
    with pytest.raises(PostgrestError) as info:
        parse_order("id.sideways")
    assert info.value.status == 400


# -- select ----------------------------------------------------------------------------------


def test_select_supports_columns_aliases_json_paths_and_text_casts() -> None:
    # Given select=id,name:title,w:meta->>w,price::text
    items = parse_select("id,name:title,meta->>w,price::text")
    row = {"id": 1, "title": "A", "meta": {"w": 3}, "price": 19.99}
    # When projected, Then keys follow PostgREST's naming
    assert project(row, items, ["id", "title", "meta", "price"]) == {
        "id": 1,
        "name": "A",
        "w": "3",
        "price": "19.99",
    }


def test_select_star_returns_every_known_column_in_table_order_with_nulls() -> None:
    # Given a sparse row and the table's columns, When projected with *, Then missing are NULL
    assert project({"id": 1}, None, ["id", "title"]) == {"id": 1, "title": None}


def test_select_with_embedding_is_refused() -> None:
    with pytest.raises(PostgrestError) as info:
        parse_select("id,author(name)")
    assert (info.value.status, info.value.code) == (400, "PGRST200")


# -- ranges ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "offset", "limit", "max_rows", "expected"),
    [
        (None, 0, None, 1000, RowRange(0, 999)),
        (None, 0, 5000, 1000, RowRange(0, 999)),
        (None, 2000, 1000, 1000, RowRange(2000, 2999)),
        ("0-999", 0, None, 1000, RowRange(0, 999)),
        ("10-", 0, None, None, RowRange(10, None)),
        ("0-9", 5, None, None, RowRange(5, 9)),
        ("bogus", 0, 3, None, RowRange(0, 2)),
        (None, 7, 0, 1000, RowRange(0, -1)),
    ],
)
def test_effective_range_intersects_header_params_and_max_rows(
    header: str | None, offset: int, limit: int | None, max_rows: int | None, expected: RowRange
) -> None:
    # Given a Range header, offset/limit and db-max-rows, Then the served range is their meet
    assert effective_range(parse_range_header(header), offset, limit, max_rows) == expected


def test_range_header_with_lower_above_upper_is_416() -> None:
    with pytest.raises(PostgrestError) as info:
        parse_range_header("10-5")
    assert (info.value.status, info.value.code) == (416, "PGRST103")


@pytest.mark.parametrize(
    ("lower", "returned", "total", "header", "status"),
    [
        (0, 1000, None, "0-999/*", 200),
        (0, 1000, 2500, "0-999/2500", 206),
        (2000, 500, 2500, "2000-2499/2500", 206),
        (0, 3, 3, "0-2/3", 200),
        (0, 0, 0, "*/0", 200),
        (0, 0, None, "*/*", 200),
        (2500, 0, 2500, "*/2500", 206),
        (2600, 0, 2500, "*/2500", 416),
    ],
)
def test_content_range_and_status_match_postgrest(
    lower: int, returned: int, total: int | None, header: str, status: int
) -> None:
    # Given what was returned and the optional count, Then Content-Range and status as PostgREST
    assert content_range(lower, returned, total) == header
    assert range_status(lower, returned, total) == status


def test_prefer_header_items_are_read_from_several_headers() -> None:
    # Given the Prefer headers postgrest-py sends for an upsert with count
    prefs = parse_prefer(["return=representation,count=exact", "resolution=merge-duplicates"])
    # Then every item is understood
    assert prefs.return_ == "representation"
    assert prefs.count == "exact"
    assert prefs.resolution == "merge-duplicates"
    assert parse_prefer(["count=planned"]).count == "planned"


# -- store -----------------------------------------------------------------------------------


def test_store_assigns_identity_keys_and_rejects_duplicates() -> None:
    # Given an empty table
    store = Store({"articles": "id"})
    # When rows without a primary key are inserted, Then they get 1, 2, ...
    changes = store.insert("articles", [{"title": "a"}, {"title": "b"}])
    assert [c.new["id"] for c in changes if c.new] == [1, 2]
    assert [c.type for c in changes] == ["INSERT", "INSERT"]
    # And inserting an existing key is a 409 unique violation
    with pytest.raises(PostgrestError) as info:
        store.insert("articles", [{"id": 2, "title": "dup"}])
    assert (info.value.status, info.value.code) == (409, "23505")
    # And a NULL primary key is a not-null violation
    with pytest.raises(PostgrestError) as info2:
        store.insert("articles", [{"id": None}])
    assert info2.value.code == "23502"


def test_store_upsert_is_update_for_existing_rows_and_insert_for_new() -> None:
    # Given one row
    store = Store({"articles": "id"})
    store.insert("articles", [{"id": 1, "title": "old", "body": "kept"}])
    # When upserting it and a new one with merge-duplicates
    changes = store.insert(
        "articles",
        [{"id": 1, "title": "new"}, {"id": 2, "title": "two"}],
        resolution="merge-duplicates",
    )
    # Then the existing row is an UPDATE that keeps unspecified columns, the new one an INSERT
    assert [c.type for c in changes] == ["UPDATE", "INSERT"]
    assert changes[0].old == {"id": 1, "title": "old", "body": "kept"}
    assert changes[0].new == {"id": 1, "title": "new", "body": "kept"}
    # And ignore-duplicates skips existing rows entirely
    assert store.insert("articles", [{"id": 1}], resolution="ignore-duplicates") == []


def test_store_write_is_atomic_when_validation_fails() -> None:
    # Given two rows
    store = Store({"articles": "id"})
    store.seed("articles", [{"id": 1, "n": 1}, {"id": 2, "n": 2}])

    def refuse(changes: list[Change]) -> None:
        raise PostgrestError(406, "PGRST116", "no")

    # When an update is refused after planning (as .single() does with 2 rows)
    with pytest.raises(PostgrestError):
        store.update("articles", lambda row: True, {"n": 0}, validate=refuse)
    # Then nothing changed
    assert [r["n"] for r in store.sorted_rows("articles")] == [1, 2]


def test_store_persists_rows_columns_and_identity_sequence(tmp_path: Path) -> None:
    # Given a store on disk with rows written, updated and deleted
    store = Store({"articles": "id"}, tmp_path)
    store.insert("articles", [{"title": "a"}, {"title": "b"}, {"title": "c", "extra": 1}])
    store.update("articles", lambda row: row["id"] == 1, {"title": "A"})
    store.delete("articles", lambda row: row["id"] == 3)
    store.close()
    # When reopened
    reopened = Store({"articles": "id"}, tmp_path)
    # Then the same rows and columns come back, and the sequence does not reuse id 3
    assert reopened.sorted_rows("articles") == [
        {"id": 1, "title": "A", "extra": None},
        {"id": 2, "title": "b", "extra": None},
    ]
    assert reopened.insert("articles", [{"title": "d"}])[0].new == {
        "id": 4,
        "title": "d",
        "extra": None,
    }
    reopened.close()


def test_rest_api_never_answers_500_for_client_mistakes() -> None:
    # Given the REST layer over a seeded store (no HTTP)
    store = Store({"articles": "id"})
    store.seed("articles", ROWS)
    api = RestApi(lambda: store)
    headers = Headers([("Accept", "application/json")])
    bad_requests = [
        ("GET", "select=nope"),
        ("GET", "id=zz.1"),
        ("GET", "price=gt.abc"),
        ("GET", "order=id.up"),
        ("GET", "limit=-3"),
        ("GET", "or=(id.eq.1"),
        ("DELETE", ""),
        ("PATCH", "id=eq.1"),
    ]
    for method, query in bad_requests:
        # When a malformed request arrives
        response = api.handle(method, "articles", query, headers, b"not json")
        # Then it is a 4xx with PostgREST's error keys
        assert 400 <= response.status < 500, (method, query, response.status)
        assert re.search(rb'"code":', response.body)


# -- webhooks and keys -----------------------------------------------------------------------


def test_webhook_payload_has_supabase_shape_and_jsonb_key_order() -> None:
    # Given an UPDATE change
    change = Change("UPDATE", "articles", {"id": 1, "title": "a"}, {"id": 1, "title": "b"})
    # When the payload is built
    payload = build_payload(change)
    # Then it has Supabase's keys, ordered as jsonb orders them (length, then bytes)
    assert payload == {
        "type": "UPDATE",
        "table": "articles",
        "schema": "public",
        "record": {"id": 1, "title": "b"},
        "old_record": {"id": 1, "title": "a"},
    }
    assert list(payload) == ["type", "table", "record", "schema", "old_record"]
    assert list(jsonb_order({"title": 1, "zz": 2, "id": 3, "a": 4})) == ["a", "id", "zz", "title"]


def test_webhook_config_validates_its_url() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookConfig(url="file:///etc/passwd")


def test_service_key_is_a_jwt_that_old_supabase_py_key_check_accepts() -> None:
    # Given a fresh key
    key = make_service_key()
    # Then it is header.payload.signature with the service_role claim
    assert re.fullmatch(r"[A-Za-z0-9-_=]+\.[A-Za-z0-9-_=]+\.?[A-Za-z0-9-_.+/=]*", key)
    claims = key_claims(key)
    assert claims["role"] == "service_role"
    assert claims["iss"] == "supabase-standin"
    # And two calls give two different keys; a fixed secret gives a stable signature input
    assert make_service_key() != key
    assert key_claims(make_service_key("s3cret", role="anon"))["role"] == "anon"
