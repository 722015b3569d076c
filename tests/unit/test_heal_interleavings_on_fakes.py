"""Property: the reconciler among consumers (``tests/interleavings.py`` with ``heal=True``) on
in-memory fakes, many examples: webhooks dropped at random, reconcile cycles, fills and consumers
interleaved at every port call and killed anywhere; once quiet, reconcile cycles alone make the
cache equal the table, and no published version breaks I2-I6 meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples
from tests.fakes import MemoryStore
from tests.interleavings import run_scenario


@contextmanager
def _memory_store() -> Iterator[Any]:
    yield MemoryStore()


@pytest.mark.property
@settings(max_examples=examples(120))
@given(data=st.data())
def test_the_reconciler_among_consumers_heals_every_lost_webhook_on_fakes(
    data: st.DataObject,
) -> None:
    run_scenario(data, _memory_store, heal=True)
