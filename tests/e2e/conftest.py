"""The local stack (``local.stack.PipelineStack``) driven over real HTTP.

Every stack binds port 0 (parallel pytest workers never clash), uses a batching window of 0 s
unless a test asks otherwise, and a 2 s visibility timeout so that failed batches come back
within the test (a local-only setting; the template's is minutes). Its Supabase runs on a fresh
database of the test process's PostgreSQL (``tests/conftest.py``), unless the test gives it a
``data_dir``: then on a PostgreSQL of its own there, as ``make dev DATA=`` does.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from supabase import Client, create_client

from local.stack import PipelineStack
from tests.conftest import Database, _fresh_database

if TYPE_CHECKING:
    from local.supabase import PostgresCluster

# Warnings and errors only: pytest shows the functions' stderr when a test fails.
QUIET = {"POWERTOOLS_LOG_LEVEL": "WARNING"}
TABLE = "articles"

StartStack = Callable[..., PipelineStack]


@pytest.fixture
def start_stack(postgres: PostgresCluster) -> Iterator[StartStack]:
    """Start stacks with test defaults; every one is stopped after the test."""
    stacks: list[PipelineStack] = []
    databases: list[Iterator[Database]] = []

    def start(**options: Any) -> PipelineStack:
        defaults: dict[str, Any] = {
            "port": 0,
            "batching_window_s": 0,
            "visibility_timeout_s": 2,
            "environment": QUIET,
        }
        if "data_dir" not in options:
            databases.append(_fresh_database(postgres))
            defaults["database"] = next(databases[-1])
        stack = PipelineStack(**{**defaults, **options})
        stacks.append(stack)
        return stack.start()

    yield start
    for stack in reversed(stacks):
        stack.stop()
    for database in databases:
        next(database, None)  # dropped


@pytest.fixture(scope="module")
def paged_stack(
    tmp_path_factory: pytest.TempPathFactory, module_database: Database
) -> Iterator[PipelineStack]:
    """For read-only tests of the read API: rows 0-39 of ``articles`` stored in 1 KiB chunks
    (several pages); the functions' logs go to files. Module scope, not session: moto's
    backends are process-wide, so two stacks alive at once in one worker would share them."""
    with PipelineStack(
        port=0,
        batching_window_s=0,
        visibility_timeout_s=2,
        environment={**QUIET, "LIST_CHUNK_BYTES": "1024"},
        function_logs=tmp_path_factory.mktemp("logs"),
        database=module_database,
    ) as stack:
        rows = [{"id": key, "title": f"Article {key}", "body": "x" * 60} for key in range(40)]
        supabase_client(stack).table(TABLE).insert(rows).execute()
        assert stack.wait_until_idle(timeout_s=30)
        yield stack


@pytest.fixture(scope="module")
def shared_stack(module_database: Database) -> Iterator[PipelineStack]:
    """One stack for tests that leave nothing behind (refused requests)."""
    with PipelineStack(
        port=0,
        batching_window_s=0,
        visibility_timeout_s=2,
        environment=QUIET,
        database=module_database,
    ) as stack:
        yield stack


def supabase_client(stack: PipelineStack) -> Client:
    return create_client(stack.supabase_url, stack.supabase_key)


def http_request(
    url: str, *, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, parsed JSON body or text), 4xx/5xx included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 (test URLs)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=15) as response:
            return response.status, dict(response.headers), _decode(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), _decode(error.read())


def _decode(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def webhook_payload(change_type: str, record: dict[str, Any] | None, old: Any = None) -> Any:
    """What Supabase's trigger sends for one row change."""
    return {
        "type": change_type,
        "table": TABLE,
        "schema": "public",
        "record": record,
        "old_record": old,
    }


def wait_for(condition: Callable[[], bool], timeout_s: float, every_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every_s)
    return condition()
