"""Rows in memory (one dict per table, in insertion order) with SQLite as write-through storage.

Every write is planned first (validated, webhook changes computed), then committed to SQLite in
one transaction, then applied in memory: a request either happens entirely or not at all, as in
PostgreSQL. Row dicts are never mutated after they are stored (an update stores a new dict), so
readers can filter a snapshot outside the lock.

Tables are schemaless beyond their primary key: a column exists once some row has carried it,
and rows that never set it read as NULL (as after ``ALTER TABLE ... ADD COLUMN``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from local.supabase_standin.errors import PostgrestError
from local.supabase_standin.query import Row, sort_key_value

ChangeType = Literal["INSERT", "UPDATE", "DELETE"]
Resolution = Literal["merge-duplicates", "ignore-duplicates"] | None
Validator = Callable[[list["Change"]], None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS standin_rows (
    tbl TEXT NOT NULL, pk TEXT NOT NULL, ord INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (tbl, pk)
);
CREATE TABLE IF NOT EXISTS standin_columns (
    tbl TEXT NOT NULL, name TEXT NOT NULL, pos INTEGER NOT NULL, PRIMARY KEY (tbl, name)
);
CREATE TABLE IF NOT EXISTS standin_meta (tbl TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""

SQLITE_FILE_NAME = "supabase.sqlite3"


@dataclass(frozen=True)
class Change:
    """One row-level change, as a row trigger sees it (full rows: every column)."""

    type: ChangeType
    table: str
    old: Row | None
    new: Row | None


def pk_key(table: str, pk: str, value: Any) -> str:
    """The dict/SQLite key of a primary-key value (JSON text, so 1 and "1" differ)."""
    if value is None:
        raise PostgrestError(
            400,
            "23502",
            f'null value in column "{pk}" of relation "{table}" violates not-null constraint',
        )
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PostgrestError(
            400,
            "22P02",
            f'invalid input syntax for the primary key column "{pk}": {json.dumps(value)}',
        )
    return json.dumps(value, ensure_ascii=False)


def _duplicate(table: str, pk: str, value: Any) -> PostgrestError:
    return PostgrestError(
        409,
        "23505",
        f'duplicate key value violates unique constraint "{table}_pkey"',
        f"Key ({pk})=({value}) already exists.",
    )


class Store:
    """The tables of one stand-in: thread-safe, in memory, persisted to SQLite."""

    def __init__(self, tables: Mapping[str, str], data_dir: str | Path | None = None) -> None:
        self.tables: dict[str, str] = dict(tables)
        self._lock = threading.RLock()
        self._rows: dict[str, dict[str, Row]] = {t: {} for t in self.tables}
        self._ords: dict[str, dict[str, int]] = {t: {} for t in self.tables}
        self._columns: dict[str, list[str]] = {t: [pk] for t, pk in self.tables.items()}
        self._seq: dict[str, int] = dict.fromkeys(self.tables, 0)
        self._next_ord = 0
        self.path: Path | None = None
        if data_dir is not None:
            folder = Path(data_dir)
            folder.mkdir(parents=True, exist_ok=True)
            self.path = folder / SQLITE_FILE_NAME
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            str(self.path) if self.path else ":memory:",
            check_same_thread=False,
            isolation_level=None,
        )
        if self.path:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._load()

    # -- lifecycle ---------------------------------------------------------------------------

    def _load(self) -> None:
        conn = self._require_conn()
        for tbl, name in conn.execute("SELECT tbl, name FROM standin_columns ORDER BY tbl, pos"):
            if tbl in self._columns and name not in self._columns[tbl]:
                self._columns[tbl].append(name)
        for tbl, seq in conn.execute("SELECT tbl, seq FROM standin_meta"):
            if tbl in self._seq:
                self._seq[tbl] = int(seq)
        for tbl, ord_, data in conn.execute("SELECT tbl, ord, data FROM standin_rows ORDER BY ord"):
            self._next_ord = max(self._next_ord, int(ord_) + 1)
            if tbl not in self.tables:
                continue
            row = json.loads(data)
            pk = self.tables[tbl]
            if not isinstance(row, dict) or row.get(pk) is None:
                continue
            key = pk_key(tbl, pk, row[pk])
            self._rows[tbl][key] = row
            self._ords[tbl][key] = int(ord_)
            if isinstance(row[pk], int):
                self._seq[tbl] = max(self._seq[tbl], row[pk])

    def close(self) -> None:
        """Close SQLite; later calls fail (the stand-in reopens a new Store on restart)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._conn is None

    def _require_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the stand-in store is closed")
        return self._conn

    # -- reads -------------------------------------------------------------------------------

    def has_table(self, table: str) -> bool:
        """Whether ``table`` is served."""
        return table in self.tables

    def columns(self, table: str) -> list[str]:
        """Known columns in table order (primary key first)."""
        with self._lock:
            return list(self._columns[table])

    def snapshot(self, table: str) -> tuple[list[Row], list[str]]:
        """(rows in storage order, columns); rows must not be mutated by the caller."""
        with self._lock:
            self._require_conn()
            return list(self._rows[table].values()), list(self._columns[table])

    def sorted_rows(self, table: str) -> list[Row]:
        """Full rows (every column), ordered by primary key, as independent copies."""
        rows, columns = self.snapshot(table)
        pk = self.tables[table]
        ordered = sorted(rows, key=lambda row: sort_key_value(row.get(pk)))
        full = [{c: row.get(c) for c in columns} for row in ordered]
        copied: list[Row] = json.loads(json.dumps(full))
        return copied

    # -- writes ------------------------------------------------------------------------------

    def _full(self, row: Row, columns: Sequence[str]) -> Row:
        return {c: row.get(c) for c in columns}

    def _extend_columns(self, columns: list[str], row: Mapping[str, Any]) -> None:
        for name in row:
            if name not in columns:
                columns.append(name)

    def insert(
        self,
        table: str,
        rows: Sequence[Row],
        *,
        resolution: Resolution = None,
        validate: Validator | None = None,
    ) -> list[Change]:
        """INSERT, or INSERT ... ON CONFLICT (pk) DO UPDATE/NOTHING for the resolutions.

        A row without the primary key gets the next integer (identity column behaviour).
        """
        pk = self.tables[table]
        with self._lock:
            current = self._rows[table]
            columns = list(self._columns[table])
            seq = self._seq[table]
            batch: dict[str, Row] = {}
            planned: list[tuple[ChangeType, str, Row | None, Row]] = []
            for given in rows:
                row = dict(given)
                if pk not in row:
                    seq += 1
                    while pk_key(table, pk, seq) in current or pk_key(table, pk, seq) in batch:
                        seq += 1
                    row = {pk: seq, **row}
                key = pk_key(table, pk, row[pk])
                if isinstance(row[pk], int) and not isinstance(row[pk], bool):
                    seq = max(seq, row[pk])
                self._extend_columns(columns, row)
                if key in batch:
                    if resolution == "ignore-duplicates":
                        continue
                    if resolution == "merge-duplicates":
                        raise PostgrestError(
                            400,
                            "21000",
                            "ON CONFLICT DO UPDATE command cannot affect row a second time",
                            None,
                            "Ensure that no rows proposed for insertion within the same command "
                            "have duplicate constrained values.",
                        )
                    raise _duplicate(table, pk, row[pk])
                existing = current.get(key)
                if existing is None:
                    planned.append(("INSERT", key, None, row))
                    batch[key] = row
                elif resolution == "merge-duplicates":
                    merged = {**existing, **row}
                    planned.append(("UPDATE", key, existing, merged))
                    batch[key] = merged
                elif resolution == "ignore-duplicates":
                    continue
                else:
                    raise _duplicate(table, pk, row[pk])
            changes = [
                Change(
                    kind,
                    table,
                    None if old is None else self._full(old, columns),
                    self._full(new, columns),
                )
                for kind, _key, old, new in planned
            ]
            if validate is not None:
                validate(changes)
            puts = [(key, new) for _kind, key, _old, new in planned]
            self._commit(table, columns, seq, puts=puts, deletes=[])
            return changes

    def update(
        self,
        table: str,
        predicate: Callable[[Row], bool],
        patch: Mapping[str, Any],
        *,
        validate: Validator | None = None,
    ) -> list[Change]:
        """UPDATE ... SET <patch> WHERE <predicate>."""
        pk = self.tables[table]
        with self._lock:
            current = self._rows[table]
            targets = [(key, row) for key, row in current.items() if predicate(row)]
            if not patch:
                return []
            columns = list(self._columns[table])
            self._extend_columns(columns, patch)
            seq = self._seq[table]
            remaining = set(current) - {key for key, _row in targets}
            new_keys: set[str] = set()
            planned: list[tuple[str, Row, str, Row]] = []
            for key, row in targets:
                new = {**row, **patch}
                new_key = pk_key(table, pk, new.get(pk))
                if (new_key != key and new_key in remaining) or new_key in new_keys:
                    raise _duplicate(table, pk, new[pk])
                new_keys.add(new_key)
                if isinstance(new[pk], int) and not isinstance(new[pk], bool):
                    seq = max(seq, new[pk])
                planned.append((key, row, new_key, new))
            changes = [
                Change("UPDATE", table, self._full(old, columns), self._full(new, columns))
                for _key, old, _new_key, new in planned
            ]
            if validate is not None:
                validate(changes)
            moved = [key for key, _old, new_key, _new in planned if key != new_key]
            puts = [(new_key, new) for _key, _old, new_key, new in planned]
            self._commit(table, columns, seq, puts=puts, deletes=moved)
            return changes

    def delete(
        self,
        table: str,
        predicate: Callable[[Row], bool],
        *,
        validate: Validator | None = None,
    ) -> list[Change]:
        """DELETE ... WHERE <predicate>."""
        with self._lock:
            current = self._rows[table]
            columns = self._columns[table]
            targets = [(key, row) for key, row in current.items() if predicate(row)]
            changes = [
                Change("DELETE", table, self._full(row, columns), None) for _k, row in targets
            ]
            if validate is not None:
                validate(changes)
            self._commit(
                table,
                list(columns),
                self._seq[table],
                puts=[],
                deletes=[key for key, _row in targets],
            )
            return changes

    def declare_columns(self, table: str, names: Iterable[str]) -> None:
        """Make columns known before any row carries them (so selecting them is no 42703)."""
        with self._lock:
            columns = list(self._columns[table])
            self._extend_columns(columns, dict.fromkeys(names))
            if columns != self._columns[table]:
                self._commit(table, columns, self._seq[table], puts=[], deletes=[])

    def seed(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Bulk insert (no webhooks: the caller does not publish the changes)."""
        if table not in self.tables:
            raise KeyError(f"unknown table {table!r}")
        try:
            copied: list[Row] = json.loads(json.dumps(list(rows), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"rows must be JSON-serialisable objects: {exc}") from None
        if not all(isinstance(row, dict) for row in copied):
            raise ValueError("rows must be dicts")
        try:
            return len(self.insert(table, copied))
        except PostgrestError as exc:
            raise ValueError(f"{exc.message} {exc.details or ''}".strip()) from None

    def _commit(
        self,
        table: str,
        columns: list[str],
        seq: int,
        *,
        puts: list[tuple[str, Row]],
        deletes: list[str],
    ) -> None:
        """Write to SQLite in one transaction, then to memory (caller holds the lock)."""
        conn = self._require_conn()
        rows = self._rows[table]
        ords = self._ords[table]
        next_ord = self._next_ord
        deleted = set(deletes)
        put_records: list[tuple[str, str, int, str]] = []
        new_ords: dict[str, int] = {}
        for key, row in puts:
            ord_ = ords.get(key)
            if ord_ is None or key in deleted:
                ord_ = next_ord
                next_ord += 1
            new_ords[key] = ord_
            put_records.append((table, key, ord_, json.dumps(row, ensure_ascii=False)))
        old_columns = self._columns[table]
        added = [(table, name, pos) for pos, name in enumerate(columns) if name not in old_columns]
        conn.execute("BEGIN")
        try:
            if deletes:
                conn.executemany(
                    "DELETE FROM standin_rows WHERE tbl = ? AND pk = ?",
                    [(table, key) for key in deletes],
                )
            if put_records:
                conn.executemany(
                    "INSERT OR REPLACE INTO standin_rows (tbl, pk, ord, data) VALUES (?, ?, ?, ?)",
                    put_records,
                )
            if added:
                conn.executemany(
                    "INSERT OR REPLACE INTO standin_columns (tbl, name, pos) VALUES (?, ?, ?)",
                    added,
                )
            if seq != self._seq[table]:
                conn.execute(
                    "INSERT OR REPLACE INTO standin_meta (tbl, seq) VALUES (?, ?)", (table, seq)
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        # Committed: now the in-memory view.
        for key in deletes:
            rows.pop(key, None)
            ords.pop(key, None)
        for key, row in puts:
            rows[key] = row
            ords[key] = new_ords[key]
        self._columns[table] = columns
        self._seq[table] = seq
        self._next_ord = next_ord
