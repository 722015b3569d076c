"""Property: the interleaving scenario (``tests/interleavings.py``) on the real ``CacheStore``
over moto, fewer examples (slower): the store's conditions hold what the fakes assume."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples

# Imported under the name the test body had: hypothesis derives the derandomized examples of
# `make test` from the test's source, so the same examples run as before the split.
from tests.interleavings import run_scenario as _scenario


@contextmanager
def _moto_store() -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    from waituntil.adapters.cache_store import CacheStore

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="cache",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        # One worker: every write happens in the consumer's own (scheduled) thread.
        yield CacheStore("cache", client, workers=1, sleep=lambda _: None)


@pytest.mark.property
@settings(max_examples=examples(12))
@given(data=st.data())
def test_interleaved_consumers_converge_on_the_real_store_under_moto(data: st.DataObject) -> None:
    _scenario(data, _moto_store)
