"""Property: the interleaving scenario (``tests/interleavings.py``) on the real ``CacheStore``
over moto, fewer examples (slower): the store's conditions hold what the fakes assume, and a
write whose answer is lost goes through botocore's own retry path (``tests.faults``)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples
from tests.faults import LostAnswers

# Imported under the name the test body had: hypothesis derives the derandomized examples of
# `make test` from the test's source, so the same examples run as before the split.
from tests.interleavings import StoreUnderTest
from tests.interleavings import run_scenario as _scenario

PATIENT_ATTEMPTS = 10  # adapters/aws.PATIENT: what botocore tries before it gives up


@contextmanager
def _moto_store() -> Iterator[Any]:
    import boto3
    from botocore.retries.standard import ExponentialBackoff
    from moto import mock_aws

    from waituntil.adapters.aws import PATIENT
    from waituntil.adapters.cache_store import CacheStore

    with mock_aws(), pytest.MonkeyPatch.context() as patch:
        # botocore waits up to a second before a resend; these resends need no waiting.
        patch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)
        client = boto3.client("dynamodb", region_name="us-east-1", config=PATIENT)
        client.create_table(
            TableName="cache",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )

        class ExpiringStore(CacheStore):
            def expire_tombstones(
                self, table: str, read_before_ns: int, keep: Collection[str] = ()
            ) -> list[str]:
                return _expire_tombstones(client, table, read_before_ns, keep)

        lost = LostAnswers(client)

        def lose_answer(fault: str, hit: Callable[[], None]) -> bool:
            """The next write applies and loses its answer: once ("resent": botocore's
            resend is answered), or on every attempt ("gave up": botocore raises)."""
            if fault == "failed":
                return False
            first: list[str] = []

            def matching(operation: str, request: dict[str, Any]) -> bool:
                body = f"{operation}:{request}"
                if first and first[0] != body:
                    return False
                first[:] = [body]
                hit()
                return True

            lost.disarm()
            lost.arm(times=1 if fault == "resent" else PATIENT_ATTEMPTS, matching=matching)
            return True

        # One worker: every write happens in the consumer's own (scheduled) thread.
        store = ExpiringStore("cache", client, workers=1, sleep=lambda _: None)
        yield StoreUnderTest(store, lose_answer)


def _expire_tombstones(
    client: Any, table: str, read_before_ns: int, keep: Collection[str]
) -> list[str]:
    """DynamoDB's TTL, on demand (moto never expires items): tombstones of reads before
    ``read_before_ns`` vanish, but those of the ``keep`` keys."""
    prefix = f"/{table}/"
    items = client.scan(
        TableName="cache",
        FilterExpression=(
            "#kind = :tombstone AND #read_at_ns < :before AND begins_with(pk, :prefix)"
        ),
        ExpressionAttributeNames={"#kind": "kind", "#read_at_ns": "read_at_ns"},
        ExpressionAttributeValues={
            ":tombstone": {"S": "tombstone"},
            ":before": {"N": str(read_before_ns)},
            ":prefix": {"S": prefix},
        },
    )["Items"]
    gone = [item for item in items if item["pk"]["S"][len(prefix) :] not in keep]
    for item in gone:
        client.delete_item(TableName="cache", Key={"pk": item["pk"]})
    return [item["pk"]["S"][len(prefix) :] for item in gone]


@pytest.mark.property
@settings(max_examples=examples(12))
@given(data=st.data())
def test_interleaved_consumers_converge_on_the_real_store_under_moto(data: st.DataObject) -> None:
    _scenario(data, _moto_store)
