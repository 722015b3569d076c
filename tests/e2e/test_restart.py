"""The stand-in's rows survive a restart of the stack with the same data dir."""

from __future__ import annotations

from pathlib import Path

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
    first.stop()

    # When a new stack starts on the same folder
    second = start_stack(data_dir=data_dir)

    # Then the rows are still there, through the stand-in and through supabase-py
    assert second.standin is not None
    assert second.standin.rows(TABLE) == rows
    read = supabase_client(second).table(TABLE).select("*").order("id").execute()
    assert read.data == rows
    # And the next change fills the (new, empty) cache with the whole table
    supabase_client(second).table(TABLE).insert({"id": 4, "title": "New"}).execute()
    assert second.wait_until_idle(timeout_s=20)
    assert get_list(second.cache_store(), TABLE) == [*rows, {"id": 4, "title": "New"}]
