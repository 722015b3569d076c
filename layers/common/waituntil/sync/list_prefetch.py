"""What a change's publish needs before its switch, begun beside the calls it waits on anyway:
the list nodes its patch will load, and the retirement its heads still carry.

A patch loads, in each head it patches, the index page and the chunk that hold each touched
row's old position and its new one (``list_patch.candidate_positions``), one after the other:
the page says which chunk. Nodes never change (unique keys), so a node read for a head is the
stored one for as long as any head reaches it, and can be read as soon as that head is known,
long before the plan. So a change's publish reads them:

- while Supabase answers, at the positions its message gives (a key-ordered list: the key; a
  column-ordered one: the webhook's ``record`` and ``old_record``, when they were kept);
- while its row writes are in flight, at the positions Supabase's rows give that were not read
  yet (a message without bodies, a row that changed since).

A read ahead is only ever a guess of which nodes: the plan still locates every node itself,
and reads what the guess missed (a row that moved, a head switched meanwhile), as it would
have without it. A read ahead that fails is dropped the same way.

A change's publish leaves what its switch replaced on the new head (``ListHead.retiring``)
rather than retiring it after the switch: the next change retires it here, while Supabase
answers, so neither waits on it. Nothing may be switched from a head before what it carries
is retired (the head item is the only record of it), so the publish learns which heads were
finished here (``settled``) and retires any other itself first, as every publish does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from waituntil.cache.list_patch import nodes_holding
from waituntil.cache.model import CacheStorePort, IndexPage, ListChunk, ListHead
from waituntil.core.contracts import Change
from waituntil.core.errors import DependencyUnavailable
from waituntil.core.list_order import ListOrder, Position
from waituntil.sync.list_retire import retire_replaced

Nodes = dict[str, IndexPage | ListChunk]


def hinted_positions(changes: Iterable[Change], order: ListOrder) -> list[Position]:
    """Where the changed rows were and are, as far as the messages say (a guess)."""
    positions: list[Position] = []
    for change in changes:
        if order.by_key:
            positions += [(key,) for key in (change.key, change.old_key) if key is not None]
            continue
        for row in (change.record, change.old_record):
            if row is not None and order.primary_key in row:
                positions.append(order.position(row))
    return list(dict.fromkeys(positions))


class ReadAhead:
    """One change's reads ahead: its heads' retirement finished, and list nodes read, each
    begun beside other calls (the store's ``start``)."""

    def __init__(
        self,
        store: CacheStorePort,
        order: ListOrder,
        policy: str,
        heads: Callable[[], tuple[ListHead | None, ListHead | None]],
    ) -> None:
        self._store = store
        self._order = order
        self._policy = policy
        self._heads = heads  # the heads the publish starts from (``start_get_heads``)
        self._settling = store.start(self._settle)
        self._pending: Callable[[], Nodes] = dict

    def settled(self) -> frozenset[str]:
        """The versions of the heads whose retirement is done (``ReadBefore.settled``)."""
        return self._settling()

    def _settle(self) -> frozenset[str]:
        try:
            served, rebuilt = self._heads()
        except DependencyUnavailable:
            return frozenset()  # the change fails on its own reading of the heads
        settled: set[str] = set()
        for head in (rebuilt, served):
            if head is None:
                continue
            try:
                retire_replaced(self._store, head)
            except DependencyUnavailable:
                continue  # the publish retires it itself before switching from it
            settled.add(head.version)
        return frozenset(settled)

    def read(self, positions: Sequence[Position]) -> None:
        """Begin reading the nodes at ``positions`` that earlier reads did not find."""
        if not positions:
            return
        before = self._pending

        def work() -> Nodes:
            known = before()
            try:
                return nodes_holding(self._store, self._patched(), positions, self._order, known)
            except DependencyUnavailable:
                return known  # the plan reads what it needs itself, and fails there if it must

        self._pending = self._store.start(work)

    def nodes(self) -> Nodes:
        """Every node read ahead, once the reads begun have answered."""
        return self._pending()

    def _patched(self) -> list[ListHead]:
        """The heads a publish patches: a rebuild's version built apart, and the served one,
        each only if built with the policy in force (``list_publish.publish_rows``)."""
        served, rebuilt = self._heads()
        heads = [rebuilt] if rebuilt is not None and rebuilt.rebuild else []
        heads += [served] if served is not None else []
        return [head for head in heads if head.policy == self._policy]


class KnownNodes:
    """A patch's node reads: those read ahead first, the store for the rest."""

    def __init__(self, nodes: Mapping[str, IndexPage | ListChunk], store: CacheStorePort) -> None:
        self._nodes = nodes
        self._store = store

    def get_index_page(self, key: str) -> IndexPage | None:
        node = self._nodes.get(key)
        return node if isinstance(node, IndexPage) else self._store.get_index_page(key)

    def get_chunk(self, key: str) -> ListChunk | None:
        node = self._nodes.get(key)
        return node if isinstance(node, ListChunk) else self._store.get_chunk(key)
