"""Receiver logic: authenticate, validate and shape a Supabase webhook into a queue message.

Pure functions: the handler passes in the request parts, the secret and the settings.
"""

from __future__ import annotations

import hmac
import json
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from waituntil.contracts import Change, RowKey, WebhookPayload
from waituntil.errors import InvalidPayload, PayloadTooLarge, Unauthorized, UnsupportedMediaType

BEARER = "bearer "


def check_bearer(authorization: str | None, *secrets: str) -> None:
    """Accept only ``Authorization: Bearer <secret>`` for one of the secrets (two during a
    rotation), each compared in constant time, all of them every time."""
    if not secrets:
        raise ValueError("no secret to check against")
    if not authorization or not authorization[: len(BEARER)].lower() == BEARER:
        raise Unauthorized("missing bearer token")
    presented = authorization[len(BEARER) :].strip().encode()
    matches = [hmac.compare_digest(presented, secret.encode()) for secret in secrets]
    if not any(matches):
        raise Unauthorized("invalid bearer token")


def parse_payload(body: bytes, content_type: str | None, max_body_bytes: int) -> WebhookPayload:
    """Turn the raw body into a webhook payload, or say precisely what is wrong with it."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")
    if len(body) > max_body_bytes:
        raise PayloadTooLarge(f"body is {len(body)} bytes; the limit is {max_body_bytes}")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidPayload(f"body is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise InvalidPayload("body must be a JSON object")
    try:
        return WebhookPayload.model_validate(document)
    except ValidationError as error:
        raise InvalidPayload(_describe(error)) from error


def build_change(
    payload: WebhookPayload,
    *,
    cached_tables: tuple[str, ...],
    schema_name: str,
    primary_key: str,
    received_at: datetime,
    correlation_id: str,
) -> Change:
    """Check the payload against what this deployment caches and make the queue message."""
    if payload.schema_name != schema_name:
        raise InvalidPayload(
            f"schema {payload.schema_name!r} is not cached (expected {schema_name!r})"
        )
    if payload.table not in cached_tables:
        raise InvalidPayload(f"table {payload.table!r} is not cached")
    keyed_row, field = (
        (payload.old_record, "old_record")
        if payload.type == "DELETE"
        else (payload.record, "record")
    )
    if keyed_row is None:
        raise InvalidPayload(f"{payload.type} needs an object in {field}")
    return Change(
        type=payload.type,
        schema_name=payload.schema_name,
        table=payload.table,
        key=_row_key(keyed_row, field, primary_key),
        record=payload.record,
        old_record=payload.old_record,
        received_at=received_at,
        correlation_id=correlation_id,
    )


def fit_message(change: Change, max_bytes: int) -> tuple[str, Change]:
    """Serialize the change; if it would exceed the queue's limit, drop the row bodies.

    The consumer re-reads the row from Supabase anyway, so the key alone is enough: a valid
    change is never refused for its size.
    """
    message = change.to_message()
    if len(message.encode()) <= max_bytes:
        return message, change
    slim = change.model_copy(update={"record": None, "old_record": None, "bodies_dropped": True})
    return slim.to_message(), slim


def _row_key(row: dict[str, Any], field: str, primary_key: str) -> RowKey:
    if primary_key not in row:
        raise InvalidPayload(f"{field} has no primary key column {primary_key!r}")
    key = row[primary_key]
    # bool is an int subclass in Python: refuse it explicitly.
    if isinstance(key, bool) or not isinstance(key, int | str) or key == "":
        raise InvalidPayload(f"{field}.{primary_key} must be an integer or a non-empty string")
    return key


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item["loc"]) or "body"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)
