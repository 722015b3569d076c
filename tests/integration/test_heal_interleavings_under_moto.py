"""Property: the reconciler among consumers (``tests/interleavings.py`` with ``heal=True``) on
the real ``CacheStore`` over moto, fewer examples (slower): its leases and state items hold
what the fakes assume."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples
from tests.integration.test_interleavings_under_moto import _moto_store
from tests.interleavings import run_scenario


@pytest.mark.property
@settings(max_examples=examples(10))
@given(data=st.data())
def test_the_reconciler_among_consumers_heals_every_lost_webhook_under_moto(
    data: st.DataObject,
) -> None:
    run_scenario(data, _moto_store, heal=True)
