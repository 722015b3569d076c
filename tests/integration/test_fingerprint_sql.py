"""The fingerprint function (supabase/migrations/*_waituntil_fingerprint.sql) on a real
PostgreSQL: both sides hash the same bytes.

The cache holds each row as PostgREST renders it (``json_agg`` of the rows, which is what
``to_json`` gives), parsed by Python and re-serialized; the database hashes the row itself. For
generated rows of every kind of column Supabase tables have (text with escapes and emoji,
integers, numeric with a scale, doubles of every magnitude, arrays, nested jsonb, timestamps,
booleans, nulls), each row's hash and every range's fingerprint must be equal on both sides,
and a range's bounds must select what the list order puts in it (nulls first or last).

On the tests' PostgreSQL, where the migrations (this function's too) are applied.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Database, examples
from tests.fakes import MemorySource
from waituntil.cache.fingerprint import combine, row_hash
from waituntil.cache.layout import dump_json
from waituntil.cache.model import PositionRange
from waituntil.core.list_order import ListOrder

TABLE = """create table hashed (
  id bigint primary key, title text, rank int, price numeric(10, 2), score double precision,
  tags text[], meta jsonb, at timestamptz, flag boolean)"""


@pytest.fixture(scope="module")
def connection(module_database: Database) -> Iterator[Any]:
    cluster, name = module_database
    with psycopg.connect(cluster.conninfo(name), autocommit=True) as opened:
        opened.execute(TABLE)
        yield opened


TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
NUMBERS = st.one_of(
    st.integers(-(2**62), 2**62),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, TEXT),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
ROWS = st.dictionaries(
    st.integers(1, 80),
    st.fixed_dictionaries(
        {
            "title": st.none() | TEXT,
            "rank": st.none() | st.integers(-5, 5),
            "price": st.none() | st.decimals("-99999999.99", "99999999.99", places=2),
            "score": st.none() | st.floats(allow_nan=False, allow_infinity=False, width=64),
            "tags": st.none() | st.lists(TEXT, max_size=3),
            "meta": st.none() | JSON,
            "at": st.none() | st.sampled_from(["2026-11-29T12:00:00.123456+00", "2026-01-01Z"]),
            "flag": st.none() | st.booleans(),
        }
    ),
    max_size=30,
)


@pytest.mark.property
@settings(max_examples=examples(25), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS, order=st.sampled_from([None, "rank", "rank.desc"]), data=st.data())
def test_the_database_and_the_cache_hash_every_row_and_range_alike(
    connection: Any, rows: dict[int, dict[str, Any]], order: str | None, data: Any
) -> None:
    # Given a table holding the generated rows
    database = connection
    database.execute("delete from hashed")
    for key, row in rows.items():
        meta = None if row["meta"] is None else json.dumps(row["meta"])
        database.execute(
            "insert into hashed values (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
            (
                key,
                row["title"],
                row["rank"],
                row["price"],
                row["score"],
                row["tags"],
                meta,
                row["at"],
                row["flag"],
            ),
        )
    # And the cache's side: the rows as PostgREST renders them, parsed as supabase-py does
    rendered = database.execute("select coalesce(json_agg(t), '[]')::text from hashed t")
    cached = [json.loads(dump_json(row)) for row in json.loads(rendered.fetchone()[0])]
    list_order = ListOrder.parse("id", order)
    truth = MemorySource(order=list_order)
    for row in cached:
        truth.put(row)
    column, _, direction = (order or "").partition(".")
    # When the database hashes the whole table, row by row
    whole = _fingerprint(database, None, None, column, direction, with_rows=True)
    # Then each row's hash is the cache's, and so is the sum
    ours = {str(row["id"]): row_hash(dump_json(row)) for row in cached}
    assert {str(key): int(value) for key, value in whole["rows"]} == ours
    assert int(whole["fingerprint"]) == combine(ours.values())
    # And for a range between two positions (of rows, or of no row), the count and sum agree
    bound = st.one_of(
        st.none(),
        st.builds(
            lambda key, value: [value, key] if order else [key],
            st.integers(0, 81),
            st.none() | st.integers(-5, 5),
        ),
    )
    lower, upper = data.draw(bound, label="lower"), data.draw(bound, label="upper")
    expected = truth.fingerprint_ranges(
        "articles", [PositionRange(_tuple(lower), _tuple(upper))], with_rows=True
    )[0]
    part = _fingerprint(database, lower, upper, column, direction, with_rows=True)
    assert (part["count"], int(part["fingerprint"])) == (expected.count, expected.fingerprint)
    assert {str(key) for key, _ in part["rows"]} == set(expected.rows or {})


def _tuple(bound: list[Any] | None) -> tuple[Any, ...] | None:
    return tuple(bound) if bound is not None else None


def _fingerprint(
    database: Any,
    lower: list[Any] | None,
    upper: list[Any] | None,
    column: str,
    direction: str,
    *,
    with_rows: bool,
) -> dict[str, Any]:
    answer = database.execute(
        "select public.waituntil_fingerprint('hashed', 'id', null, %s, %s, %s::json, %s::json, %s)",
        (
            column or None,
            direction == "desc",
            None if lower is None else json.dumps(lower),
            None if upper is None else json.dumps(upper),
            with_rows,
        ),
    ).fetchone()[0]
    return dict(answer)
