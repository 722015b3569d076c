"""How the cache is laid out in DynamoDB: keys, and one codec per item kind.

One table, partition key ``pk`` (string):

- ``/<table>/<id>``, kind ``row``: one row, its JSON in ``body`` (zlib ``body_z`` over 16 KB),
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

Nodes (versions, index pages, chunks) get unique keys and are never rewritten; a version that
is no longer current, and nodes it alone used, get ``expires_at`` (the grace period for readers
mid-way) and DynamoDB's TTL removes them.

Every item codec lives here, so ``adapters/cache_store`` never spells an attribute name.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from waituntil.cache_model import (
    ChunkRef,
    FreshRow,
    IndexPage,
    IndexRef,
    ListChunk,
    ListEntry,
    ListHead,
    ListOrder,
    RowBody,
    RowState,
    SyncCheckpoint,
)
from waituntil.contracts import Row, RowKey

# DynamoDB bills writes per KB; compressing large bodies cuts cost and keeps items far below
# the 400 KB item limit.
COMPRESS_OVER_BYTES = 16_384
# Room left for the item's other attributes under DynamoDB's 400 KB limit; a row body larger
# than this (after compression) goes to the blob store.
MAX_STORED_BODY_BYTES = 380_000

KIND_ROW = "row"
KIND_TOMBSTONE = "tombstone"
KIND_LIST = "list"
KIND_INDEX = "index"
KIND_CHUNK = "chunk"
KIND_SYNC = "sync"

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


def blob_object_key(table: str, etag: str) -> str:
    """Content-addressed: the same body is stored once, and a key never changes meaning."""
    return f"rows/{table}/{etag}.json"


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
    return {f"{name}_z": {"B": zlib.compress(raw, 6)}}


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


def served_chunk_json(entries: Iterable[ListEntry]) -> str:
    """A chunk as the read API serves it: a JSON array; rows kept out of line are ``null``
    here and resolved from the blob store by the reader."""
    return (
        "[" + ",".join(entry.text if entry.text is not None else "null" for entry in entries) + "]"
    )


# ----- rows ------------------------------------------------------------------------------------


def row_state_from_item(key: str, item: Item) -> RowState:
    positions = frozenset(item.get("positions", {}).get("SS", ()))
    position = tuple(json.loads(item["position"]["S"])) if "position" in item else None
    if item["kind"]["S"] != KIND_ROW:
        return RowState(
            key=key,
            body=None,
            read_at_ns=int(item["read_at_ns"]["N"]),
            position=None,
            positions=positions,
        )
    blob = item.get("blob", {}).get("S")
    text = "" if blob else decode_text(item)
    return RowState(
        key=key,
        body=RowBody(text=text, etag=item["etag"]["S"]),
        read_at_ns=int(item["read_at_ns"]["N"]),
        position=position,
        positions=positions,
        blob_key=blob,
    )


# ----- list nodes ------------------------------------------------------------------------------


def head_to_attributes(head: ListHead, read_at: str, modified_at: str) -> Item:
    pages = [
        [ref.key, list(ref.first), ref.chunk_count, ref.row_count, ref.size] for ref in head.pages
    ]
    return {
        "kind": {"S": KIND_LIST},
        "version": {"S": head.version},
        **encode_text(dump_json(pages), "pages"),
        "chunk_count": {"N": str(head.chunk_count)},
        "row_count": {"N": str(head.row_count)},
        "list_bytes": {"N": str(head.list_bytes)},
        "etag": {"S": head.etag},
        "read_at": {"S": read_at},
        "read_at_ns": {"N": str(head.read_at_ns)},
        "modified_at": {"S": modified_at},
        "modified_at_ns": {"N": str(head.modified_at_ns)},
        "complete": {"BOOL": head.complete},
    }


def head_from_item(table: str, item: Item) -> ListHead:
    pages = tuple(
        IndexRef(key=key, first=tuple(first), chunk_count=chunks, row_count=rows, size=size)
        for key, first, chunks, rows, size in json.loads(decode_text(item, "pages"))
    )
    return ListHead(
        table=table,
        version=item["version"]["S"],
        pages=pages,
        row_count=int(item["row_count"]["N"]),
        list_bytes=int(item["list_bytes"]["N"]),
        etag=item["etag"]["S"],
        read_at_ns=int(item["read_at_ns"]["N"]),
        modified_at_ns=int(item["modified_at_ns"]["N"]),
        complete=bool(item.get("complete", {}).get("BOOL", True)),
    )


def index_page_to_item(page: IndexPage) -> Item:
    refs = [[ref.key, ref.etag, list(ref.first), ref.row_count, ref.size] for ref in page.chunks]
    return {"pk": {"S": page.key}, "kind": {"S": KIND_INDEX}, **encode_text(dump_json(refs))}


def index_page_from_item(item: Item) -> IndexPage:
    refs = tuple(
        ChunkRef(key=key, etag=etag, first=tuple(first), row_count=rows, size=size)
        for key, etag, first, rows, size in json.loads(decode_text(item))
    )
    return IndexPage(key=item["pk"]["S"], chunks=refs)


def chunk_to_item(chunk: ListChunk) -> Item:
    meta = [
        [entry.key, entry.read_at_ns, list(entry.position), entry.etag, entry.blob_key]
        for entry in chunk.entries
    ]
    return {
        "pk": {"S": chunk.key},
        "kind": {"S": KIND_CHUNK},
        **encode_text(served_chunk_json(chunk.entries)),
        **encode_text(dump_json(meta), "meta"),
        "row_count": {"N": str(len(chunk.entries))},
    }


def chunk_from_item(item: Item) -> ListChunk:
    texts = _split_array(decode_text(item))
    meta = json.loads(decode_text(item, "meta"))
    entries = tuple(
        ListEntry(
            key=key,
            read_at_ns=read_at_ns,
            position=tuple(position),
            etag=etag,
            text=None if blob else text,
            blob_key=blob,
        )
        for (key, read_at_ns, position, etag, blob), text in zip(meta, texts, strict=True)
    )
    return ListChunk(key=item["pk"]["S"], entries=entries)


def served_body_of_chunk_item(item: Item) -> tuple[str, list[tuple[int, str]]]:
    """The served JSON array of a chunk item, and (index, blob key) of rows kept out of line."""
    meta = json.loads(decode_text(item, "meta")) if ("meta" in item or "meta_z" in item) else []
    blobs = [(index, entry[4]) for index, entry in enumerate(meta) if entry[4]]
    return decode_text(item), blobs


def _split_array(text: str) -> list[str]:
    """The element texts of a JSON array of rows, exactly as stored (no re-serialization)."""
    values = json.loads(text)
    return [dump_json(value) for value in values]


# ----- sync checkpoint -------------------------------------------------------------------------


def checkpoint_to_item(checkpoint: SyncCheckpoint) -> Item:
    return {
        "pk": {"S": sync_item_key(checkpoint.table)},
        "kind": {"S": KIND_SYNC},
        "sync_id": {"S": checkpoint.sync_id},
        "phase": {"S": checkpoint.phase},
        "after": {"S": dump_json(checkpoint.after)},
    }


def checkpoint_from_item(table: str, item: Item) -> SyncCheckpoint:
    return SyncCheckpoint(
        table=table,
        sync_id=item["sync_id"]["S"],
        phase=item["phase"]["S"],
        after=json.loads(item["after"]["S"]),
    )
