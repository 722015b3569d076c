"""Consumer logic, no I/O: what the cache must hold given a fresh read of the table."""

from __future__ import annotations

import json
from typing import Any

from waituntil.snapshot import build_snapshot, plan_sync, sort_rows, split_into_chunks


def _rows(count: int) -> list[dict[str, object]]:
    return [{"id": index, "title": f"article {index}"} for index in range(1, count + 1)]


def test_touched_keys_follow_the_fresh_read_not_the_payload() -> None:
    # Given a table where 1 and 3 exist and 2 was deleted
    snapshot = build_snapshot(
        "articles", [{"id": 1}, {"id": 3}], primary_key="id", read_at_ns=1, chunk_bytes=1000
    )
    # When the batch touched 2, 3 (twice) and 1 as an int and a string
    plan = plan_sync([2, 3, 3, 1, "1"], snapshot)
    # Then existing rows are put once each and the missing one is deleted
    assert sorted(plan.puts) == ["1", "3"]
    assert plan.deletes == ("2",)


def test_plan_is_the_same_whatever_the_order_of_changes() -> None:
    # Given one snapshot / When the touched keys arrive in two different orders
    snapshot = build_snapshot("articles", _rows(5), primary_key="id", read_at_ns=1, chunk_bytes=50)
    # Then the plans are identical
    assert plan_sync([5, 9, 1], snapshot) == plan_sync([1, 5, 9, 9], snapshot)


def test_chunks_respect_the_size_and_together_hold_the_whole_list() -> None:
    # Given 500 rows split into chunks of at most 2 KB
    rows = _rows(500)
    snapshot = build_snapshot("articles", rows, primary_key="id", read_at_ns=1, chunk_bytes=2048)
    # Then every chunk fits, and concatenated they equal the rows in order
    assert len(snapshot.chunks) > 1
    assert all(len(chunk.body.encode()) <= 2048 for chunk in snapshot.chunks)
    joined = [row for chunk in snapshot.chunks for row in json.loads(chunk.body)]
    assert joined == rows
    assert sum(chunk.row_count for chunk in snapshot.chunks) == snapshot.row_count == 500


def test_a_row_larger_than_a_chunk_gets_a_chunk_of_its_own() -> None:
    # Given a row bigger than the chunk size between two small ones
    chunks = list(
        split_into_chunks(['{"id":1}', '{"id":2,"x":"' + "y" * 100 + '"}', '{"id":3}'], 50)
    )
    # Then no chunk is empty and the big row stands alone
    assert [chunk.row_count for chunk in chunks] == [1, 1, 1]


def test_empty_table_is_one_empty_chunk() -> None:
    snapshot = build_snapshot("articles", [], primary_key="id", read_at_ns=1, chunk_bytes=1000)
    assert [chunk.body for chunk in snapshot.chunks] == ["[]"]
    assert snapshot.row_count == 0


def test_etag_changes_with_content_only() -> None:
    # Given the same rows read at two times, and a changed row
    first = build_snapshot("articles", _rows(3), primary_key="id", read_at_ns=1, chunk_bytes=99)
    again = build_snapshot("articles", _rows(3), primary_key="id", read_at_ns=2, chunk_bytes=99)
    changed_rows = _rows(3)
    changed_rows[1]["title"] = "edited"
    changed = build_snapshot(
        "articles", changed_rows, primary_key="id", read_at_ns=3, chunk_bytes=99
    )
    # Then the list etag ignores the read time and follows the content
    assert first.etag == again.etag != changed.etag
    assert first.rows["2"].etag != changed.rows["2"].etag
    assert first.rows["1"].etag == changed.rows["1"].etag


def test_awkward_values_serialize_losslessly() -> None:
    # Given values that often get mangled
    row = {
        "id": 2**60,
        "price": 19.99,
        "ratio": 0.1,
        "tiny": 1e-7,
        "text": "naïve café 🙂 — 日本語",
        "nested": {"a": [1, None, {"b": False}]},
        "nothing": None,
        "tags": [],
    }
    snapshot = build_snapshot("articles", [row], primary_key="id", read_at_ns=1, chunk_bytes=9999)
    # When the stored body is parsed back / Then it equals the row exactly
    assert json.loads(snapshot.rows[str(2**60)].body) == row
    assert "🙂" in snapshot.rows[str(2**60)].body  # stored as UTF-8, not \\u escapes


def test_list_order_can_be_configured_with_postgres_null_placement() -> None:
    rows: list[dict[str, Any]] = [
        {"id": 1, "rank": 2},
        {"id": 2, "rank": None},
        {"id": 3, "rank": 1},
    ]
    assert [row["id"] for row in sort_rows(rows, "rank")] == [3, 1, 2]
    assert [row["id"] for row in sort_rows(rows, "rank.desc")] == [2, 1, 3]
