"""The design before the patchable list, kept as the scale benchmark's baseline.

Per batch it did what this module does: re-read the whole table from Supabase (keyset pages),
serialize every row, cut the list into 256 KB chunks (zlib over 16 KB), write every chunk of
a new version, flip the manifest, set a TTL on every chunk of the old version, and write the
touched row items conditionally. Only what costs time, reads and writes is kept; it writes
under its own key prefix, so it shares the cache table with the measured design harmlessly.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from waituntil.cache.layout import dump_json, encode_text

CHUNK_BYTES = 256_000
PREFIX = "/full-read"


def run_batch(client: Any, table_name: str, source: Any, keys: list[int], *, items: bool) -> None:
    rows: list[dict[str, Any]] = []
    last: Any = None
    while True:
        page = source.read_page("articles", last, 1000)
        rows += page
        if len(page) < 1000:
            break
        last = page[-1]["id"]
    read_at_ns = time.time_ns()
    bodies = [dump_json(row) for row in rows]
    chunks = _split(bodies)
    whole = "[" + ",".join(bodies) + "]"
    version = f"{read_at_ns}-{hashlib.sha256(whole.encode()).hexdigest()[:12]}"
    requests = [
        {
            "PutRequest": {
                "Item": {
                    "pk": {"S": f"{PREFIX}@{version}/{index}"},
                    "kind": {"S": "chunk"},
                    **encode_text(chunk),
                }
            }
        }
        for index, chunk in enumerate(chunks)
    ]
    for start in range(0, len(requests), 25):
        pending: Any = {table_name: requests[start : start + 25]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems")
    response = client.put_item(
        TableName=table_name,
        Item={
            "pk": {"S": PREFIX},
            "version": {"S": version},
            "chunk_count": {"N": str(len(chunks))},
            "read_at_ns": {"N": str(read_at_ns)},
        },
        ReturnValues="ALL_OLD",
    )
    old = response.get("Attributes")
    if old:
        expires_at = str(int(time.time()) + 900)
        for index in range(int(old["chunk_count"]["N"])):
            client.update_item(
                TableName=table_name,
                Key={"pk": {"S": f"{PREFIX}@{old['version']['S']}/{index}"}},
                UpdateExpression="SET expires_at = :e",
                ExpressionAttributeValues={":e": {"N": expires_at}},
            )
    if items:
        by_key = {row["id"]: body for row, body in zip(rows, bodies, strict=True)}
        for key in keys:
            client.put_item(
                TableName=table_name,
                Item={
                    "pk": {"S": f"{PREFIX}/{key}"},
                    "kind": {"S": "row"},
                    **encode_text(by_key[key]),
                    "read_at_ns": {"N": str(read_at_ns)},
                },
                ConditionExpression="attribute_not_exists(pk) OR read_at_ns < :r",
                ExpressionAttributeValues={":r": {"N": str(read_at_ns)}},
            )


def _split(bodies: list[str]) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    size = 2
    for body in bodies:
        if current and size + len(body.encode()) + 1 > CHUNK_BYTES:
            chunks.append("[" + ",".join(current) + "]")
            current, size = [], 2
        current.append(body)
        size += len(body.encode()) + 1
    chunks.append("[" + ",".join(current) + "]")
    return chunks
