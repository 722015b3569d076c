"""How the cache is laid out in DynamoDB: keys, item kinds, and how text is stored in items.

One table, partition key ``pk`` (string):

- ``/<table>/<id>``, kind ``row``: one row, its JSON in ``body`` (zlib ``body_z`` over 512 B),
  or a ``blob`` key in S3 when too large for an item; ``position`` and the ``positions`` tags
  say where the list holds it.
- ``/<table>/<id>``, kind ``tombstone``: the row is gone; kept until ``expires_at`` so an older
  read cannot resurrect it.
- ``/<table>``, kind ``list``: the head, the current list version and its index page refs.
- ``/<table>@<version>``, kind ``list``: the same, frozen; what a cursor pinning it reads.
- ``/<table>#i/<id>``, kind ``index``: an index page, refs of up to 128 chunks in list order.
- ``/<table>#c/<id>``, kind ``chunk``: a JSON array of rows (``body``) and per row its key, read
  time, position, etag and blob key (``meta``). One chunk is one page of the read API.
- ``/<table>#sync``, kind ``sync``: the checkpoint of a running full sync.
- ``/<table>#fill``, kind ``fill``: the journal of keys changed while a first fill puts rows
  unconditionally (``sync/fill_journal``); deleted when the list is complete.
- ``/<table>#next``, kind ``list``: the head of the version a rebuild is building apart; never
  served, switched to whole when complete (``sync/rebuild``).
- ``/<table>#attempts``, kind ``attempts``: the publishes in flight (their new nodes), so that
  what a killed one wrote is found and expired (``sync/orphans``).
- ``/<table>#lease/<kind>``, kind ``lease``: who runs the table's ``sync`` or ``reconcile`` now,
  until ``expires_at`` (H5: one of each at a time).
- ``/<table>#heal``, kind ``heal``: the reconciler's state (where its next scan starts, the
  change column found, its last successful cycle).
- ``<node key>#fp``, kind ``fingerprint``: a list node's row count and fingerprint, for tables
  reconciled by fingerprints; expires after 30 days (summed again if still needed).

Nodes (versions, index pages, chunks) get unique keys and are never rewritten; a version that
is no longer current, and nodes it alone used, get ``expires_at`` (the grace period for readers
mid-way) and DynamoDB's TTL removes them. Nothing is ever deleted by key: a node no head reaches
is given the same grace period, so a node some version still uses can never vanish early.

The head, each frozen version and each row item carry ``policy``, the fingerprint of the table
policy they were built with; a reader serves only what matches the policy in force.

Here too: what a row read from Supabase becomes (``row_body``: compact JSON and its content
hash; ``fresh_rows``: each touched key's body and list position, or gone). ``cache.items`` has
one codec per item kind (model <-> item), so ``adapters/cache_store`` never spells an attribute
name.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from waituntil.cache.model import FreshRow, ListEntry, RowBody
from waituntil.core.contracts import Row, RowKey
from waituntil.core.list_order import ListOrder

# DynamoDB bills a write per started KB of the item: a row of about 1 KB of JSON, with its
# key, etag, position and read time, is just over 1 KB (2 units) in plain text and under it
# compressed (zlib takes such rows to about two thirds). Below 512 bytes an item is under a KB
# either way, and zlib gains little on short texts. Compression also keeps large items far
# below the 400 KB item limit.
COMPRESS_OVER_BYTES = 512
# Room left for the item's other attributes under DynamoDB's 400 KB limit; a row body larger
# than this (after compression) goes to the blob store.
MAX_STORED_BODY_BYTES = 380_000

KIND_ROW = "row"
KIND_TOMBSTONE = "tombstone"
KIND_LIST = "list"
KIND_INDEX = "index"
KIND_CHUNK = "chunk"
KIND_SYNC = "sync"
KIND_FILL = "fill"
KIND_ATTEMPTS = "attempts"
# A row item's mark that its blob may still carry the "unclaimed" tag it was put with.
BLOB_UNCLAIMED = "blob_unclaimed"
KIND_LEASE = "lease"
KIND_HEAL = "heal"
KIND_FINGERPRINT = "fingerprint"
# The two leases of a table (H5): one full sync, one reconcile cycle at a time.
LEASE_SYNC = "sync"
LEASE_RECONCILE = "reconcile"

Item = dict[str, Any]  # low-level client format: {"name": {"S": "..."}}


# ----- keys ------------------------------------------------------------------------------------


def row_item_key(table: str, key: RowKey) -> str:
    return f"/{table}/{key}"


def list_item_key(table: str) -> str:
    return f"/{table}"


def version_item_key(table: str, version: str) -> str:
    return f"/{table}@{version}"


def chunk_node_key(table: str, node_id: str) -> str:
    return f"/{table}#c/{node_id}"


def index_node_key(table: str, node_id: str) -> str:
    return f"/{table}#i/{node_id}"


def sync_item_key(table: str) -> str:
    return f"/{table}#sync"


def fill_journal_key(table: str) -> str:
    return f"/{table}#fill"


def next_head_key(table: str) -> str:
    return f"/{table}#next"


def attempts_item_key(table: str) -> str:
    return f"/{table}#attempts"


def blob_object_key(table: str, etag: str, nonce: str) -> str:
    """One object per write, never per content: no item ever points back to a key once it has
    moved off it, so tagging a replaced body superseded can never hit a live one (a row that
    goes X -> Y -> X gets a second object for X). The etag is there for whoever reads keys."""
    return f"rows/{table}/{etag}/{nonce}.json"


def lease_item_key(table: str, kind: str) -> str:
    return f"/{table}#lease/{kind}"


def heal_item_key(table: str) -> str:
    return f"/{table}#heal"


def fingerprint_item_key(node_key: str) -> str:
    """Beside a list node (``/<table>#c/<id>``): the sum of its rows' hashes."""
    return f"{node_key}#fp"


# ----- text ------------------------------------------------------------------------------------


def dump_json(value: Any) -> str:
    """Compact JSON that keeps unicode as is; floats use repr, so they round-trip exactly."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def content_etag(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def row_body(row: Any) -> RowBody:
    text = dump_json(row)
    return RowBody(text=text, etag=content_etag(text))


def fresh_rows(keys: Sequence[str], rows: Sequence[Row], order: ListOrder) -> list[FreshRow]:
    """Each key as Supabase has it now: its row, or gone (deleted, or hidden from us)."""
    by_key = {str(row[order.primary_key]): row for row in rows}
    fresh: list[FreshRow] = []
    for key in keys:
        row = by_key.get(key)
        if row is None:
            fresh.append(FreshRow(key=key, body=None, position=None))
        else:
            fresh.append(FreshRow(key=key, body=row_body(row), position=order.position(row)))
    return fresh


def encode_text(text: str, name: str = "body") -> Item:
    """The attribute that stores ``text``: ``<name>`` as is, or ``<name>_z`` compressed."""
    raw = text.encode()
    if len(raw) <= COMPRESS_OVER_BYTES:
        return {name: {"S": text}}
    packed = zlib.compress(raw, 6)
    if len(packed) >= len(raw):
        return {name: {"S": text}}  # incompressible (already compressed data, say): kept as is
    return {f"{name}_z": {"B": packed}}


def decode_text(item: Item, name: str = "body") -> str:
    if name in item:
        return str(item[name]["S"])
    return zlib.decompress(item[f"{name}_z"]["B"]).decode()


def item_bytes(item: Item) -> int:
    """DynamoDB's size of an item: attribute names plus values (what a write is billed on)."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def _value_bytes(value: dict[str, Any]) -> int:
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "B":
        return len(raw)
    if kind == "N":
        return len(raw) // 2 + 1
    if kind == "SS":
        return sum(len(part.encode()) for part in raw)
    if kind == "L":
        return 3 + sum(1 + _value_bytes(part) for part in raw)
    return 1


def blob_bytes(text: str) -> int:
    """What a row body kept in the blob store adds to a page as served: the reader puts the
    body back into the page, and Lambda's response carries the page as one JSON string."""
    return len(json.dumps(text)) - 2


def served_chunk_json(entries: Iterable[ListEntry]) -> str:
    """A chunk as the read API serves it: a JSON array; rows kept out of line are ``null``
    here and resolved from the blob store by the reader."""
    return (
        "[" + ",".join(entry.text if entry.text is not None else "null" for entry in entries) + "]"
    )
