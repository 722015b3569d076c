"""The local database survives a restart of the stack with the same data dir (`make dev DATA=`),
and the PostgreSQL the stack started stops with it."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import TABLE, StartStack, supabase_client
from waituntil.read.cache_client import get_list

pytestmark = pytest.mark.e2e


def test_restart_with_same_data_dir_keeps_rows(start_stack: StartStack, tmp_path: Path) -> None:
    # Given a stack keeping its Supabase data in a folder, with three articles written
    data_dir = tmp_path / "data"
    first = start_stack(data_dir=data_dir)
    rows = [{"id": key, "title": f"Kept {key}"} for key in (1, 2, 3)]
    supabase_client(first).table(TABLE).insert(rows).execute()
    assert first.wait_until_idle(timeout_s=20)
    pid_file = data_dir / "postgres" / "postmaster.pid"
    pid = int(pid_file.read_text().split()[0])
    first.stop()
    # (its PostgreSQL stopped with it: gone, or a zombie where PID 1 does not reap)
    assert not pid_file.exists()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    # When a new stack starts on the same folder
    second = start_stack(data_dir=data_dir)

    # Then the rows are still there, in the database and through supabase-py
    assert second.supabase is not None
    kept = second.supabase.rows(TABLE)
    assert [(row["id"], row["title"]) for row in kept] == [(r["id"], r["title"]) for r in rows]
    read = supabase_client(second).table(TABLE).select("*").order("id").execute()
    assert read.data == kept
    # And the next change fills the (new, empty) cache with the whole table
    supabase_client(second).table(TABLE).insert({"id": 4, "title": "New"}).execute()
    assert second.wait_until_idle(timeout_s=20)
    assert get_list(second.cache_store(), TABLE) == second.supabase.rows(TABLE)
    assert len(second.supabase.rows(TABLE)) == 4
