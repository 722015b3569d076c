"""A local Supabase project on real PostgreSQL: ``/rest/v1`` (``rest.py``) and pg_net's worker
(``net.py``) over a database prepared from ``supabase/`` (``postgres.py``)::

    cluster = PostgresCluster().start()  # or PostgresCluster(".local-data/db"): kept
    cluster.create_database("app")
    cluster.prepare("app")  # platform, supabase/migrations, supabase/seed.sql
    with LocalSupabase(cluster, "app") as supabase:
        create_client(supabase.url, supabase.service_key)  # every row (BYPASSRLS)
        create_client(supabase.url, supabase.anon_key)  # what RLS shows the public
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql

from local.supabase.net import Dispatcher, WebhookDelivery
from local.supabase.postgres import LocalDatabaseError, PostgresCluster
from local.supabase.rest import DEFAULT_JWT_SECRET, RequestRecord, RestServer, make_key
from ops.webhook_sql import TRIGGER_NAME, render_webhook_sql

__all__ = ["DEFAULT_JWT_SECRET", "LocalDatabaseError", "LocalSupabase", "PostgresCluster"]
__all__ += ["RequestRecord", "WebhookDelivery", "make_key"]
_PRIMARY_KEY = """select a.attname::text from pg_index i join pg_attribute a on a.attrelid =
                  i.indrelid and a.attnum = any(i.indkey) where i.indrelid = %s::regclass
                  and i.indisprimary"""
_WIRED = "select tgrelid::regclass::text from pg_trigger where tgname = %s"


class LocalSupabase(RestServer):
    """The REST API and pg_net's worker for ``database`` of ``cluster``; the owner's view of
    its tables (``sql``, ``seed``, ``rows``) for tests and the demo."""

    def __init__(
        self, cluster: PostgresCluster, database: str, *, max_rows: int = 1000,
        webhook_jitter_s: float = 0.0, drop_webhooks: float = 0.0,
    ) -> None:  # fmt: skip
        api = cluster.conninfo(database, "authenticator")
        super().__init__(api, jwt_secret=DEFAULT_JWT_SECRET, max_rows=max_rows)
        self.cluster, self.database, self.owner = cluster, database, cluster.conninfo(database)
        self.net = Dispatcher(self.owner, max_jitter_s=webhook_jitter_s, drop_rate=drop_webhooks)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start sending webhooks and serve the API (port 0: any free one); its URL."""
        self.net.start()
        try:
            return self.serve(host, port)
        except BaseException:
            self.net.stop()
            raise

    def stop(self) -> None:
        """Stop the API, then finish the webhooks being sent; the database stays."""
        self.close()
        self.net.stop()

    def __enter__(self) -> LocalSupabase:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def webhook_log(self) -> list[WebhookDelivery]:
        return self.net.log

    def wait_for_webhooks(self, timeout_s: float = 10.0) -> bool:
        return self.net.wait(timeout_s)

    def sql(self, statement: str | sql.Composed, params: Sequence[Any] = ()) -> list[Any]:
        """Run SQL as the owner (DDL, policies, checks): the rows it returns, if any."""
        query = statement.encode() if isinstance(statement, str) else statement
        with psycopg.connect(self.owner, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def seed(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert rows as a data load does: no trigger fires, so no webhook is sent; a column
        a row leaves out gets its default."""
        groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(row), []).append(row)
        target = sql.Identifier("public", table)
        insert = sql.SQL("insert into {} ({}) select {} from json_populate_recordset(null::{}, %s)")
        with psycopg.connect(self.owner) as conn:
            conn.execute("set local session_replication_role = replica")
            for columns, group in groups.items():
                names = sql.SQL(", ").join(map(sql.Identifier, columns))
                conn.execute(insert.format(target, names, names, target), [json.dumps(group)])
        return sum(map(len, groups.values()))

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row and column, by primary key, rendered as PostgREST renders them."""
        key = self.sql(_PRIMARY_KEY, [f'public."{table}"'])
        order = sql.SQL(", ").join(sql.Identifier(name) for (name,) in key)
        query = sql.SQL("select coalesce(json_agg(t order by {}), '[]')::text from {} t")
        [(text,)] = self.sql(query.format(order, sql.Identifier("public", table)))
        rows: list[dict[str, Any]] = json.loads(text)
        return rows

    def wire_webhooks(self, url: str, secret: str, tables: Sequence[str], timeout_ms: int) -> None:
        """The Database Webhooks ``make webhook-sql`` gives a real project, pointed at ``url``
        (those an earlier run left on other tables dropped first)."""
        drop = sql.SQL("drop trigger {} on {}")
        for (table,) in self.sql(_WIRED, [TRIGGER_NAME]):
            self.sql(
                drop.format(sql.Identifier(TRIGGER_NAME), sql.SQL(table))
            )  # as the catalog quotes it
        try:
            self.sql(render_webhook_sql(url, secret, tables, timeout_ms=timeout_ms))
        except psycopg.Error as error:  # a cached table that no migration creates, say
            fix = "add the table to supabase/migrations or cache another (TABLES=)"
            raise LocalDatabaseError(f"the webhooks' triggers failed: {error}; {fix}") from error
