"""moto, made to cost what DynamoDB costs where the local stack and the benchmarks would see it.

moto 5 makes a failed ``TransactWriteItems`` undo itself by deep-copying every table the
transaction names before it runs: its cost grows with the table (here 0.6 s per transaction at
10,000 items, 2.3 s at 30,000), where DynamoDB's follows the items in the transaction. The
list's head switch is a transaction, so unpatched, a large table in ``make dev`` and the
benchmarks would measure moto. ``install`` keeps moto's all-or-nothing behaviour and saves
only the items the transaction names. Not deployed: the local stack and the tests only.
"""

from __future__ import annotations

import copy
import types
from typing import Any

_INSTALLED = False


def install() -> None:
    """Patch moto's DynamoDB backend in this process (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    from moto.dynamodb import models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    def deepcopy(value: Any, memo: Any = None) -> Any:
        # A whole table is not copied: the transaction below saves the items it names.
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    setattr(models, "copy", types.SimpleNamespace(deepcopy=deepcopy))  # noqa: B010
    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved: list[tuple[Table, Any, Any, Any]] = []
        for action in transact_items:
            operation = next(iter(action.values()))
            table = self.tables.get(operation.get("TableName"))
            if table is None:
                continue
            attributes = operation.get("Item") or operation.get("Key") or {}
            if table.hash_key_attr not in attributes:
                continue
            hash_value = DynamoType(attributes[table.hash_key_attr])
            range_value = None
            if table.range_key_attr is not None and table.range_key_attr in attributes:
                range_value = DynamoType(attributes[table.range_key_attr])
            item = table.get_item(hash_value, range_value)
            saved.append((table, hash_value, range_value, copy.deepcopy(item)))
        try:
            original(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(saved):
                _restore(table, hash_value, range_value, item)
            raise

    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    _INSTALLED = True


def _restore(table: Any, hash_value: Any, range_value: Any, item: Any) -> None:
    if range_value is None:
        if item is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = item
        return
    if item is None:
        table.items.get(hash_value, {}).pop(range_value, None)
    else:
        table.items[hash_value][range_value] = item
