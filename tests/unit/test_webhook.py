"""Receiver logic, no I/O: authentication, payload validation, message shaping."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from waituntil.core.contracts import Change, WebhookPayload
from waituntil.core.errors import (
    InvalidHeaders,
    InvalidPayload,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from waituntil.receive.webhook import (
    MAX_KEY_BYTES,
    build_change,
    check_bearer,
    check_single_headers,
    fit_message,
    parse_payload,
    request_body,
    sqs_safe,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _change(payload: dict[str, object]) -> Change:
    return build_change(
        WebhookPayload.model_validate(payload),
        cached_tables=("articles",),
        schema_name="public",
        primary_keys={"articles": "id"},
        received_at=NOW,
        correlation_id="req-1",
    )


@pytest.mark.parametrize("header", ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret "])
def test_bearer_accepts_the_secret(header: str) -> None:
    # Given the right secret in any casing of the scheme / When checked / Then no error
    check_bearer(header, ["s3cret"])


@pytest.mark.parametrize("header", [None, "", "s3cret", "Basic s3cret", "Bearer wrong", "Bearer "])
def test_bearer_refuses_anything_else(header: str | None) -> None:
    # Given a missing, malformed or wrong header / When checked / Then 401
    with pytest.raises(Unauthorized):
        check_bearer(header, ["s3cret"])


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
        (b"\xff\xfe", "UTF-8"),
        (b"\xff", "UTF-8"),
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


# ----- hostile input: what Supabase could never send is refused with a 4xx -------------------


def _body(record: str) -> bytes:
    head = '{"type": "INSERT", "table": "articles", "schema": "public", "record": '
    return (head + record + "}").encode()


def test_bearer_tries_each_accepted_secret_and_reads_none_without_a_token() -> None:
    # Given the current and the pending secret, read lazily
    read: list[str] = []

    def accepted() -> Iterator[str]:
        for secret in ("current", "pending"):
            read.append(secret)
            yield secret

    # When the pending one is presented / Then it is accepted after both were tried
    check_bearer("Bearer pending", accepted())
    assert read == ["current", "pending"]
    # When no token is presented / Then 401 and no secret was read at all
    read.clear()
    with pytest.raises(Unauthorized):
        check_bearer(None, accepted())
    assert read == []
    # When a token matches neither / Then 401
    with pytest.raises(Unauthorized):
        check_bearer("Bearer previous", accepted())


def test_bearer_survives_a_header_that_is_not_encodable() -> None:
    # Given a header value holding a lone surrogate / When checked / Then 401, not a crash
    with pytest.raises(Unauthorized):
        check_bearer("Bearer \ud800", ["s3cret"])


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        ('{"id": 1, "x": NaN}', "NaN"),
        ('{"id": 1, "x": Infinity}', "Infinity"),
        ('{"id": 1, "x": -Infinity}', "Infinity"),
        ('{"id": 1, "x": "\\ud800"}', "surrogate"),
        ('{"id": 1, "x": ["\\udfff", 1]}', "surrogate"),
        ('{"id": 1, "id": 2}', "repeats the key 'id'"),
        # Past the parser: about 1,000 levels on Python 3.11, 10,000 on 3.13.
        ('{"id": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ('{"id": 1e400}', "integer"),
        ('{"id": ' + "9" * 5000 + "}", "integer"),
        ('{"id": "' + "k" * (MAX_KEY_BYTES + 1) + '"}', "longer than"),
        ('{"id": ' + "9" * (MAX_KEY_BYTES + 1) + "}", "longer than"),
    ],
)
def test_json_that_jsonb_could_never_hold_is_refused(record: str, fragment: str) -> None:
    # Given a body Python's json module would take but Supabase could never send
    body = _body(record)
    # When parsed and built / Then 400 naming the problem
    with pytest.raises(InvalidPayload, match=fragment):
        _change(parse_payload(body, "application/json", 10_000_000).model_dump(by_alias=True))


def test_duplicate_keys_at_the_top_level_are_refused_too() -> None:
    # Given two "type" members (another parser could read the first one, we the last)
    body = b'{"type": "DELETE", "type": "INSERT", "table": "articles", "schema": "public"}'
    # When parsed / Then 400: ambiguous, not guessed
    with pytest.raises(InvalidPayload, match="repeats the key 'type'"):
        parse_payload(body, "application/json", 10_000)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (_body('{"id": 1}').decode().encode("utf-16"), "UTF-16/32"),
        (_body('{"id": 1}').decode().encode("utf-32"), "UTF-16/32"),
        (_body('{"id": 1}').decode().encode("utf-16-le"), "not valid JSON"),
        (_body('{"id": 1, "t": "caf\u00e9"}').decode().encode("latin-1"), "UTF-8"),
        (b"", "not valid JSON"),
        (b"   ", "not valid JSON"),
        (b"null", "JSON object"),
        (b'"a string"', "JSON object"),
    ],
)
def test_bodies_that_are_not_utf8_json_objects_are_refused(body: bytes, fragment: str) -> None:
    # Given a body in another encoding, empty, or not an object / When parsed / Then 400
    with pytest.raises(InvalidPayload, match=fragment):
        parse_payload(body, "application/json", 10_000)


def test_a_utf8_byte_order_mark_is_ignored() -> None:
    # Given a UTF-8 body with a BOM (RFC 8259 lets parsers ignore it) / When parsed
    payload = parse_payload(b"\xef\xbb\xbf" + _body('{"id": 1}'), "application/json", 10_000)
    # Then it is the payload
    assert payload.record == {"id": 1}


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-16", "application/json;charset=latin1"]
)
def test_a_charset_other_than_utf8_is_refused(content_type: str) -> None:
    # Given a declared non-UTF-8 charset / When parsed / Then 415
    with pytest.raises(UnsupportedMediaType, match="charset"):
        parse_payload(_body('{"id": 1}'), content_type, 10_000)


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=UTF-8", 'Application/JSON; charset="utf-8"']
)
def test_utf8_charset_spellings_are_accepted(content_type: str) -> None:
    # Given UTF-8 declared in any casing or quoting / When parsed / Then accepted
    assert parse_payload(_body('{"id": 1}'), content_type, 10_000).type == "INSERT"


def test_base64_bodies_are_decoded_and_bad_base64_is_a_400() -> None:
    # Given the gateway's base64 form of a body / When decoded / Then the original bytes
    assert request_body(base64.b64encode(b'{"a": 1}').decode(), True) == b'{"a": 1}'
    assert request_body(None, False) == b""
    # Given text marked base64 that is not / When decoded / Then 400
    with pytest.raises(InvalidPayload, match="base64"):
        request_body("not base64!", True)


def test_a_body_string_holding_a_lone_surrogate_is_refused_not_crashed() -> None:
    # Given an event body (text) with a lone surrogate / When encoded and parsed / Then 400
    raw = request_body('{"type": "\udc80"}', False)
    with pytest.raises(InvalidPayload, match="UTF-8"):
        parse_payload(raw, "application/json", 10_000)


def test_repeated_singleton_headers_are_refused() -> None:
    # Given two Authorization values, or two spellings of Content-Type
    with pytest.raises(InvalidHeaders, match="authorization"):
        check_single_headers({"Authorization": ["Bearer a", "Bearer b"]})
    with pytest.raises(InvalidHeaders, match="content-type"):
        check_single_headers({"Content-Type": ["application/json"], "content-type": ["x"]})
    # Given each once, and other headers repeated / Then accepted
    check_single_headers({"Authorization": ["Bearer a"], "Accept": ["a", "b"]})
    check_single_headers(None)


def test_error_messages_do_not_echo_huge_values() -> None:
    # Given a 1 MB table name / When refused / Then the message stays short
    payload: dict[str, object] = {
        "type": "INSERT",
        "table": "t" * 1_000_000,
        "schema": "public",
        "record": {"id": 1},
    }
    with pytest.raises(InvalidPayload) as refused:
        _change(payload)
    assert len(str(refused.value)) < 200


@pytest.mark.parametrize(
    ("value", "literal"), [("1e400", "1e400"), ("-1e400", "-1e400"), ("9" * 5000, "9" * 5000)]
)
def test_numbers_python_cannot_hold_are_queued_by_key(value: str, literal: str) -> None:
    # Given a row with a numeric column beyond a double or Python's int conversion limit
    # (Postgres numeric can hold both)
    payload = parse_payload(_body('{"id": 3, "n": ' + value + "}"), "application/json", 10**7)
    # When fitted into a message
    message, queued = fit_message(_change(payload.model_dump(by_alias=True)), 1_048_576)
    # Then the change is queued by key, the bodies dropped rather than altered (inf, null)
    assert (queued.key, queued.record, queued.bodies_dropped) == (3, None, True)
    assert Change.from_message(message) == queued
    assert literal not in message


def test_bodies_deeper_than_the_serializer_goes_are_queued_by_key() -> None:
    # Given a row whose jsonb column nests 400 levels (parsable, but pydantic writes 255)
    payload = parse_payload(
        _body('{"id": 4, "j": ' + "[" * 400 + "]" * 400 + "}"), "application/json", 10**7
    )
    # When fitted / Then queued by key with the bodies dropped
    _, queued = fit_message(_change(payload.model_dump(by_alias=True)), 1_048_576)
    assert (queued.key, queued.bodies_dropped) == (4, True)


def test_characters_sqs_refuses_are_escaped_and_survive_the_round_trip() -> None:
    # Given a row with U+FFFE, U+FFFF (Postgres text holds them; SQS refuses them) and others
    record = {"id": 5, "t": "a\ufffe\uffffb\x00\x1f\u2028\U0001f600\ud7ff\ue000"}
    change = _change({"type": "INSERT", "table": "articles", "schema": "public", "record": record})
    # When fitted into a message
    message, queued = fit_message(change, 1_048_576)
    # Then every character is one SQS accepts, and the consumer reads back the same row
    allowed = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
    assert allowed.fullmatch(message)
    assert Change.from_message(message).record == record
    assert queued.bodies_dropped is False
    assert sqs_safe("plain") == "plain"


def test_sqs_safe_escapes_exactly_the_characters_sqs_refuses() -> None:
    # Given every code point, and SQS's list of allowed characters as its documentation words it
    # (#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF)
    def allowed(point: int) -> bool:
        return point in (0x9, 0xA, 0xD) or any(
            low <= point <= high
            for low, high in ((0x20, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF))
        )

    # When each is passed alone through sqs_safe
    changed = {point for point in range(0x110000) if sqs_safe(chr(point)) != chr(point)}
    # Then exactly the refused ones were escaped, each as the \\uXXXX JSON reads back
    assert changed == {point for point in range(0x110000) if not allowed(point)}
    assert sqs_safe("a\ufffeb\x00") == "a\\ufffeb\\u0000"


@pytest.mark.parametrize("depth", [190, 197, 198, 199, 200, 230, 253, 254])
def test_every_queued_message_is_one_the_consumer_can_parse(depth: int) -> None:
    # Given a row whose jsonb column nests ``depth`` levels: the serializer writes up to 255,
    # the consumer's parser reads 200 levels of the whole message
    payload = parse_payload(
        _body('{"id": 4, "j": ' + "[" * depth + "]" * depth + "}"), "application/json", 10**7
    )
    # When it is fitted into a message
    message, queued = fit_message(_change(payload.model_dump(by_alias=True)), 1_048_576)
    # Then the consumer parses that message: as it was, or by key with the bodies dropped
    assert Change.from_message(message) == queued
    assert queued.key == 4
    if depth <= 190 or depth >= 230:
        assert queued.bodies_dropped == (depth >= 230)


@pytest.mark.parametrize("old_key", [True, "k" * (MAX_KEY_BYTES + 1), None, ""])
def test_an_old_key_the_cache_could_never_hold_is_not_queued(old_key: object) -> None:
    # Given an UPDATE from a key the cache refuses (so nothing is cached under it) to a good one
    payload: dict[str, object] = {
        "type": "UPDATE",
        "table": "articles",
        "schema": "public",
        "record": {"id": 1},
        "old_record": {"id": old_key},
    }
    # When turned into a change / Then the new key's change goes, without an old key
    change = _change(payload)
    assert (change.key, change.old_key) == (1, None)


def test_both_keys_of_a_key_change_travel_when_the_bodies_cannot() -> None:
    # Given an UPDATE that changed the key, with bodies too large for the message
    change = _change(
        {
            "type": "UPDATE",
            "table": "articles",
            "schema": "public",
            "record": {"id": 30, "text": "x" * 5000},
            "old_record": {"id": 3, "text": "x" * 5000},
        }
    )
    # When fitted into a 2 KB message
    message, queued = fit_message(change, 2048)
    # Then it goes by key, with both keys
    assert queued.bodies_dropped
    assert (Change.from_message(message).key, Change.from_message(message).old_key) == (30, 3)
