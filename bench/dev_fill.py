"""A first fill through `make dev`: one webhook fills a table of many rows.

    .venv/bin/python -m bench.dev_fill --rows 50000

It writes the rows into a fresh local database folder (as rows already in a project, which sent
no webhooks for them), starts `make dev DATA=<that folder> BACKFILL=no` on ports of its own
(an empty cache, as a fresh deployment has), inserts one more row with supabase-py (the one
webhook), and polls the read API until the list is complete.
The fill runs on the stack's own consumer, through its queue, with the template's 60 s timeout
enforced by the local runtime. Then `make verify` compares every cached row with Supabase, and
the stack stops.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import ROOT
from bench.scale import article

SEED_BATCH = 10_000
POLL_SECONDS = 2.0
TABLE = "articles"  # make dev caches it, keyed by id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--port", type=int, default=3390)
    parser.add_argument("--supabase-port", type=int, default=54390)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--log", default=str(ROOT / ".local-data" / "dev_fill.log"))
    arguments = parser.parse_args(argv)
    Path(arguments.log).parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="dev-fill-") as folder,
        Path(arguments.log).open("wb") as log,
    ):
        _seed(Path(folder) / "db", arguments.rows)
        state = Path(folder) / "stack.json"
        print(f"make dev's output: {arguments.log}")
        stack = subprocess.Popen(  # noqa: S603 (make, on this project's Makefile)
            [  # noqa: S607 (make from PATH, as a user runs it)
                "make",
                "--no-print-directory",
                "dev",
                f"DATA={Path(folder) / 'db'}",
                f"PORT={arguments.port}",
                f"SUPABASE_PORT={arguments.supabase_port}",
                "BACKFILL=no",  # as a fresh deployment: nothing fills until the webhook
            ],
            cwd=ROOT,
            env={**os.environ, "LOCAL_STACK_STATE": str(state)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return _fill(_wait_for(state, stack), state, arguments.rows, arguments.timeout)
        finally:
            os.killpg(stack.pid, signal.SIGINT)
            stack.wait(timeout=60)


def _seed(folder: Path, rows: int) -> None:
    """Rows 2..N, loaded into the database `make dev` will run on: no webhook is sent for them."""
    from local.supabase import LocalSupabase, PostgresCluster

    cluster = PostgresCluster(folder).start()
    try:
        cluster.prepare("postgres", seed=False)
        supabase = LocalSupabase(cluster, "postgres")
        for start in range(2, rows + 1, SEED_BATCH):
            batch = [article(k) for k in range(start, min(start + SEED_BATCH, rows + 1))]
            supabase.seed(TABLE, batch)
    finally:
        cluster.stop()
    print(f"seeded {rows - 1} rows without webhooks")


def _wait_for(state: Path, stack: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while not state.exists():
        if stack.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("make dev did not start (is a port taken?)")
        time.sleep(0.5)
    loaded: dict[str, Any] = json.loads(state.read_text())
    return loaded


def _fill(state: dict[str, Any], state_path: Path, rows: int, timeout_s: float) -> int:
    from supabase import create_client

    list_url = f"{state['api_url']}/{TABLE}"
    status, _ = _get(list_url)
    assert status == 404, f"{TABLE} is cached already ({status}): not a first fill"
    print("inserting row 1 (the one webhook)")
    started = time.monotonic()
    create_client(state["supabase_url"], _service_key(state)).table(TABLE).insert(
        article(1)
    ).execute()
    while True:
        status, headers = _get(list_url)
        elapsed = time.monotonic() - started
        if status == 200:
            total = int(headers.get("X-Total-Count", "0"))
            print(f"list complete after {elapsed:.0f} s: {total} rows")
            break
        if elapsed > timeout_s:
            print(f"still {status} after {elapsed:.0f} s")
            return 1
        time.sleep(POLL_SECONDS)
    verified = subprocess.run(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "ops", "verify", "--table", TABLE],
        cwd=ROOT,
        env={**os.environ, "LOCAL_STACK_STATE": str(state_path)},
        check=False,
    )
    return 0 if total == rows and verified.returncode == 0 else 1


def _service_key(state: dict[str, Any]) -> str:
    """The local service key, as the consumer reads it (from emulated Secrets Manager)."""
    import boto3

    environment = state["functions"]["ConsumerFunction"]["environment"]
    client = boto3.client(
        "secretsmanager",
        endpoint_url=state["aws_endpoint"],
        region_name=state["region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 (moto accepts any)
    )
    secret = client.get_secret_value(SecretId=environment["SUPABASE_KEY_SECRET_NAME"])
    return str(secret["SecretString"])


def _get(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (local URL)
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


if __name__ == "__main__":
    raise SystemExit(main())
