"""Property: the interleaving scenario (``tests/interleavings.py``) on in-memory fakes of the
ports, many examples: consumers interleaved at every port call and killed anywhere converge."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples
from tests.fakes import MemoryStore

# Imported under the name the test body had: hypothesis derives the derandomized examples of
# `make test` from the test's source, so the same examples run as before the split.
from tests.interleavings import run_scenario as _scenario


@contextmanager
def _memory_store() -> Iterator[Any]:
    yield MemoryStore()


@pytest.mark.property
@settings(max_examples=examples(150))
@given(data=st.data())
def test_interleaved_consumers_converge_on_fakes(data: st.DataObject) -> None:
    _scenario(data, _memory_store)
