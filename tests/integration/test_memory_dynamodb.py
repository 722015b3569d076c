"""The benchmarks' in-process DynamoDB (``bench/memory_dynamodb.py``) against moto: the same
requests, the same answers and the same items, so that a benchmark on it measures the code
path the cache takes on DynamoDB."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from bench.memory_dynamodb import MemoryDynamoDB
from tests.conftest import EmulatedAws
from waituntil.adapters.cache_store import CacheStore
from waituntil.cache.layout import fresh_rows
from waituntil.cache.list_patch import ListSizes
from waituntil.cache.model import FreshRow
from waituntil.core.list_order import ListOrder
from waituntil.sync.list_publish import publish_list

ORDER = ListOrder("id")
NOW = 1_800_000_000.0


def _rows(keys: range, revision: int) -> list[dict[str, Any]]:
    return [{"id": key, "title": f"row {key}", "revision": revision} for key in keys]


def _history(store: CacheStore) -> None:
    """A consumer's life in small: a fill, a patch, a stale write, a delete, a lost race, a
    retirement, a checkpoint."""
    keys = [str(key) for key in range(1, 41)]
    store.write_rows(
        "t", fresh_rows(keys, _rows(range(1, 41), 0), ORDER), read_at_ns=10, order=ORDER
    )
    sizes = ListSizes(chunk_bytes=1024, index_refs=4)
    publish_list(store, "t", keys, order=ORDER, sizes=sizes, clock_ns=lambda: 10, complete=True)
    store.write_rows(
        "t", fresh_rows(["3"], _rows(range(3, 4), 1), ORDER), read_at_ns=20, order=ORDER
    )
    stale = store.write_rows(
        "t", fresh_rows(["3"], _rows(range(3, 4), 9), ORDER), read_at_ns=15, order=ORDER
    )
    assert stale.skipped_stale == 1
    store.write_rows("t", [FreshRow(key="7", body=None, position=None)], read_at_ns=20, order=ORDER)
    publish_list(store, "t", ["3", "7"], order=ORDER, sizes=sizes, clock_ns=lambda: 20)
    head = store.get_head("t")
    assert head is not None
    # A rival publisher's version, switched as if there were no head: this race is lost (the
    # same version again would be the switch's own resend, which answers that it applied)
    assert not store.flip_head(replace(head, version="30-0000000000ff"), base=None)


@pytest.fixture
def memory() -> Any:
    service = MemoryDynamoDB()
    yield service
    service.close()


def _memory_client(memory: MemoryDynamoDB) -> Any:
    client = boto3.client("dynamodb")
    memory.attach(client)
    return client


def _deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    # Node keys carry a random nonce: make both runs draw the same ones.
    counter = itertools.count()
    monkeypatch.setattr(
        "waituntil.sync.list_publish.secrets.token_hex", lambda n: f"{next(counter):0{2 * n}x}"
    )


def test_the_cache_stores_the_same_items_on_both(
    aws: EmulatedAws, memory: MemoryDynamoDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the same history of cache writes, once on moto and once on the memory service
    table = aws.stack.table_name
    stores: list[tuple[Any, Callable[[], list[dict[str, Any]]]]] = [
        (aws.dynamodb, lambda: aws.dynamodb.scan(TableName=table)["Items"]),
        (_memory_client(memory), lambda: [item for _, item in memory.items(table)]),
    ]
    found = []
    for client, scan in stores:
        _deterministic(monkeypatch)
        # When the history runs
        _history(CacheStore(table, client, sleep=lambda _: None, clock=lambda: NOW, workers=1))
        found.append(_comparable(client, scan()))
    # Then both hold exactly the same items, attribute for attribute
    on_moto, on_memory = found
    assert len(on_moto) > 20
    assert on_memory == on_moto


def _comparable(client: Any, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Items by key, in botocore's parsed form (bytes for B), sets sorted."""
    parsed: dict[str, Any] = {}
    for item in items:
        if any(isinstance(value.get("B"), str) for value in item.values()):
            item = _parse_wire(client, item)
        parsed[item["pk"]["S"]] = {
            name: ({kind: sorted(raw)} if kind in ("SS", "NS") else {kind: raw})
            for name, value in item.items()
            for kind, raw in value.items()
        }
    return parsed


def _parse_wire(client: Any, item: dict[str, Any]) -> dict[str, Any]:
    import base64

    return {
        name: {"B": base64.b64decode(value["B"])} if "B" in value else value
        for name, value in item.items()
    }


@pytest.mark.parametrize(
    "request_",
    [
        {  # a conditional write that fails, asking for the item
            "operation": "put_item",
            "Item": {"pk": {"S": "a"}, "v": {"N": "2"}},
            "ConditionExpression": "attribute_not_exists(pk) OR #v < :v",
            "ExpressionAttributeNames": {"#v": "v"},
            "ExpressionAttributeValues": {":v": {"N": "1"}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        },
        {  # an update that returns what it changed
            "operation": "update_item",
            "Key": {"pk": {"S": "a"}},
            "UpdateExpression": "SET #v = :v, w = if_not_exists(w, :v) ADD s :s REMOVE x",
            "ExpressionAttributeNames": {"#v": "v"},
            "ExpressionAttributeValues": {":v": {"N": "3"}, ":s": {"SS": ["q"]}},
            "ReturnValues": "UPDATED_OLD",
        },
        {  # an update of an item that is not there, returning all of the new one
            "operation": "update_item",
            "Key": {"pk": {"S": "new"}},
            "UpdateExpression": "SET n = :n",
            "ExpressionAttributeValues": {":n": {"N": "1"}},
            "ReturnValues": "ALL_NEW",
        },
        {  # a transaction whose condition fails
            "operation": "transact_write_items",
            "TransactItems": [
                {"Put": {"Item": {"pk": {"S": "b"}}}},
                {
                    "ConditionCheck": {
                        "Key": {"pk": {"S": "a"}},
                        "ConditionExpression": "v = :nine",
                        "ExpressionAttributeValues": {":nine": {"N": "9"}},
                    }
                },
            ],
        },
    ],
)
def test_answers_and_refusals_are_moto_s(
    aws: EmulatedAws, memory: MemoryDynamoDB, request_: dict[str, Any]
) -> None:
    # Given the same item on both
    table = aws.stack.table_name
    answers = []
    for client in (aws.dynamodb, _memory_client(memory)):
        client.put_item(
            TableName=table, Item={"pk": {"S": "a"}, "v": {"N": "1"}, "x": {"S": "gone"}}
        )
        # When the same request is made
        arguments = {k: v for k, v in request_.items() if k != "operation"}
        if "TransactItems" in arguments:
            for entry in arguments["TransactItems"]:
                next(iter(entry.values()))["TableName"] = table
        else:
            arguments["TableName"] = table
        try:
            answer: Any = getattr(client, request_["operation"])(**arguments)
            # moto adds ConsumedCapacity unasked (DynamoDB returns it when asked only).
            unasked = ("ResponseMetadata", "ConsumedCapacity")
            outcome = {k: v for k, v in answer.items() if k not in unasked}
        except ClientError as error:
            refusal: Any = error.response
            outcome = {
                "error": refusal["Error"]["Code"],
                "Item": refusal.get("Item"),
                "reasons": [r["Code"] for r in refusal.get("CancellationReasons", [])],
            }
        items = client.get_item(TableName=table, Key={"pk": {"S": "a"}}, ConsistentRead=True)
        answers.append((outcome, items.get("Item")))
    # Then the answers, and what the item became, are the same
    assert answers[1] == answers[0]
