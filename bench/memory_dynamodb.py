"""DynamoDB answered in process, cheaply: the benchmarks' stand-in for the DynamoDB service.

The project's own ``CacheStore`` and a real boto3 client run unchanged: botocore serializes
each request, retries and parses the answer as it would against AWS. Only the service is
replaced: a ``before-send`` handler answers DynamoDB's JSON protocol from a SQLite file, so
that what the client side costs (botocore's CPU, the thread pool, the GIL) is measured, while
the service costs what DynamoDB costs a Lambda: no CPU of the caller's.

Why not moto's backend: it spends about 8 ms of CPU per conditional UpdateItem (parsing the
update expression, deep-copying its tree), in the caller's process. A million-row fill would
take hours of moto's CPU and, with the GIL, make a thread pool look useless. Why SQLite: a
million items would take gigabytes as Python objects, in the process whose memory the fill
benchmark measures; SQLite keeps them in a temporary file and a bounded page cache.

What it implements is what DynamoDB documents, for the subset the cache uses: GetItem,
PutItem, UpdateItem, DeleteItem (conditions, ``ReturnValues``,
``ReturnValuesOnConditionCheckFailure``), BatchGetItem, BatchWriteItem, TransactWriteItems
(with ``ClientRequestToken``), TransactGetItems; expressions over top-level attributes
(comparisons, BETWEEN, IN, AND/OR/NOT, ``attribute_exists``, ``attribute_not_exists``,
``attribute_type``, ``begins_with``, ``contains``, ``size``; SET with ``+``/``-``,
``if_not_exists`` and ``list_append``; REMOVE; ADD; DELETE). Anything else is refused with a
``ValidationException`` naming it, never answered wrongly. ``tests/integration`` runs the same
CacheStore histories here and on moto and compares every item.

It also keeps DynamoDB's bill: write units (1 per started KB of the larger of the item before
and after; 2x in a transaction) and read units (1 per started 4 KB, strongly consistent).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from io import BytesIO
from pathlib import Path
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse

Wire = dict[str, Any]  # an item or a value as DynamoDB's JSON protocol writes it

_ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
_OPERATIONS = {
    "GetItem": "_get_item",
    "PutItem": "_put_item",
    "UpdateItem": "_update_item",
    "DeleteItem": "_delete_item",
    "BatchGetItem": "_batch_get_item",
    "BatchWriteItem": "_batch_write_item",
    "TransactWriteItems": "_transact_write_items",
    "TransactGetItems": "_transact_get_items",
}
_TOKEN_SECONDS = 600  # how long DynamoDB remembers a ClientRequestToken


class _Refused(Exception):
    """An answer with an error: the request is DynamoDB's to refuse (its status and type)."""

    def __init__(self, kind: str, message: str, status: int = 400, **extra: Any) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.extra = extra


class _ConditionFailed(_Refused):
    def __init__(self, old: Wire | None, wanted: bool) -> None:
        super().__init__("ConditionalCheckFailedException", "The conditional request failed")
        if wanted and old is not None:
            self.extra["Item"] = old
        self.old = old


@dataclass
class Bill:
    """What DynamoDB would bill, and how many requests it answered, by operation."""

    write_units: int = 0
    write_units_by_kind: dict[str, int] = field(default_factory=dict)  # the item's "kind"
    read_units: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    items_written: int = 0
    cpu_s: float = 0.0  # this stand-in's own CPU: the part of a run that is not the caller's

    def as_dict(self) -> dict[str, Any]:
        return {
            "write_units": self.write_units,
            "write_units_by_kind": dict(self.write_units_by_kind),
            "read_units": round(self.read_units, 1),
            "requests": dict(self.requests),
            "items_written": self.items_written,
            "service_cpu_s": round(self.cpu_s, 3),
        }


class MemoryDynamoDB:
    """One DynamoDB (any table name) in a SQLite file. ``attach(client)`` makes a boto3
    DynamoDB client talk to it."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="memory-dynamodb-", dir=directory)
        self._db = sqlite3.connect(
            str(Path(self._tmp.name) / "items.sqlite"), check_same_thread=False
        )
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-8000"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE items (tbl TEXT, pk TEXT, item TEXT, PRIMARY KEY (tbl, pk))")
        # One lock for the store: DynamoDB applies each item's writes atomically. Never held
        # while sleeping: latency is added by the caller's hook, outside.
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, str]] = {}
        self._parsed: dict[str, Any] = {}
        self.bill = Bill()
        self.key_names: dict[str, str] = {}  # table -> its hash key; "pk" unless told

    def close(self) -> None:
        self._db.close()
        self._tmp.cleanup()

    def attach(self, client: Any) -> None:
        """Answer ``client``'s requests here instead of moto or the network.

        botocore calls every ``before-send`` handler and takes the first answer, so moto's
        (present in every client while its mock is active) is removed from this client, or
        it would process each request too, at its own cost.
        """
        client.meta.events.register("before-send.dynamodb", self.on_send)
        try:
            from moto.core.models import botocore_stubber
        except ImportError:  # no moto: nothing to remove
            return
        with contextlib.suppress(AttributeError, ValueError):  # not in this client's hooks
            client.meta.events.unregister("before-send", botocore_stubber)

    # ----- the protocol --------------------------------------------------------------------

    def on_send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        started = time.thread_time()
        target = request.headers["X-Amz-Target"]
        if isinstance(target, bytes):
            target = target.decode()
        operation = str(target).rsplit(".", 1)[-1]
        body = request.body
        text = body.decode() if isinstance(body, bytes) else str(body or "{}")
        try:
            status, answer = 200, self.handle(operation, json.loads(text))
        except _Refused as refused:
            status = refused.status
            answer = {"__type": _ERROR_PREFIX + refused.kind, "message": str(refused)}
            answer.update(refused.extra)
        payload = json.dumps(answer).encode()
        self.bill.cpu_s += time.thread_time() - started
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "memory"}
        return AWSResponse(request.url, status, headers, _Raw(payload))  # type: ignore[arg-type]

    def handle(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """One request of DynamoDB's JSON protocol, answered (or refused with ``_Refused``)."""
        name = _OPERATIONS.get(operation)
        if name is None:
            raise _Refused("ValidationException", f"the memory DynamoDB has no {operation}")
        method: Callable[[dict[str, Any]], dict[str, Any]] = getattr(self, name)
        with self._lock:
            self.bill.requests[operation] = self.bill.requests.get(operation, 0) + 1
            return method(request)

    # ----- operations ----------------------------------------------------------------------

    def _get_item(self, request: dict[str, Any]) -> dict[str, Any]:
        table = request["TableName"]
        item = self._load(table, self._pk(table, request["Key"]))
        self._read(item, request.get("ConsistentRead", False))
        if item is None:
            return {}
        return {"Item": _project(item, request)}

    def _put_item(self, request: dict[str, Any]) -> dict[str, Any]:
        table, item = request["TableName"], request["Item"]
        pk = self._pk(table, item)
        old = self._load(table, pk)
        self._check(old, request, "PutItem")
        self._store(table, pk, item, old)
        return _returned(request.get("ReturnValues"), old, item, set(item))

    def _update_item(self, request: dict[str, Any]) -> dict[str, Any]:
        table = request["TableName"]
        pk = self._pk(table, request["Key"])
        old = self._load(table, pk)
        self._check(old, request, "UpdateItem")
        new, touched = self._updated(old, request)
        self._store(table, pk, new, old)
        return _returned(request.get("ReturnValues"), old, new, touched)

    def _delete_item(self, request: dict[str, Any]) -> dict[str, Any]:
        table = request["TableName"]
        pk = self._pk(table, request["Key"])
        old = self._load(table, pk)
        self._check(old, request, "DeleteItem")
        self._remove(table, pk, old)
        return _returned(request.get("ReturnValues"), old, None, set())

    def _batch_get_item(self, request: dict[str, Any]) -> dict[str, Any]:
        responses: dict[str, list[Wire]] = {}
        for table, asked in request["RequestItems"].items():
            if len(asked["Keys"]) > 100:
                raise _Refused("ValidationException", "Too many items requested")
            found = responses.setdefault(table, [])
            for key in asked["Keys"]:
                item = self._load(table, self._pk(table, key))
                self._read(item, asked.get("ConsistentRead", False))
                if item is not None:
                    found.append(_project(item, asked))
        return {"Responses": responses, "UnprocessedKeys": {}}

    def _batch_write_item(self, request: dict[str, Any]) -> dict[str, Any]:
        requests = [(t, r) for t, rs in request["RequestItems"].items() for r in rs]
        if len(requests) > 25:
            raise _Refused("ValidationException", "Too many items in the BatchWriteItem")
        for table, one in requests:
            if "PutRequest" in one:
                item = one["PutRequest"]["Item"]
                pk = self._pk(table, item)
                self._store(table, pk, item, self._load(table, pk))
            else:
                pk = self._pk(table, one["DeleteRequest"]["Key"])
                self._remove(table, pk, self._load(table, pk))
        return {"UnprocessedItems": {}}

    def _transact_write_items(self, request: dict[str, Any]) -> dict[str, Any]:
        token = request.get("ClientRequestToken")
        fingerprint = json.dumps(request["TransactItems"], sort_keys=True)
        now = time.monotonic()
        if token is not None and token in self._tokens:
            seen_at, seen = self._tokens[token]
            if now - seen_at < _TOKEN_SECONDS:
                if seen != fingerprint:
                    raise _Refused(
                        "IdempotentParameterMismatchException", "token reused with other items"
                    )
                return {}  # applied already: a resend applies nothing twice
        plans: list[tuple[str, str, Wire | None, Wire | None]] = []
        reasons: list[dict[str, Any]] = []
        failed = False
        for entry in request["TransactItems"]:
            ((kind, action),) = entry.items()
            table = action["TableName"]
            pk = self._pk(table, action.get("Key") or action.get("Item"))
            old = self._load(table, pk)
            try:
                self._check(old, action, kind)
            except _ConditionFailed as error:
                failed = True
                reason: dict[str, Any] = {"Code": "ConditionalCheckFailed"}
                if error.old is not None and action.get("ReturnValuesOnConditionCheckFailure") == (
                    "ALL_OLD"
                ):
                    reason["Item"] = error.old
                reasons.append(reason)
                continue
            reasons.append({"Code": "None"})
            if kind == "Put":
                plans.append((table, pk, old, action["Item"]))
            elif kind == "Update":
                plans.append((table, pk, old, self._updated(old, action)[0]))
            elif kind == "Delete":
                plans.append((table, pk, old, None))
            elif kind != "ConditionCheck":
                raise _Refused("ValidationException", f"unknown transaction action {kind}")
        if failed:
            raise _Refused(
                "TransactionCanceledException",
                "Transaction cancelled, please refer cancellation reasons for specific reasons",
                CancellationReasons=reasons,
            )
        for table, pk, old, new in plans:
            if new is None:
                self._remove(table, pk, old, factor=2)
            else:
                self._store(table, pk, new, old, factor=2)
        if token is not None:
            self._tokens[token] = (now, fingerprint)
        return {}

    def _transact_get_items(self, request: dict[str, Any]) -> dict[str, Any]:
        responses = []
        for entry in request["TransactItems"]:
            get = entry["Get"]
            item = self._load(get["TableName"], self._pk(get["TableName"], get["Key"]))
            self._read(item, True, factor=2)
            responses.append({"Item": _project(item, get)} if item is not None else {})
        return {"Responses": responses}

    # ----- storage and bill ----------------------------------------------------------------

    def _pk(self, table: str, key: Wire | None) -> str:
        name = self.key_names.get(table, "pk")
        if key is None or name not in key:
            raise _Refused("ValidationException", f"the key {name} is missing")
        ((_, value),) = key[name].items()
        return str(value)

    def _load(self, table: str, pk: str) -> Wire | None:
        row = self._db.execute(
            "SELECT item FROM items WHERE tbl = ? AND pk = ?", (table, pk)
        ).fetchone()
        if row is None:
            return None
        item: Wire = json.loads(row[0])
        return item

    def _store(self, table: str, pk: str, item: Wire, old: Wire | None, factor: int = 1) -> None:
        if wire_item_bytes(item) > 400 * 1024:
            raise _Refused("ValidationException", "Item size has exceeded the maximum allowed size")
        self._db.execute(
            "INSERT OR REPLACE INTO items VALUES (?, ?, ?)", (table, pk, json.dumps(item))
        )
        size = max(wire_item_bytes(item), wire_item_bytes(old) if old else 0)
        self._bill_write(factor * _units(size, 1024), item)
        self.bill.items_written += 1

    def _bill_write(self, units: int, item: Wire | None) -> None:
        self.bill.write_units += units
        kind = str((item or {}).get("kind", {}).get("S", "other"))
        self.bill.write_units_by_kind[kind] = self.bill.write_units_by_kind.get(kind, 0) + units

    def _remove(self, table: str, pk: str, old: Wire | None, factor: int = 1) -> None:
        self._db.execute("DELETE FROM items WHERE tbl = ? AND pk = ?", (table, pk))
        self._bill_write(factor * _units(wire_item_bytes(old) if old else 0, 1024), old)

    def _read(self, item: Wire | None, consistent: bool, factor: int = 1) -> None:
        units = _units(wire_item_bytes(item) if item else 0, 4096)
        self.bill.read_units += factor * units * (1 if consistent else 0.5)

    def items(self, table: str) -> Iterator[tuple[str, Wire]]:
        """Every item of ``table`` (for checks after a run), by key."""
        with self._lock:
            rows = self._db.execute(
                "SELECT pk, item FROM items WHERE tbl = ? ORDER BY pk", (table,)
            ).fetchall()
        for pk, text in rows:
            yield pk, json.loads(text)

    def count(self, table: str) -> int:
        with self._lock:
            return int(
                self._db.execute("SELECT COUNT(*) FROM items WHERE tbl = ?", (table,)).fetchone()[0]
            )

    # ----- conditions and updates ----------------------------------------------------------

    def _check(self, old: Wire | None, request: dict[str, Any], operation: str) -> None:
        expression = request.get("ConditionExpression")
        if expression is None:
            if "Expected" in request:
                raise _Refused("ValidationException", f"{operation}: Expected is not supported")
            return
        context = _Context(request)
        if not _truth(self._parse(expression, _parse_condition), old or {}, context):
            wanted = request.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
            if operation in ("PutItem", "UpdateItem", "DeleteItem"):
                # A write whose condition fails is billed all the same (at least one unit).
                self._bill_write(_units(wire_item_bytes(old) if old else 0, 1024), old)
            raise _ConditionFailed(old, wanted)

    def _updated(self, old: Wire | None, request: dict[str, Any]) -> tuple[Wire, set[str]]:
        table_key = {name: value for name, value in request["Key"].items()}
        new: Wire = dict(old) if old is not None else dict(table_key)
        expression = request.get("UpdateExpression")
        if expression is None:
            if "AttributeUpdates" in request:
                raise _Refused("ValidationException", "AttributeUpdates is not supported")
            return new, set()
        context = _Context(request)
        touched: set[str] = set()
        for action, name, operand in self._parse(expression, _parse_update):
            attribute = context.name(name)
            if attribute in table_key:
                raise _Refused("ValidationException", "Cannot update attribute pk: key")
            touched.add(attribute)
            if action == "SET":
                new[attribute] = _value(operand, old or {}, context)
            elif action == "REMOVE":
                new.pop(attribute, None)
            elif action == "ADD":
                new_value = _add(new.get(attribute), context.value(operand))
                new[attribute] = new_value
            else:  # DELETE from a set
                remaining = _set_minus(new.get(attribute), context.value(operand))
                if remaining is None:
                    new.pop(attribute, None)
                else:
                    new[attribute] = remaining
        return new, touched

    def _parse(self, expression: str, parser: Callable[[list[str]], Any]) -> Any:
        parsed = self._parsed.get(expression)
        if parsed is None:
            tokens = _tokens(expression)
            parsed = parser(tokens)
            self._parsed[expression] = parsed
        return parsed


class _Raw(BytesIO):
    def stream(self, **_: Any) -> Iterator[bytes]:
        contents = self.read()
        while contents:
            yield contents
            contents = self.read()


# ----- item sizes --------------------------------------------------------------------------


def wire_item_bytes(item: Wire | None) -> int:
    """DynamoDB's size of an item in wire form: attribute names plus values."""
    if not item:
        return 0
    return sum(len(name.encode()) + _wire_value_bytes(value) for name, value in item.items())


def _wire_value_bytes(value: Wire) -> int:
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "B":
        return len(raw) * 3 // 4  # base64 on the wire
    if kind == "N":
        return len(raw) // 2 + 1
    if kind == "SS":
        return sum(len(part.encode()) for part in raw)
    if kind == "NS":
        return sum(len(part) // 2 + 1 for part in raw)
    if kind == "BS":
        return sum(len(part) * 3 // 4 for part in raw)
    if kind == "L":
        return 3 + sum(1 + _wire_value_bytes(part) for part in raw)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + _wire_value_bytes(v) for k, v in raw.items())
    return 1


def _units(size: int, per: int) -> int:
    return max(1, -(-size // per))


def _returned(
    wanted: str | None, old: Wire | None, new: Wire | None, touched: set[str]
) -> dict[str, Any]:
    if wanted in (None, "NONE"):
        return {}
    source = old if wanted in ("ALL_OLD", "UPDATED_OLD") else new
    if source is None:
        return {}
    if wanted.startswith("UPDATED"):
        source = {name: value for name, value in source.items() if name in touched}
    return {"Attributes": source} if source else {}


def _project(item: Wire, request: dict[str, Any]) -> Wire:
    expression = request.get("ProjectionExpression")
    if expression is None:
        return item
    names = request.get("ExpressionAttributeNames", {})
    wanted = {names.get(part.strip(), part.strip()) for part in expression.split(",")}
    return {name: value for name, value in item.items() if name in wanted}


# ----- expressions -------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(#[\w]+|:[\w]+|[A-Za-z_][\w]*|<>|<=|>=|[=<>(),.\[\]+-])")


def _tokens(expression: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            if expression[position:].strip() == "":
                break
            raise _Refused("ValidationException", f"cannot read {expression!r}")
        tokens.append(match.group(1))
        position = match.end()
    for token in tokens:
        if token in (".", "[", "]"):
            raise _Refused("ValidationException", f"nested paths are not supported: {expression}")
    return tokens


class _Context:
    def __init__(self, request: dict[str, Any]) -> None:
        self._names: dict[str, str] = request.get("ExpressionAttributeNames", {})
        self._values: dict[str, Wire] = request.get("ExpressionAttributeValues", {})

    def name(self, token: str) -> str:
        if token.startswith("#"):
            if token not in self._names:
                raise _Refused("ValidationException", f"{token} is not defined")
            return self._names[token]
        return token

    def value(self, token: str) -> Wire:
        if token not in self._values:
            raise _Refused("ValidationException", f"{token} is not defined")
        return self._values[token]


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.upper() == word:
            self.at += 1
            return True
        return False

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token.upper() != expected):
            raise _Refused("ValidationException", f"expected {expected or 'more'} in expression")
        self.at += 1
        return token


_FUNCTIONS = {"attribute_exists", "attribute_not_exists", "attribute_type", "begins_with"}
_FUNCTIONS |= {"contains", "size", "if_not_exists", "list_append"}
_COMPARATORS = {"=", "<>", "<", "<=", ">", ">="}


def _parse_condition(tokens: list[str]) -> Any:
    parser = _Parser(tokens)
    tree = _or(parser)
    if parser.peek() is not None:
        raise _Refused("ValidationException", f"unexpected {parser.peek()} in condition")
    return tree


def _or(parser: _Parser) -> Any:
    tree = _and(parser)
    while parser.keyword("OR"):
        tree = ("or", tree, _and(parser))
    return tree


def _and(parser: _Parser) -> Any:
    tree = _not(parser)
    while parser.keyword("AND"):
        tree = ("and", tree, _not(parser))
    return tree


def _not(parser: _Parser) -> Any:
    if parser.keyword("NOT"):
        return ("not", _not(parser))
    return _primary(parser)


def _primary(parser: _Parser) -> Any:
    if parser.peek() == "(":
        parser.take("(")
        tree = _or(parser)
        parser.take(")")
        return tree
    token = parser.peek()
    if token is not None and token.lower() in _FUNCTIONS - {"size"}:
        call = _call(parser)
        if call[1] in ("attribute_exists", "attribute_not_exists", "begins_with", "contains"):
            return call
        if call[1] == "attribute_type":
            return call
        raise _Refused("ValidationException", f"{call[1]} is not a condition")
    left = _operand(parser)
    if parser.keyword("BETWEEN"):
        low = _operand(parser)
        parser.take("AND")
        return ("between", left, low, _operand(parser))
    if parser.keyword("IN"):
        parser.take("(")
        options = [_operand(parser)]
        while parser.peek() == ",":
            parser.take(",")
            options.append(_operand(parser))
        parser.take(")")
        return ("in", left, options)
    comparator = parser.take()
    if comparator not in _COMPARATORS:
        raise _Refused("ValidationException", f"unexpected {comparator} in condition")
    return ("compare", comparator, left, _operand(parser))


def _operand(parser: _Parser) -> Any:
    token = parser.peek()
    if token is not None and token.lower() in _FUNCTIONS:
        return _call(parser)
    token = parser.take()
    if token.startswith(":"):
        return ("value", token)
    if token in _COMPARATORS or token in ("(", ")", ",", "+", "-"):
        raise _Refused("ValidationException", f"unexpected {token} in expression")
    return ("path", token)


def _call(parser: _Parser) -> Any:
    name = parser.take().lower()
    parser.take("(")
    arguments = [_operand(parser)]
    while parser.peek() == ",":
        parser.take(",")
        arguments.append(_operand(parser))
    parser.take(")")
    return ("call", name, arguments)


def _parse_update(tokens: list[str]) -> list[tuple[str, str, Any]]:
    parser = _Parser(tokens)
    actions: list[tuple[str, str, Any]] = []
    while parser.peek() is not None:
        clause = parser.take().upper()
        if clause not in ("SET", "REMOVE", "ADD", "DELETE"):
            raise _Refused("ValidationException", f"unknown update clause {clause}")
        while True:
            path = _operand(parser)
            if path[0] != "path":
                raise _Refused("ValidationException", "an update names an attribute first")
            if clause == "SET":
                parser.take("=")
                operand = _operand(parser)
                if parser.peek() in ("+", "-"):
                    sign = parser.take()
                    operand = ("arith", sign, operand, _operand(parser))
                actions.append(("SET", path[1], operand))
            elif clause == "REMOVE":
                actions.append(("REMOVE", path[1], None))
            else:
                value = parser.take()
                if not value.startswith(":"):
                    raise _Refused("ValidationException", f"{clause} takes a value")
                actions.append((clause, path[1], value))
            if parser.peek() != ",":
                break
            parser.take(",")
    return actions


def _value(node: Any, item: Wire, context: _Context) -> Any:
    kind = node[0]
    if kind == "value":
        return context.value(node[1])
    if kind == "path":
        return item.get(context.name(node[1]))
    if kind == "arith":
        left, right = _value(node[2], item, context), _value(node[3], item, context)
        if left is None or right is None or "N" not in left or "N" not in right:
            raise _Refused("ValidationException", "arithmetic on a non-number")
        total = Decimal(left["N"]) + (1 if node[1] == "+" else -1) * Decimal(right["N"])
        return {"N": _number(total)}
    if kind == "call":
        name, arguments = node[1], node[2]
        if name == "if_not_exists":
            existing = _value(arguments[0], item, context)
            return existing if existing is not None else _value(arguments[1], item, context)
        if name == "list_append":
            left, right = (_value(a, item, context) for a in arguments)
            return {"L": [*(left or {"L": []})["L"], *(right or {"L": []})["L"]]}
        if name == "size":
            value = _value(arguments[0], item, context)
            return None if value is None else {"N": str(_size(value))}
    raise _Refused("ValidationException", f"cannot compute {node}")


def _truth(node: Any, item: Wire, context: _Context) -> bool:
    kind = node[0]
    if kind == "or":
        return _truth(node[1], item, context) or _truth(node[2], item, context)
    if kind == "and":
        return _truth(node[1], item, context) and _truth(node[2], item, context)
    if kind == "not":
        return not _truth(node[1], item, context)
    if kind == "compare":
        return _compare(node[1], _value(node[2], item, context), _value(node[3], item, context))
    if kind == "between":
        value = _value(node[1], item, context)
        return _compare(">=", value, _value(node[2], item, context)) and _compare(
            "<=", value, _value(node[3], item, context)
        )
    if kind == "in":
        value = _value(node[1], item, context)
        return any(_compare("=", value, _value(option, item, context)) for option in node[2])
    name, arguments = node[1], node[2]
    if name in ("attribute_exists", "attribute_not_exists"):
        present = context.name(arguments[0][1]) in item
        return present if name == "attribute_exists" else not present
    value = _value(arguments[0], item, context)
    other = _value(arguments[1], item, context)
    if value is None or other is None:
        return False
    if name == "attribute_type":
        return bool(next(iter(value)) == other.get("S"))
    if name == "begins_with":
        ((kind_a, raw_a),), ((kind_b, raw_b),) = value.items(), other.items()
        return kind_a == kind_b and kind_a in ("S", "B") and str(raw_a).startswith(str(raw_b))
    if name == "contains":
        ((kind_a, raw_a),), ((kind_b, raw_b),) = value.items(), other.items()
        if kind_a == "S" and kind_b == "S":
            return str(raw_b) in str(raw_a)
        if kind_a in ("SS", "NS", "BS"):
            return raw_b in raw_a
        if kind_a == "L":
            return other in raw_a
        return False
    raise _Refused("ValidationException", f"cannot evaluate {name}")


def _compare(operator: str, left: Wire | None, right: Wire | None) -> bool:
    if left is None or right is None:
        return False
    ((kind_a, raw_a),), ((kind_b, raw_b),) = left.items(), right.items()
    if kind_a != kind_b:
        return operator == "<>"
    a: Any
    b: Any
    if kind_a == "N":
        a, b = Decimal(raw_a), Decimal(raw_b)
    elif kind_a == "B":
        a, b = base64.b64decode(raw_a), base64.b64decode(raw_b)
    elif kind_a in ("S", "BOOL", "NULL"):
        a, b = raw_a, raw_b
    else:  # sets, lists, maps: equality only
        if operator not in ("=", "<>"):
            raise _Refused("ValidationException", f"cannot order values of type {kind_a}")
        same = sorted(raw_a) == sorted(raw_b) if kind_a.endswith("S") else raw_a == raw_b
        return same if operator == "=" else not same
    if operator == "=":
        return bool(a == b)
    if operator == "<>":
        return bool(a != b)
    if kind_a in ("BOOL", "NULL"):
        raise _Refused("ValidationException", f"cannot order values of type {kind_a}")
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[operator])


def _add(current: Wire | None, value: Wire) -> Wire:
    ((kind, raw),) = value.items()
    if kind == "N":
        base = Decimal(current["N"]) if current is not None else Decimal(0)
        return {"N": _number(base + Decimal(raw))}
    if kind in ("SS", "NS", "BS"):
        existing = list(current[kind]) if current is not None else []
        return {kind: existing + [part for part in raw if part not in existing]}
    raise _Refused("ValidationException", f"ADD takes a number or a set, not {kind}")


def _set_minus(current: Wire | None, value: Wire) -> Wire | None:
    ((kind, raw),) = value.items()
    if current is None:
        return None
    if kind not in current:
        raise _Refused("ValidationException", "DELETE of a set from another type")
    remaining = [part for part in current[kind] if part not in raw]
    return {kind: remaining} if remaining else None


def _size(value: Wire) -> int:
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "B":
        return len(base64.b64decode(raw))
    if kind in ("SS", "NS", "BS", "L", "M"):
        return len(raw)
    raise _Refused("ValidationException", f"size of a {kind}")


def _number(value: Decimal) -> str:
    try:
        normalized = value.normalize()
    except InvalidOperation:
        return str(value)
    return format(normalized, "f")
