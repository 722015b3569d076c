"""The read side's port in memory: a ``ServingReads`` whose heads change between reads, and
a sample list version to pin with cursors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from waituntil.cache.model import ChunkRef, IndexPage, IndexRef, ListHead, RowState, ServedChunk
from waituntil.core.table_policy import TablePolicy
from waituntil.read.cursor import ListVersion

# What the cache carries for a table under the default policy (the reader serves only that).
POLICY = TablePolicy().fingerprint

MODIFIED = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
VERSION = ListVersion(
    table="articles",
    version="1796000000000000000-0123456789ab",
    pages=3,
    row_count=25,
    etag="0123456789abcdef0123456789abcdef",
    modified_at=MODIFIED,
)


def manifest(version: str, chunks: int, etag: str = "e" * 32) -> ListHead:
    """A head of ``chunks`` one-row chunks in one index page (node keys derive from the
    version, so the fake store can serve them)."""
    return ListHead(
        table="articles",
        version=version,
        pages=(
            IndexRef(key=f"{version}#i", first=(1,), chunk_count=chunks, row_count=chunks, size=10),
        ),
        row_count=chunks,
        list_bytes=10,
        etag=etag,
        read_at_ns=1,
        modified_at_ns=1_795_867_200_000_000_000,  # 2026-11-28T12:00:00Z
        policy=POLICY,
    )


@dataclass
class FakeStore:
    """Serves heads in turn (one per get_head call), frozen versions, and whichever chunks
    exist ((version, index) -> served JSON)."""

    manifests: list[ListHead] = field(default_factory=list)
    chunks: dict[tuple[str, int], str] = field(default_factory=dict)
    rows: dict[str, tuple[RowState, str]] = field(default_factory=dict)
    versions: dict[str, ListHead] = field(default_factory=dict)
    reads: int = 0

    def get_row_body(self, table: str, key: str) -> tuple[RowState, str] | None:
        self.reads += 1
        return self.rows.get(key)

    def get_head(self, table: str) -> ListHead | None:
        self.reads += 1
        if not self.manifests:
            return None
        head = self.manifests.pop(0) if len(self.manifests) > 1 else self.manifests[0]
        self.versions.setdefault(head.version, head)
        return head

    def get_version(self, table: str, version: str) -> ListHead | None:
        self.reads += 1
        return self.versions.get(version)

    def get_index_page(self, key: str) -> IndexPage | None:
        self.reads += 1
        version = key.removesuffix("#i")
        head = self.versions.get(version)
        count = head.chunk_count if head else 0
        refs = tuple(
            ChunkRef(key=f"{version}#c{n}", etag=f"c{n}", first=(n,), row_count=1, size=3)
            for n in range(count)
        )
        return IndexPage(key=key, chunks=refs)

    def get_served_chunk(self, key: str) -> ServedChunk | None:
        self.reads += 1
        version, _, index = key.rpartition("#c")
        body = self.chunks.get((version, int(index)))
        return None if body is None else ServedChunk(key=key, body=body)
