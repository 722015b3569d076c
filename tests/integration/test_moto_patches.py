"""The local stack's moto patch (``local/moto_patches.py``): a cancelled transaction still
changes nothing, as DynamoDB's does, though moto no longer copies whole tables for it."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.conftest import EmulatedAws


def _item(aws: EmulatedAws, key: str) -> dict[str, object] | None:
    item: dict[str, object] | None = aws.dynamodb.get_item(
        TableName=aws.stack.table_name, Key={"pk": {"S": key}}
    ).get("Item")
    return item


def test_a_cancelled_transaction_leaves_every_item_as_it_was(aws: EmulatedAws) -> None:
    # Given two items
    table = aws.stack.table_name
    for key in ("/a", "/b"):
        aws.dynamodb.put_item(TableName=table, Item={"pk": {"S": key}, "v": {"S": "before"}})
    # When a transaction puts one, updates the other, deletes and creates more, but its last
    # condition fails
    with pytest.raises(ClientError) as cancelled:
        aws.dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {"pk": {"S": "/a"}, "v": {"S": "after"}}}},
                {
                    "Update": {
                        "TableName": table,
                        "Key": {"pk": {"S": "/b"}},
                        "UpdateExpression": "SET v = :v",
                        "ExpressionAttributeValues": {":v": {"S": "after"}},
                    }
                },
                {"Put": {"TableName": table, "Item": {"pk": {"S": "/c"}}}},
                {
                    "Put": {
                        "TableName": table,
                        "Item": {"pk": {"S": "/d"}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ]
        )
    # Then it was cancelled, and nothing it names changed
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert _item(aws, "/a") == {"pk": {"S": "/a"}, "v": {"S": "before"}}
    assert _item(aws, "/b") == {"pk": {"S": "/b"}, "v": {"S": "before"}}
    assert _item(aws, "/c") is None and _item(aws, "/d") is None


def test_a_transaction_whose_conditions_hold_applies_whole(aws: EmulatedAws) -> None:
    table = aws.stack.table_name
    aws.dynamodb.put_item(TableName=table, Item={"pk": {"S": "/a"}})
    aws.dynamodb.transact_write_items(
        TransactItems=[
            {"Delete": {"TableName": table, "Key": {"pk": {"S": "/a"}}}},
            {"Put": {"TableName": table, "Item": {"pk": {"S": "/b"}}}},
        ]
    )
    assert _item(aws, "/a") is None and _item(aws, "/b") == {"pk": {"S": "/b"}}
