"""The receiver's rules: authenticate, validate and shape a Supabase webhook into a message.

Just over 300 lines on purpose: the refusal rules below are one list, each with its reason, and
the parser hooks that enforce them sit next to it.

Pure functions: ``receive.accept`` passes in the request parts, the secrets and the settings.

What is accepted is what Supabase can send: ``supabase_functions.http_request()`` builds the
body with ``jsonb_build_object``, so it is UTF-8 JSON that Postgres' jsonb could hold. Anything
outside that is refused with a 4xx naming the problem, never a 5xx (a 5xx is a webhook that
Supabase drops for good, and a crash is worse: it says nothing). The refused classes:

- not UTF-8 (a UTF-16/32 body, invalid bytes, a charset other than UTF-8): 415 or 400;
  a leading UTF-8 byte-order mark is ignored, as RFC 8259 section 8.1 allows;
- not RFC 8259 JSON though Python's ``json`` takes it: ``NaN``, ``Infinity``, ``-Infinity``;
- an unpaired UTF-16 surrogate escape (``"\\ud800"``): not Unicode, jsonb refuses it, and it
  cannot be encoded into the queue message;
- duplicate object keys: jsonb keeps only the last, so Supabase never sends one; a body with
  them is ambiguous (another parser may read the first), so it is refused, not guessed;
- nesting deeper than the parser goes (about 1,000 levels on Python 3.11, 10,000 on 3.13);
- a primary key the cache cannot hold (over ``MAX_KEY_BYTES`` of UTF-8);
- base64 that is not base64 (a binary media type), duplicate Authorization or Content-Type.

And what is accepted though the queue message cannot carry it verbatim is queued by key only,
with the bodies dropped (the consumer re-reads the row from Supabase anyway): bodies over the
SQS message limit, bodies the consumer could not read back (its parser, ``Change.from_message``,
stops at 200 levels of nesting in the whole message; the serializer at 255), or holding
numbers a double or Python int cannot represent (Postgres ``numeric`` can be ``1e400`` or have
5,000 digits; Python would turn the first into ``inf`` and refuse the second).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hmac
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from waituntil.core.contracts import Change, RowKey, WebhookPayload
from waituntil.core.errors import (
    InvalidHeaders,
    InvalidPayload,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)

BEARER = "bearer "
# DynamoDB caps a partition key at 2048 bytes and the cache key is "/<table>/<key>"; Postgres
# table names are at most 63 bytes, so half of that leaves ample room.
MAX_KEY_BYTES = 1024
# Headers Supabase sends once; two values would leave it to chance which one is checked.
SINGLE_HEADERS = ("authorization", "content-type")
# Values from the request are echoed in error messages at most this long: a 6 MB table name
# echoed back could push the response past Lambda's 6 MB limit (a 502).
ECHO_CHARS = 64
# Python >= 3.11 refuses to convert integers longer than this (CVE-2020-10735).
_MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300
# UTF-32 first: the UTF-32-LE mark starts with the UTF-16-LE one.
_UTF16_32_BOMS = (
    codecs.BOM_UTF32_LE,
    codecs.BOM_UTF32_BE,
    codecs.BOM_UTF16_LE,
    codecs.BOM_UTF16_BE,
)
# A \uD800-\uDFFF escape in the raw text: only then can a lone surrogate reach the document.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Fewer brackets than this in a message, and it cannot nest as deep as the consumer's parser
# stops (200 levels): any number below that limit would do, this one keeps clear of it.
_BRACKETS_NEVER_TOO_DEEP = 150
# Characters SQS refuses (or, by newer docs, silently replaces with U+FFFD): everything outside
# #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF. Postgres text can hold
# U+FFFE and U+FFFF, and pydantic writes them raw, so they are escaped in the message. Written
# as the few refused ranges rather than the negation of the allowed ones: the same characters,
# but the negated class spanning all of Unicode took `re` about 7 ms to compile, at import,
# in the receiver's cold start (tests/unit/test_webhook.py checks every code point).
_NOT_SQS_SAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class UnrepresentableNumber:
    """A JSON number Python cannot hold exactly (``1e400``, an int of 5,000 digits).

    Kept as its literal text. pydantic cannot serialize it, so ``fit_message`` drops the row
    bodies that hold one, and ``build_change`` refuses it as a primary key.
    """

    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal

    def __repr__(self) -> str:
        return f"UnrepresentableNumber({echo(self.literal)})"


def check_single_headers(multi_value_headers: Mapping[str, Any] | None) -> None:
    """Refuse a request that repeats a header Supabase sends once (RFC 9110: singletons)."""
    counts: dict[str, int] = {}
    for name, values in (multi_value_headers or {}).items():
        key = str(name).lower()
        counts[key] = counts.get(key, 0) + (len(values) if isinstance(values, list) else 1)
    repeated = [name for name in SINGLE_HEADERS if counts.get(name, 0) > 1]
    if repeated:
        raise InvalidHeaders(f"header {repeated[0]!r} must be sent once")


def check_bearer(authorization: str | None, accepted: Iterable[str]) -> None:
    """Accept only ``Authorization: Bearer <secret>`` for one of the accepted secrets.

    ``accepted`` is iterated lazily and only for a well-formed header, so a request without a
    bearer token is refused without reading Secrets Manager. Each comparison is constant time.
    """
    if not authorization or not authorization[: len(BEARER)].lower() == BEARER:
        raise Unauthorized("missing bearer token")
    # surrogatepass: a header value is whatever the gateway decoded; it must not crash here.
    presented = authorization[len(BEARER) :].strip().encode("utf-8", "surrogatepass")
    for secret in accepted:
        if hmac.compare_digest(presented, secret.encode()):
            return
    raise Unauthorized("invalid bearer token")


def request_body(body: str | None, is_base64_encoded: bool | None) -> bytes:
    """The raw bytes of the request as API Gateway handed them over."""
    if not body:
        return b""
    if is_base64_encoded:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as error:
            raise InvalidPayload("body is marked base64 but is not valid base64") from error
    # surrogatepass keeps a lone surrogate in the text from crashing the encoder; the strict
    # UTF-8 decode in parse_payload then refuses it.
    return body.encode("utf-8", "surrogatepass")


def parse_payload(body: bytes, content_type: str | None, max_body_bytes: int) -> WebhookPayload:
    """Turn the raw body into a webhook payload, or say precisely what is wrong with it."""
    media_type, _, parameters = (content_type or "").partition(";")
    if media_type.strip().lower() != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")
    charset = _charset(parameters)
    if charset is not None and charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"charset must be utf-8, not {echo(charset)}")
    if len(body) > max_body_bytes:
        raise PayloadTooLarge(f"body is {len(body)} bytes; the limit is {max_body_bytes}")
    document = parse_json(_utf8_text(body))
    if not isinstance(document, dict):
        raise InvalidPayload("body must be a JSON object")
    try:
        return WebhookPayload.model_validate(document)
    except ValidationError as error:
        raise InvalidPayload(_describe(error)) from error


def parse_json(text: str) -> Any:
    """RFC 8259 JSON as jsonb would hold it, strictly; see the module docstring for why."""
    try:
        document = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
            object_pairs_hook=_object_without_duplicates,
        )
    except RecursionError as error:
        raise InvalidPayload("body is nested too deeply to parse") from error
    except ValueError as error:
        raise InvalidPayload(f"body is not valid JSON: {error}") from error
    if _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(document)
    return document


def build_change(
    payload: WebhookPayload,
    *,
    cached_tables: tuple[str, ...],
    schema_name: str,
    primary_keys: Mapping[str, str],
    received_at: datetime,
    correlation_id: str,
) -> Change:
    """Check the payload against what this deployment caches and make the queue message."""
    if payload.schema_name != schema_name:
        raise InvalidPayload(
            f"schema {echo(payload.schema_name)} is not cached (expected {schema_name!r})"
        )
    if payload.table not in cached_tables:
        raise InvalidPayload(f"table {echo(payload.table)} is not cached")
    keyed_row, field = (
        (payload.old_record, "old_record")
        if payload.type == "DELETE"
        else (payload.record, "record")
    )
    if keyed_row is None:
        raise InvalidPayload(f"{payload.type} needs an object in {field}")
    primary_key = primary_keys[payload.table]
    key = _row_key(keyed_row, field, primary_key)
    return Change(
        type=payload.type,
        schema_name=payload.schema_name,
        table=payload.table,
        key=key,
        old_key=_old_key(payload, key, primary_key),
        record=payload.record,
        old_record=payload.old_record,
        received_at=received_at,
        correlation_id=correlation_id,
    )


def fit_message(change: Change, max_bytes: int) -> tuple[str, Change]:
    """Serialize the change; if the bodies cannot travel in it, queue the key alone.

    The consumer re-reads the row from Supabase anyway, so the key is enough: a valid change
    is never refused because of its bodies (too large for SQS, nested deeper than the
    serializer goes, numbers it cannot write), and never queued in a form the consumer cannot
    read: the message is read back with the consumer's own parser first, so the two sides
    share one limit by construction instead of two constants that could drift apart.
    """
    try:
        message: str | None = sqs_safe(change.to_message())
    except PydanticSerializationError:
        message = None
    if message is not None and len(message.encode()) <= max_bytes and _readable(message):
        return message, change
    slim = change.model_copy(update={"record": None, "old_record": None, "bodies_dropped": True})
    return sqs_safe(slim.to_message()), slim


def _readable(message: str) -> bool:
    """Whether the consumer's parser reads ``message``.

    Reading back costs about 4 ms per 100 KB, so it is done only when it could fail: a
    message nests at most as deep as it has brackets, and one with fewer than
    ``_BRACKETS_NEVER_TOO_DEEP`` (counted in about 1 ms per MB) is readable for sure."""
    if message.count("[") + message.count("{") < _BRACKETS_NEVER_TOO_DEEP:
        return True
    try:
        Change.from_message(message)
    except ValidationError:
        return False
    return True


def sqs_safe(message: str) -> str:
    """Escape the characters SQS refuses. In JSON they can only sit inside strings, where
    ``\\uXXXX`` means the same character, so the consumer parses the same change."""
    return _NOT_SQS_SAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", message)


def echo(value: object) -> str:
    """A request value quoted for an error message, cut to ``ECHO_CHARS``."""
    text = repr(value)
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 3] + "..."


def _row_key(row: dict[str, Any], field: str, primary_key: str) -> RowKey:
    if primary_key not in row:
        raise InvalidPayload(f"{field} has no primary key column {primary_key!r}")
    key = row[primary_key]
    # bool is an int subclass in Python: refuse it explicitly.
    if isinstance(key, bool) or not isinstance(key, int | str) or key == "":
        raise InvalidPayload(f"{field}.{primary_key} must be an integer or a non-empty string")
    if len(str(key).encode()) > MAX_KEY_BYTES:
        raise InvalidPayload(f"{field}.{primary_key} is longer than {MAX_KEY_BYTES} bytes")
    return key


def _old_key(payload: WebhookPayload, key: RowKey, primary_key: str) -> RowKey | None:
    """An UPDATE's previous key when the update changed it: the consumer must converge that
    key too, or the cache keeps serving the row under its old key."""
    if payload.type != "UPDATE" or payload.old_record is None:
        return None
    try:
        old_key = _row_key(payload.old_record, "old_record", primary_key)
    except InvalidPayload:
        # No key, or one the cache could never have held (its INSERT was refused): there is
        # nothing cached under it to clear, and the new key's change must not be lost.
        return None
    return None if str(old_key) == str(key) else old_key


def _charset(parameters: str) -> str | None:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def _utf8_text(body: bytes) -> str:
    if body.startswith(codecs.BOM_UTF8):
        body = body[len(codecs.BOM_UTF8) :]
    elif body.startswith(_UTF16_32_BOMS):
        raise InvalidPayload("body must be UTF-8 (RFC 8259); this one has a UTF-16/32 BOM")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidPayload(f"body is not UTF-8: invalid byte at offset {error.start}") from error


def _refuse_constant(name: str) -> Any:
    raise InvalidPayload(f"body is not valid JSON: {name} is not a JSON number")


def _parse_float(literal: str) -> float | UnrepresentableNumber:
    value = float(literal)
    return value if math.isfinite(value) else UnrepresentableNumber(literal)


def _parse_int(literal: str) -> int | UnrepresentableNumber:
    digits = len(literal) - literal.startswith("-")
    return int(literal) if digits <= _MAX_INT_DIGITS else UnrepresentableNumber(literal)


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise InvalidPayload(f"body repeats the key {echo(name)} in one object")
            seen.add(name)
    return document


def _refuse_lone_surrogates(document: Any) -> None:
    try:
        # The C encoder walks the document far faster than Python could; encoding its
        # output strictly fails on exactly the lone surrogates.
        json.dumps(document, ensure_ascii=False, default=repr).encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidPayload("body holds an unpaired UTF-16 surrogate escape") from error
    except RecursionError as error:
        raise InvalidPayload("body is nested too deeply to parse") from error


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(part)[:ECHO_CHARS] for part in item["loc"])
        problems.append(f"{where or 'body'}: {item['msg']}")
    return "; ".join(problems)
