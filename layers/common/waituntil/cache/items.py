"""One codec per item kind of the cache table: the model (``cache.model``) <-> DynamoDB items.

Keys, kinds and text encodings are ``cache.layout``'s; with both, ``adapters/cache_store`` never
spells an attribute name.
"""

from __future__ import annotations

import json

from waituntil.cache.layout import (
    BLOB_UNCLAIMED,
    KIND_CHUNK,
    KIND_FINGERPRINT,
    KIND_HEAL,
    KIND_INDEX,
    KIND_LEASE,
    KIND_LIST,
    KIND_ROW,
    KIND_SYNC,
    Item,
    decode_text,
    dump_json,
    encode_text,
    fingerprint_item_key,
    heal_item_key,
    lease_item_key,
    served_chunk_json,
    sync_item_key,
)
from waituntil.cache.model import (
    ChunkRef,
    FillJournal,
    FreshRow,
    HealState,
    IndexPage,
    IndexRef,
    ListChunk,
    ListEntry,
    ListHead,
    PublishAttempt,
    Retiring,
    RowBody,
    RowState,
    SyncCheckpoint,
    position_tag,
)

# ----- rows ------------------------------------------------------------------------------------


def row_state_from_item(key: str, item: Item) -> RowState:
    positions = frozenset(item.get("positions", {}).get("SS", ()))
    position = tuple(json.loads(item["position"]["S"])) if "position" in item else None
    policy = item.get("policy", {}).get("S", "")
    if item["kind"]["S"] != KIND_ROW:
        return RowState(
            key=key,
            body=None,
            read_at_ns=int(item["read_at_ns"]["N"]),
            position=None,
            positions=positions,
            policy=policy,
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
        blob_unclaimed=BLOB_UNCLAIMED in item,
        blob_bytes=int(item["blob_bytes"]["N"]) if blob and "blob_bytes" in item else 0,
        policy=policy,
    )


# ----- list nodes ------------------------------------------------------------------------------


def head_to_attributes(head: ListHead, read_at: str, modified_at: str) -> Item:
    """A version's attributes, as the head item and its frozen copy hold them (``retiring``
    goes on the head item only: ``retiring_to_attributes``)."""
    pages = [
        [ref.key, list(ref.first), ref.chunk_count, ref.row_count, ref.size] for ref in head.pages
    ]
    rebuild: Item = {"rebuild": {"S": head.rebuild}} if head.rebuild else {}
    return {
        **rebuild,
        "policy": {"S": head.policy},
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
        policy=item.get("policy", {}).get("S", ""),
        rebuild=item.get("rebuild", {}).get("S"),
        retiring=retiring_from_item(item),
    )


def retiring_to_attributes(retiring: Retiring | None) -> Item:
    if retiring is None:
        return {}
    lists = [list(retiring.chunks), list(retiring.pages), list(retiring.versions)]
    return encode_text(dump_json([*lists, list(retiring.trees)]), "retiring")


def retiring_from_item(item: Item) -> Retiring | None:
    if "retiring" not in item and "retiring_z" not in item:
        return None
    chunks, pages, versions, trees = json.loads(decode_text(item, "retiring"))
    return Retiring(
        chunks=tuple(chunks), pages=tuple(pages), versions=tuple(versions), trees=tuple(trees)
    )


# ----- publishes in flight ---------------------------------------------------------------------


def attempt_to_text(attempt: PublishAttempt) -> str:
    return dump_json([attempt.version, list(attempt.chunks), list(attempt.pages)])


def attempts_from_item(item: Item | None) -> list[PublishAttempt]:
    attempts = []
    for text in sorted((item or {}).get("attempts", {}).get("SS", ())):
        version, chunks, pages = json.loads(text)
        attempts.append(PublishAttempt(version=version, chunks=tuple(chunks), pages=tuple(pages)))
    return attempts


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
        [
            entry.key,
            entry.read_at_ns,
            list(entry.position),
            entry.etag,
            entry.blob_key,
            *([entry.blob_bytes] if entry.blob_key else []),
        ]
        for entry in chunk.entries
    ]
    return {
        "pk": {"S": chunk.key},
        "kind": {"S": KIND_CHUNK},
        **encode_text(served_chunk_json(chunk.entries)),
        **encode_text(dump_json(meta), "meta"),
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
            blob_bytes=int(rest[0]) if rest else 0,
        )
        for (key, read_at_ns, position, etag, blob, *rest), text in zip(meta, texts, strict=True)
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
        "mode": {"S": checkpoint.mode},
    }


def checkpoint_from_item(table: str, item: Item) -> SyncCheckpoint:
    return SyncCheckpoint(
        table=table,
        sync_id=item["sync_id"]["S"],
        phase=item["phase"]["S"],
        after=json.loads(item["after"]["S"]),
        mode=item.get("mode", {}).get("S", ""),
    )


# ----- a first fill's journal and its batched row puts -------------------------------------------


def journal_tag(key: str, tag: str) -> str:
    """One position tag a change published while no fill owned the journal, with its key."""
    return dump_json([key, tag])


def journal_from_item(item: Item) -> FillJournal:
    tags: dict[str, set[str]] = {}
    for entry in item.get("tags", {}).get("SS", ()):
        key, tag = json.loads(entry)
        tags.setdefault(key, set()).add(tag)
    return FillJournal(
        keys=frozenset(item.get("keys", {}).get("SS", ())),
        tags={key: frozenset(found) for key, found in tags.items()},
        owner=item.get("owner", {}).get("S"),
        joined=item.get("joined", {}).get("S"),
        overflowed=item.get("overflowed", {}).get("BOOL", False),
        blocked=item.get("blocked", {}).get("BOOL", False),
    )


def put_row_item(
    pk: str,
    row: FreshRow,
    stored: Item,
    read_at_ns: int,
    read_at: str,
    policy: str,
    tags: frozenset[str],
) -> Item:
    """A live row's whole item, as a first fill puts it: exactly what a conditional write
    leaves on an item that had none (``adapters/cache_store/rows``), plus ``tags``. ``stored``:
    its body as ``encode_text`` stores it."""
    assert row.body is not None and row.position is not None
    return {
        "pk": {"S": pk},
        "kind": {"S": KIND_ROW},
        **stored,
        "etag": {"S": row.body.etag},
        "position": {"S": dump_json(list(row.position))},
        "read_at": {"S": read_at},
        "read_at_ns": {"N": str(read_at_ns)},
        "policy": {"S": policy},
        "positions": {"SS": sorted({position_tag(read_at_ns, row.position), *tags})},
    }


# ----- leases and the reconciler's state -------------------------------------------------------

# A lease's condition: free, expired, or already this owner's (a resend renews its own lease).
LEASE_CONDITION = "attribute_not_exists(pk) OR expires_at <= :now OR #owner = :owner"


def lease_to_item(table: str, kind: str, owner: str, expires_at: int) -> Item:
    # ``expires_at`` is also the table's TTL attribute: DynamoDB removes a dead lease by itself.
    return {
        "pk": {"S": lease_item_key(table, kind)},
        "kind": {"S": KIND_LEASE},
        "owner": {"S": owner},
        "expires_at": {"N": str(expires_at)},
    }


def lease_condition_values(owner: str, now: int) -> tuple[dict[str, str], Item]:
    """The names and values ``LEASE_CONDITION`` uses."""
    return {"#owner": "owner"}, {":now": {"N": str(now)}, ":owner": {"S": owner}}


def lease_owner_from_item(item: Item, now: float) -> str | None:
    if int(item["expires_at"]["N"]) <= now:
        return None
    return str(item["owner"]["S"])


def heal_state_to_item(state: HealState) -> Item:
    item: Item = {
        "pk": {"S": heal_item_key(state.table)},
        "kind": {"S": KIND_HEAL},
        "column_checked_ns": {"N": str(state.column_checked_ns)},
        "last_ok_ns": {"N": str(state.last_ok_ns)},
        "healed_total": {"N": str(state.healed_total)},
    }
    if state.scan_from is not None:
        item["scan_from"] = {"S": state.scan_from}
    if state.scan_after is not None:
        item["scan_after"] = {"S": state.scan_after}
    if state.change_column is not None:
        item["change_column"] = {"S": state.change_column}
    if state.print_version is not None:
        item["print_version"] = {"S": state.print_version}
        item["print_count"] = {"N": str(state.print_count)}
        item["print_fp"] = {"N": str(state.print_fp)}
    if state.pending:
        item["pending"] = {"L": [{"S": key} for key in state.pending]}
    return item


def heal_state_from_item(table: str, item: Item) -> HealState:
    return HealState(
        table=table,
        scan_from=item.get("scan_from", {}).get("S"),
        scan_after=item.get("scan_after", {}).get("S"),
        change_column=item.get("change_column", {}).get("S"),
        column_checked_ns=int(item.get("column_checked_ns", {}).get("N", "0")),
        last_ok_ns=int(item.get("last_ok_ns", {}).get("N", "0")),
        healed_total=int(item.get("healed_total", {}).get("N", "0")),
        print_version=item.get("print_version", {}).get("S"),
        print_count=int(item.get("print_count", {}).get("N", "0")),
        print_fp=int(item.get("print_fp", {}).get("N", "0")),
        pending=tuple(value["S"] for value in item.get("pending", {}).get("L", [])),
    )


def fingerprint_to_item(node_key: str, count: int, fingerprint: int, expires_at: int) -> Item:
    return {
        "pk": {"S": fingerprint_item_key(node_key)},
        "kind": {"S": KIND_FINGERPRINT},
        "row_count": {"N": str(count)},
        "fp": {"N": str(fingerprint)},
        "expires_at": {"N": str(expires_at)},
    }


def fingerprint_from_item(item: Item) -> tuple[int, int]:
    return int(item["row_count"]["N"]), int(item["fp"]["N"])
