"""Pure consumer logic: from a fresh read of a table to what the cache must hold.

The payload only says *which* keys changed; this module decides *what they are now* from
Supabase's rows. That is why delivery order and duplicates cannot change the end state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from waituntil.cache_layout import content_etag, dump_json
from waituntil.contracts import Row, RowKey


@dataclass(frozen=True)
class RowEntry:
    body: str
    etag: str


@dataclass(frozen=True)
class Chunk:
    body: str  # a JSON array of rows
    row_count: int


@dataclass(frozen=True)
class Snapshot:
    """One table as Supabase returned it, ready to store."""

    table: str
    rows: dict[str, RowEntry]  # str(primary key) -> row
    chunks: tuple[Chunk, ...]
    etag: str
    row_count: int
    list_bytes: int
    read_at_ns: int


@dataclass(frozen=True)
class SyncPlan:
    puts: dict[str, RowEntry]  # key -> row to store
    deletes: tuple[str, ...]  # keys whose rows no longer exist


def build_snapshot(
    table: str,
    rows: list[Row],
    *,
    primary_key: str,
    read_at_ns: int,
    chunk_bytes: int,
    order: str | None = None,
) -> Snapshot:
    ordered = sort_rows(rows, order) if order else rows
    entries: dict[str, RowEntry] = {}
    bodies: list[str] = []
    for row in ordered:
        body = dump_json(row)
        entries[str(row[primary_key])] = RowEntry(body=body, etag=content_etag(body))
        bodies.append(body)
    chunks = tuple(split_into_chunks(bodies, chunk_bytes))
    whole = "[" + ",".join(bodies) + "]"
    return Snapshot(
        table=table,
        rows=entries,
        chunks=chunks,
        etag=content_etag(whole),
        row_count=len(bodies),
        list_bytes=len(whole.encode()),
        read_at_ns=read_at_ns,
    )


def row_etags(rows: Iterable[Row], primary_key: str) -> dict[str, str]:
    """Key -> etag of rows as stored (the same serialization as ``build_snapshot``)."""
    return {str(row[primary_key]): content_etag(dump_json(row)) for row in rows}


def split_into_chunks(bodies: list[str], chunk_bytes: int) -> Iterable[Chunk]:
    """Group row bodies into JSON arrays of about ``chunk_bytes`` each (at least one chunk)."""
    current: list[str] = []
    size = 2
    for body in bodies:
        body_size = len(body.encode()) + 1
        if current and size + body_size > chunk_bytes:
            yield Chunk(body="[" + ",".join(current) + "]", row_count=len(current))
            current, size = [], 2
        current.append(body)
        size += body_size
    yield Chunk(body="[" + ",".join(current) + "]", row_count=len(current))


def plan_sync(
    touched: Iterable[RowKey], snapshot: Snapshot, baseline: Mapping[str, str] | None = None
) -> SyncPlan:
    """Every touched key ends as Supabase has it now: stored if it exists, deleted if not.

    ``baseline`` is the previously published list (key -> etag) when the list changed: rows
    that differ from it are synced too, even untouched ones. That fills an empty cache on the
    first run (baseline ``{}``) and heals changes whose webhook was lost (Supabase never
    retries) at the next change of the same table.
    """
    keys = {str(key) for key in touched}
    if baseline is not None:
        keys |= {key for key, row in snapshot.rows.items() if baseline.get(key) != row.etag}
        keys |= {key for key in baseline if key not in snapshot.rows}
    keys_in_order = sorted(keys)
    return SyncPlan(
        puts={key: snapshot.rows[key] for key in keys_in_order if key in snapshot.rows},
        deletes=tuple(key for key in keys_in_order if key not in snapshot.rows),
    )


def sort_rows(rows: list[Row], order: str) -> list[Row]:
    """Sort by ``column`` or ``column.desc``; nulls last ascending, first descending (Postgres)."""
    column, _, direction = order.partition(".")
    descending = direction.lower() == "desc"
    present = [row for row in rows if row.get(column) is not None]
    missing = [row for row in rows if row.get(column) is None]

    def sort_key(row: Row) -> tuple[int, Any]:
        value = row[column]
        # Mixed types sort by type first instead of failing.
        return (0, value) if isinstance(value, int | float) else (1, str(value))

    ordered = sorted(present, key=sort_key, reverse=descending)
    return missing + ordered if descending else ordered + missing
