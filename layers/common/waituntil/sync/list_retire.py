"""Retiring list nodes no version uses any more: a switched version's predecessor, the nodes of
a publish that lost its race, and what a killed publish left behind (the sweep).

One rule for all three: a node is never deleted, it is given the grace period
(``CacheStore.retire``: an expiry, kept if one is set already), and only once no head reaches
it. A version's readers mid-way keep their nodes for that period; a node some head reaches is
never touched. So no lost answer, kill or race can make a head point at a node that is gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aws_lambda_powertools.metrics import MetricUnit

from waituntil.cache.list_patch import locate
from waituntil.cache.model import CacheStorePort, IndexPage, ListChunk, ListHead, PublishAttempt
from waituntil.core.list_order import ListOrder
from waituntil.core.observability import logger, metrics


def retire_replaced(store: CacheStorePort, head: ListHead) -> None:
    """Give what ``head`` replaced (``head.retiring``) the grace period, then clear it.

    Idempotent, and safe for anyone to run: what a version replaced is reached by neither it
    nor any version built on it. Trees (a promotion replaces a whole version) are walked first
    and their frozen version last, so an interrupted run leaves the walk possible again.
    """
    retiring = head.retiring
    if retiring is None:
        return
    if retiring.trees:
        keep = reachable_keys(store, [head])
        for version in retiring.trees:
            _retire_tree(store, head.table, version, keep)
    versions = list(retiring.versions)
    # A patch replaces one version and walks no tree: its nodes and that version expire in
    # one step (in parallel). A tree's version goes last, after the nodes found through it.
    together = versions.pop() if len(versions) == 1 and not retiring.trees else None
    store.retire(head.table, retiring.chunks, retiring.pages, together)
    for version in versions:
        store.retire(head.table, (), (), version)
    store.clear_retiring(head)


def _retire_tree(store: CacheStorePort, table: str, version: str, keep: set[str]) -> None:
    old = store.get_version(table, version)
    if old is None:
        return  # already expiring: its nodes were retired before it
    for ref in old.pages:
        page = store.get_index_page(ref.key)
        if page is None:
            continue  # expiring: its chunks were retired before it
        chunks = [chunk.key for chunk in page.chunks if chunk.key not in keep]
        store.retire(table, chunks, [ref.key] if ref.key not in keep else [], None)


def release_lost(
    store: CacheStorePort,
    attempt: PublishAttempt,
    chunks: Sequence[ListChunk],
    table: str,
    order: ListOrder,
    policy: str,
) -> None:
    """The nodes of a publish whose switch did not apply: retire those no head reaches.

    The switch proved it did not apply, so no head should reach them; each is still looked up
    in the heads (its index page located by its first row), so that no proof, however sound,
    is ever the only thing between a head and a vanished node.
    """
    heads = [head for head in _heads(store, table) if head.policy == policy]
    firsts = {chunk.key: chunk.entries[0].position for chunk in chunks if chunk.entries}
    reached: set[str] = set()
    for head in heads:
        reached |= {ref.key for ref in head.pages} & set(attempt.pages)
        pages: dict[int, IndexPage | None] = {}
        for key in attempt.chunks:
            if key not in firsts or not head.pages:
                continue
            number = locate([ref.first for ref in head.pages], firsts[key], order)
            if number not in pages:
                pages[number] = store.get_index_page(head.pages[number].key)
            page = pages[number]
            if page is None or key in {ref.key for ref in page.chunks}:
                reached.add(key)  # unknown (expiring page) counts as reached: the sweep decides
    store.retire(
        table,
        [key for key in attempt.chunks if key not in reached],
        [key for key in attempt.pages if key not in reached],
        None,
    )


def sweep_orphans(store: CacheStorePort, table: str, now_ns: int, age_s: int) -> int:
    """Settle what killed publishes left: nodes no head reaches get the grace period.

    Publishes register their nodes before writing them (``PublishAttempt``); one older than
    ``age_s`` cannot switch any more (no invocation outlives it), so the heads read now say
    for good which of its nodes are used. Heads whose predecessor was never retired (a kill
    between the switch and the retirement) are retired too. Returns the nodes given a grace
    period.
    """
    # The rebuilt head first: a promotion between the two reads moves its nodes to the served
    # head, which is read after, so no node is ever missed in both.
    heads = _heads(store, table)
    for head in heads:
        retire_replaced(store, head)
    old = [
        attempt
        for attempt in store.get_attempts(table)
        if now_ns - attempt.started_ns >= age_s * 1_000_000_000
    ]
    if not old:
        return 0
    keep = reachable_keys(store, heads)
    expired = 0
    for attempt in old:
        chunks = [key for key in attempt.chunks if key not in keep]
        pages = [key for key in attempt.pages if key not in keep]
        store.retire(table, chunks, pages, None)
        store.end_attempt(table, attempt)
        expired += len(chunks) + len(pages)
    if expired:
        metrics.add_metric(name="OrphanNodesRetired", unit=MetricUnit.Count, value=expired)
        logger.info("orphaned list nodes retired", extra={"table": table, "nodes": expired})
    return expired


def reachable_keys(store: CacheStorePort, heads: Iterable[ListHead]) -> set[str]:
    """Every node key ``heads`` reach (their index pages and chunks)."""
    keys: set[str] = set()
    for head in heads:
        for ref in head.pages:
            keys.add(ref.key)
            page = store.get_index_page(ref.key)
            if page is not None:
                keys |= {chunk.key for chunk in page.chunks}
    return keys


def _heads(store: CacheStorePort, table: str) -> list[ListHead]:
    rebuilt = store.get_next_head(table)
    served = store.get_head(table)
    return [head for head in (rebuilt, served) if head is not None]
