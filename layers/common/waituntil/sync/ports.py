"""What the consumer's flows run on: its settings and ports, and the list shape they imply.

``sync.batch``, ``row_changes``, ``list_publish`` and ``full_sync`` all take one
``ConsumerPorts``; the handler builds it from adapters, the tests from fakes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from waituntil.cache.list_patch import ListSizes
from waituntil.cache.model import CacheStorePort, TableSource
from waituntil.core.contracts import ChangeQueue
from waituntil.core.list_order import ListOrder
from waituntil.core.settings import ConsumerSettings


class ConsumerQueue(ChangeQueue, Protocol):
    """The change queue as the consumer writes to it (now, or after a delay), and its failed
    records' visibility (``sync.retry``)."""

    def publish_later(self, body: str, delay_s: int) -> str:
        """Send one message that SQS delivers no sooner than ``delay_s`` seconds (0-900)."""
        ...

    def change_visibility(self, delays: Mapping[str, int]) -> list[str]:
        """Make received messages (receipt handle -> seconds) visible again after their delay;
        the handles that could not be changed. Never raises."""
        ...


@dataclass(frozen=True)
class ConsumerPorts:
    settings: ConsumerSettings
    source: TableSource
    store: CacheStorePort
    # a full sync's continuations, a first fill's start, a reconcile's fan-out and follow-ups
    queue: ConsumerQueue
    clock_ns: Callable[[], int] = time.time_ns
    # Set while a rebuild's own sync runs: the sync id of the version it builds apart, which
    # its pages patch instead of the served one (``sync/rebuild``).
    rebuild: str | None = None

    def list_order(self, table: str) -> ListOrder:
        return self.settings.policy(table).list_order

    def policy(self, table: str) -> str:
        """The digest of the table's policy, which the cache built now must carry."""
        return self.settings.policy(table).digest

    @property
    def list_sizes(self) -> ListSizes:
        return ListSizes(chunk_bytes=self.settings.chunk_bytes, index_refs=self.settings.index_refs)
