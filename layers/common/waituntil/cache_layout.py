"""How the cache is laid out in DynamoDB: keys, item bodies, content hashes.

One table, partition key ``pk`` (string). Keys mirror the original KV keys:

- ``/<table>/<id>``: one row. ``kind`` = ``row`` (with the row's JSON) or ``tombstone``
  (the row was deleted; kept until ``expires_at`` so an older read cannot resurrect it).
- ``/<table>``: the list manifest (``kind`` = ``list``): which version of the aggregate is
  current, its chunk count, row count, bytes and ETag.
- ``/<table>@<version>/<n>``: chunk ``n`` (0-based) of one version of the aggregate, a JSON
  array of rows. Chunks are written before the manifest flips to their version, so a reader
  that follows the manifest never mixes two versions.

Bodies are JSON text exactly as the consumer serialized what Supabase returned. Bodies larger
than ``COMPRESS_OVER_BYTES`` are stored zlib-compressed in ``body_z`` instead of ``body``.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

from waituntil.contracts import RowKey

# DynamoDB bills writes per KB; compressing large bodies cuts cost and keeps chunks far below
# the 400 KB item limit.
COMPRESS_OVER_BYTES = 16_384
# Room left for the item's other attributes under DynamoDB's 400 KB limit.
MAX_STORED_BODY_BYTES = 390_000

KIND_ROW = "row"
KIND_TOMBSTONE = "tombstone"
KIND_LIST = "list"
KIND_CHUNK = "chunk"


def row_item_key(table: str, key: RowKey) -> str:
    return f"/{table}/{key}"


def list_item_key(table: str) -> str:
    return f"/{table}"


def chunk_item_key(table: str, version: str, index: int) -> str:
    return f"/{table}@{version}/{index}"


def dump_json(value: Any) -> str:
    """Compact JSON that keeps unicode as is; floats use repr, so they round-trip exactly."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def content_etag(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def encode_body(text: str) -> dict[str, Any]:
    """The DynamoDB attributes that store ``text`` (low-level client format)."""
    raw = text.encode()
    if len(raw) <= COMPRESS_OVER_BYTES:
        return {"body": {"S": text}}
    return {"body_z": {"B": zlib.compress(raw, 6)}}


def decode_body(item: dict[str, Any]) -> str:
    if "body" in item:
        return str(item["body"]["S"])
    return zlib.decompress(item["body_z"]["B"]).decode()


def stored_body_bytes(attributes: dict[str, Any]) -> int:
    value = attributes.get("body") or attributes["body_z"]
    stored = value.get("S") or value.get("B")
    return len(stored.encode()) if isinstance(stored, str) else len(stored)
