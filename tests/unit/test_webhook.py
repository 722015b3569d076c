"""Receiver logic, no I/O: authentication, payload validation, message shaping."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from waituntil.contracts import Change, WebhookPayload
from waituntil.errors import InvalidPayload, PayloadTooLarge, Unauthorized, UnsupportedMediaType
from waituntil.webhook import build_change, check_bearer, fit_message, parse_payload

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _change(payload: dict[str, object]) -> Change:
    return build_change(
        WebhookPayload.model_validate(payload),
        cached_tables=("articles",),
        schema_name="public",
        primary_key="id",
        received_at=NOW,
        correlation_id="req-1",
    )


@pytest.mark.parametrize("header", ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret "])
def test_bearer_accepts_the_secret(header: str) -> None:
    # Given the right secret in any casing of the scheme / When checked / Then no error
    check_bearer(header, "s3cret")


@pytest.mark.parametrize("header", [None, "", "s3cret", "Basic s3cret", "Bearer wrong", "Bearer "])
def test_bearer_refuses_anything_else(header: str | None) -> None:
    # Given a missing, malformed or wrong header / When checked / Then 401
    with pytest.raises(Unauthorized):
        check_bearer(header, "s3cret")


def test_payload_must_be_json_content_type() -> None:
    # Given a form-encoded body / When parsed / Then 415
    with pytest.raises(UnsupportedMediaType):
        parse_payload(b"type=INSERT", "application/x-www-form-urlencoded", 1000)


def test_payload_size_is_capped() -> None:
    # Given a body over the limit / When parsed / Then 413 before any JSON work
    with pytest.raises(PayloadTooLarge):
        parse_payload(b"{" + b" " * 100 + b"}", "application/json; charset=utf-8", 50)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"type": ', "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"type": "TRUNCATE", "table": "articles", "schema": "public"}', "type"),
        (b'{"type": "INSERT", "schema": "public"}', "table"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_payloads_name_the_problem(body: bytes, fragment: str) -> None:
    # Given a body that is not a webhook payload / When parsed / Then 400 naming the problem
    with pytest.raises(InvalidPayload, match=fragment):
        parse_payload(body, "application/json", 10_000)


def test_insert_keys_on_record_and_keeps_bodies() -> None:
    # Given an INSERT / When turned into a change / Then the key comes from record
    change = _change(
        {"type": "INSERT", "table": "articles", "schema": "public", "record": {"id": 7, "t": "x"}}
    )
    assert (change.type, change.key, change.record, change.old_record) == (
        "INSERT",
        7,
        {"id": 7, "t": "x"},
        None,
    )


def test_delete_keys_on_old_record() -> None:
    # Given a DELETE (record is null) / When turned into a change / Then old_record gives the key
    change = _change(
        {
            "type": "DELETE",
            "table": "articles",
            "schema": "public",
            "record": None,
            "old_record": {"id": "a1b2"},
        }
    )
    assert change.key == "a1b2"


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (
            {"type": "INSERT", "table": "users", "schema": "public", "record": {"id": 1}},
            "not cached",
        ),
        ({"type": "INSERT", "table": "articles", "schema": "auth", "record": {"id": 1}}, "schema"),
        ({"type": "INSERT", "table": "articles", "schema": "public", "record": None}, "record"),
        (
            {"type": "DELETE", "table": "articles", "schema": "public", "record": {"id": 1}},
            "old_record",
        ),
        (
            {"type": "UPDATE", "table": "articles", "schema": "public", "record": {"x": 1}},
            "primary key",
        ),
        (
            {"type": "INSERT", "table": "articles", "schema": "public", "record": {"id": True}},
            "integer",
        ),
        (
            {"type": "INSERT", "table": "articles", "schema": "public", "record": {"id": 1.5}},
            "integer",
        ),
        (
            {"type": "INSERT", "table": "articles", "schema": "public", "record": {"id": ""}},
            "integer",
        ),
    ],
)
def test_changes_this_deployment_cannot_cache_are_refused(
    payload: dict[str, object], fragment: str
) -> None:
    # Given a payload for another table/schema, or without a usable key / When built / Then 400
    with pytest.raises(InvalidPayload, match=fragment):
        _change(payload)


def test_message_round_trips_through_the_contract() -> None:
    # Given a change / When serialized and parsed back / Then nothing is lost
    change = _change(
        {
            "type": "UPDATE",
            "table": "articles",
            "schema": "public",
            "record": {"id": 1, "price": 19.99, "meta": {"ü": ["🙂", None]}},
            "old_record": {"id": 1, "price": 9.5},
        }
    )
    message, queued = fit_message(change, 1_048_576)
    assert Change.from_message(message) == change == queued
    assert json.loads(message)["schema"] == "public"  # the wire name, not the Python alias


def test_oversized_message_drops_bodies_but_keeps_the_key() -> None:
    # Given a change whose bodies exceed the queue limit
    big = {"id": 9, "body": "x" * 5000}
    change = _change(
        {
            "type": "UPDATE",
            "table": "articles",
            "schema": "public",
            "record": big,
            "old_record": big,
        }
    )
    # When fitted into 2 KB
    message, queued = fit_message(change, 2048)
    # Then the message fits, carries the key, and says the bodies were dropped
    assert len(message.encode()) <= 2048
    assert (queued.key, queued.record, queued.old_record, queued.bodies_dropped) == (
        9,
        None,
        None,
        True,
    )


def test_resync_messages_carry_no_key_and_row_changes_need_one() -> None:
    # Given the two kinds of queue message / When one breaks the key rule / Then it is refused
    base = {"schema": "public", "table": "*", "received_at": NOW, "correlation_id": "c"}
    assert Change.model_validate({**base, "type": "RESYNC", "key": None}).key is None
    with pytest.raises(ValueError, match="key"):
        Change.model_validate({**base, "type": "RESYNC", "key": 1})
    with pytest.raises(ValueError, match="key"):
        Change.model_validate({**base, "type": "UPDATE", "key": None})
