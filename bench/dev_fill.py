"""A first fill through `make dev`: one webhook fills a table of many rows.

Start the local stack first (`make dev`, any PORT/SUPABASE_PORT), then in another terminal:

    .venv/bin/python -m bench.dev_fill --rows 50000

It puts the rows into the stand-in with its admin API (no webhooks), inserts one more row with
supabase-py (the one webhook), and polls the read API until the list is complete: the fill ran
on the stack's own consumer, through its queue, with the template's 60 s timeout enforced.
Then it compares every cached row with Supabase (`make verify`). It changes the stand-in's
data, so use it on a scratch stack, not on rows you want to keep.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import ROOT
from bench.scale import article

SEED_BATCH = 10_000
POLL_SECONDS = 2.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--table", default="articles")
    parser.add_argument("--state", default=str(ROOT / ".local-data" / "stack.json"))
    parser.add_argument("--timeout", type=float, default=3600.0)
    arguments = parser.parse_args(argv)
    state = json.loads(Path(arguments.state).read_text())
    key = _service_key(state)
    table, rows = arguments.table, arguments.rows

    status, _ = _get(f"{state['api_url']}/{table}")
    if status != 404:
        print(f"{table} is already cached (GET answered {status}): start a fresh `make dev`")
        return 1
    for start in range(2, rows + 1, SEED_BATCH):
        batch = [article(k) for k in range(start, min(start + SEED_BATCH, rows + 1))]
        _post(f"{state['supabase_url']}/__standin/tables/{table}/rows", batch, key)
    print(f"seeded {rows - 1} rows without webhooks; inserting row 1 (the one webhook)")

    from supabase import create_client

    started = time.monotonic()
    create_client(state["supabase_url"], key).table(table).insert(article(1)).execute()
    while True:
        status, headers = _get(f"{state['api_url']}/{table}")
        elapsed = time.monotonic() - started
        if status == 200:
            total = int(headers.get("X-Total-Count", "0"))
            print(f"list complete after {elapsed:.0f} s: {total} rows")
            break
        if elapsed > arguments.timeout:
            print(f"still {status} after {elapsed:.0f} s")
            return 1
        time.sleep(POLL_SECONDS)
    verified = subprocess.run(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "ops", "verify", "--table", table], cwd=ROOT, check=False
    )
    return 0 if total == rows and verified.returncode == 0 else 1


def _service_key(state: dict[str, Any]) -> str:
    """The stand-in's service key, as the consumer reads it (from emulated Secrets Manager)."""
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


def _post(url: str, body: Any, key: str) -> None:
    request = urllib.request.Request(  # noqa: S310 (local URL)
        url,
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {key}",
            "apikey": key,
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
        response.read()


if __name__ == "__main__":
    raise SystemExit(main())
