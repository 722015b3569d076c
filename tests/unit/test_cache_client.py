"""The cache client against a fake store: the one retry both readers of a list share."""

from __future__ import annotations

import pytest

from tests.read_fakes import FakeStore, manifest
from waituntil.cache.model import ListHead
from waituntil.core.errors import DependencyUnavailable
from waituntil.read.cache_client import LIST_READ_ATTEMPTS, get_list, read_current_version


def test_a_version_retired_mid_read_is_read_again_from_the_head() -> None:
    # Given the head names v1, but v1's chunk is gone by the time it is read; then v2 is current
    store = FakeStore(
        manifests=[manifest("v1", 1), manifest("v2", 1, etag="f" * 32)],
        chunks={("v2", 0): '[{"id": 2}]'},
    )
    # When the whole list is read
    rows = get_list(store, "articles")
    # Then it comes whole from v2: one retry, no mix of the two versions
    assert rows == [{"id": 2}]


def test_a_list_that_keeps_changing_is_given_up_after_its_attempts() -> None:
    # Given a head that names a new version at every read, each retired before it is read
    store = FakeStore(manifests=[manifest(f"v{n}", 1) for n in range(LIST_READ_ATTEMPTS + 1)])
    seen: list[str] = []

    def read(head: ListHead) -> str | None:
        seen.append(head.version)
        return None

    # When the current version is read / Then the helper gives up, having tried each attempt once
    with pytest.raises(DependencyUnavailable, match="kept changing"):
        read_current_version(store, "articles", read)
    assert seen == [f"v{n}" for n in range(LIST_READ_ATTEMPTS)]


def test_a_table_without_a_list_is_none_and_nothing_is_read() -> None:
    # Given a store with no head for the table
    store = FakeStore()
    seen: list[ListHead] = []
    # When the current version is read / Then there is none, and ``read`` never ran
    assert read_current_version(store, "articles", lambda head: seen.append(head)) is None
    assert seen == []
