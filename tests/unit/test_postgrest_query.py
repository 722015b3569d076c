# ruff: noqa: E501 (one case a row reads better than a wrapped one)
"""The local PostgREST's query-string grammar as SQL, without a database: values are always
bound parameters, identifiers always quoted, mistakes PostgREST's errors."""

from __future__ import annotations

import pytest
from psycopg import sql

from local.supabase.query import (
    Builder,
    PostgrestError,
    content_range,
    parse_prefer,
    parse_query,
    row_range,
)

TABLE = sql.Identifier("public", "articles")


def parsed(*params: tuple[str, str]) -> tuple[str, str, dict[str, object]]:
    """(WHERE, select list, bound values) as the statement would carry them."""
    b = Builder(lambda name: {"text": "text", "int": "integer"}[name])
    query = parse_query(list(params), b, TABLE)
    where = sql.SQL(" AND ").join(query.where).as_string(None)
    return where, query.select.as_string(None), b.params


def test_hostile_values_are_parameters_and_never_sql() -> None:
    # Given values full of quotes, semicolons and comment markers
    hostile = "x'); drop table articles; -- /*"
    # When they are filters / Then the SQL holds placeholders only, the values are bound
    tree = f'(body.like."*{hostile}",id.eq.1)'  # a value holding ) is quoted in a tree
    where, _, params = parsed(("title", f"eq.{hostile}"), ("or", tree))
    assert "drop" not in where and "--" not in where
    like = "%" + hostile.replace("*", "%")  # like takes * for %, as PostgREST does
    assert list(params.values()) == [hostile, like, "1"]
    assert where.count("%(p") == len(params)


def test_identifiers_are_quoted_even_when_they_look_like_sql() -> None:
    where, select, _ = parsed(("select", 'id,"we;ird"'), ('"a;b"', "eq.1"))
    assert where == '"public"."articles"."a;b" = %(p0)s'
    assert select == '"id", "we;ird"'


@pytest.mark.parametrize(
    ("param", "expected", "values"),
    [
        (("id", "not.in.(1,\"a,b\")"), 'NOT ("public"."articles"."id" = ANY(%(p0)s))', ['{"1","a,b"}']),
        (("id", "in.()"), '"public"."articles"."id" = ANY(%(p0)s)', ["{}"]),
        (("rating", "is.not_null"), '"public"."articles"."rating" IS NOT NULL', []),
        (("title", "ilike(any).{a*,b*}"), '"public"."articles"."title" ILIKE ANY(%(p0)s)', ["{a%,b%}"]),
        (("tags", "cs.{x}"), '"public"."articles"."tags" @> %(p0)s', ["{x}"]),
        (("body", "wfts(english).cat"), '"public"."articles"."body" @@ websearch_to_tsquery(%(p0)s, %(p1)s)', ["english", "cat"]),
        (("meta->>lang", "eq.en"), '"public"."articles"."meta"->>%(p0)s = %(p1)s', ["lang", "en"]),
        (("not.and", "(id.gt.1,or(id.lt.0,title.eq.\"a,b\"))"),
         'NOT ("public"."articles"."id" > %(p0)s AND ("public"."articles"."id" < %(p1)s OR '
         '"public"."articles"."title" = %(p2)s))', ["1", "0", "a,b"]),
    ],
)  # fmt: skip
def test_operators_become_postgresql_operators(
    param: tuple[str, str], expected: str, values: list[str]
) -> None:
    where, _, params = parsed(param)
    assert (where, list(params.values())) == (expected, values)


def test_select_names_outputs_as_postgrest_does() -> None:
    _, select, params = parsed(("select", "key:id,meta->a->>b,meta->n->0,rating::text,*"))
    assert select == (
        '"id" AS "key", "meta"->%(p0)s->>%(p1)s AS "b", "meta"->%(p2)s->%(p3)s::int AS "0", '
        '"rating"::text AS "rating", *'
    )
    assert list(params.values()) == ["a", "b", "n", "0"]


@pytest.mark.parametrize(
    ("param", "code", "message"),
    [
        (("id", "foo.1"), "PGRST100", '"failed to parse filter (foo.1)" (line 1, column 1)'),
        (("id", "eq(some).1"), "PGRST100", '"failed to parse filter (eq(some).1)" (line 1, column 1)'),
        (("id", "1"), "PGRST100", '"failed to parse filter (1)" (line 1, column 1)'),
        (("order", "id.sideways"), "PGRST100", '"failed to parse order (id.sideways)" (line 1, column 1)'),
        (("limit", "-1"), "PGRST100", '"failed to parse limit (-1)" (line 1, column 1)'),
        (("select", "author(name)"), "PGRST100", '"failed to parse select parameter (author(name))" (line 1, column 1)'),
        (("author.name", "eq.x"), "PGRST108", "'author' is not an embedded resource in this request"),
    ],
)  # fmt: skip
def test_mistakes_are_postgrests_errors(param: tuple[str, str], code: str, message: str) -> None:
    with pytest.raises(PostgrestError) as raised:
        parsed(param)
    assert (raised.value.status, raised.value.code, raised.value.message) == (400, code, message)


@pytest.mark.parametrize(
    ("header", "offset", "limit", "expected"),
    [
        (None, 0, None, (0, 999)),  # the max-rows cap
        ("0-9", 0, None, (0, 9)),
        ("10-", 0, 5, (10, 4)),  # limit counts from offset: nothing left
        ("bytes=0-9", 20, 5, (20, 24)),  # another shape: ignored
        (None, 0, 0, (0, -1)),
    ],
)
def test_ranges_intersect_header_offset_limit_and_the_cap(
    header: str | None, offset: int, limit: int | None, expected: tuple[int, int]
) -> None:
    assert row_range(header, offset, limit, 1000) == expected


def test_a_reversed_range_is_416() -> None:
    with pytest.raises(PostgrestError) as raised:
        row_range("9-2", 0, None, 1000)
    assert (raised.value.status, raised.value.code) == (416, "PGRST103")


@pytest.mark.parametrize(
    ("lower", "returned", "total", "expected"),
    [
        (0, 10, None, (200, "0-9/*")),
        (0, 10, 25, (206, "0-9/25")),
        (0, 25, 25, (200, "0-24/25")),
        (0, 0, 0, (200, "*/0")),
        (30, 0, 25, (416, "*/25")),
    ],
)
def test_content_range_and_status(
    lower: int, returned: int, total: int | None, expected: tuple[int, str]
) -> None:
    assert content_range(lower, returned, total) == expected


def test_prefer_items_acted_on_are_echoed() -> None:
    prefs = parse_prefer(["return=representation,count=exact", "resolution=merge-duplicates, x=y"])
    assert (prefs.representation, prefs.count, prefs.resolution) == (True, True, "merge-duplicates")
    assert prefs.applied == ["return=representation", "count=exact", "resolution=merge-duplicates"]
