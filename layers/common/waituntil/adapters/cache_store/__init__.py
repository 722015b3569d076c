"""The DynamoDB cache: I/O, conditions and retries only (layout: ``waituntil.cache.layout``,
item codecs: ``waituntil.cache.items``), one module per job:

- ``table``: the client, conditional-write errors, batch loops and thread pool they share;
- ``rows``: row items (conditional on read time), tombstones, bodies in S3;
- ``lists``: the list's nodes, the head switch, retirements, publishes in flight;
- ``records``: sync checkpoints, leases, the reconciler's state and fingerprints.

Every write here is safe to apply twice, because botocore resends a request whose answer was
lost (a 500, a reset connection, a read timeout) although the first one may have applied;
each module says how its writes are.
"""

from __future__ import annotations

from waituntil.adapters.cache_store.lists import ListNodes
from waituntil.adapters.cache_store.records import SyncRecords
from waituntil.adapters.cache_store.rows import RowItems
from waituntil.adapters.cache_store.table import NODE_CACHE_BYTES, WRITE_WORKERS, BlobStore

__all__ = ["NODE_CACHE_BYTES", "WRITE_WORKERS", "BlobStore", "CacheStore"]


class CacheStore(RowItems, ListNodes, SyncRecords):
    """The whole cache, as the consumer, the reader and ops use it (``CacheStorePort``)."""
