"""Property tests: no request body or header set makes the receiver answer a 5xx.

The receiver is the system's one public door, and a 5xx there is a webhook Supabase drops for
good. Whatever arrives, the answer must be a 2xx (the change is queued, exactly once), a 4xx
with a JSON error (nothing queued), or, only when SQS or Secrets Manager is failing, a 503
(nothing queued). Three sources of requests: arbitrary bytes, arbitrary JSON (including what
RFC 8259 forbids: NaN, Infinity), and mutations of the real payloads in events/receiver/.
Headers, encodings (base64, UTF-16, BOMs), methods and paths vary too.

`make test` runs a fixed, derandomized set (the "ci" profile); `make soak` thousands more.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st

from receiver.handler import build_ports, lambda_handler
from tests.conftest import WEBHOOK_SECRET, EmulatedAws, LambdaContext, load_event
from tests.faults import FAULTS, SQS_ALLOWED, FaultyClient
from waituntil.core.contracts import Change
from waituntil.core.settings import ReceiverSettings
from waituntil.receive.accept import ReceiverPorts

pytestmark = pytest.mark.property

REAL_EVENTS = ("receiver/insert.json", "receiver/update.json", "receiver/delete.json")


def examples(ci: int) -> settings:
    """``ci`` examples under `make test`; the soak profile's (larger) count under `make soak`."""
    return settings(max_examples=max(ci, settings().max_examples))


# ----- strategies ---------------------------------------------------------------------------

# JSON-ish values, including what Python's json writes but RFC 8259 forbids (NaN, Infinity),
# lone surrogates, huge and tiny numbers, and the characters SQS refuses.
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**320)
    | st.floats()
    | st.text()
    | st.sampled_from(["\ud800", "\udfff", "\uffff", "\ufffe", "\x00", "\u2028", "🙂", ""])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
# Field values that reach deeper into validation than random ones would.
field_values: dict[str, st.SearchStrategy[Any]] = {
    "type": st.sampled_from(["INSERT", "UPDATE", "DELETE", "TRUNCATE", "insert", "", None, 1]),
    "table": st.sampled_from(["articles", "users", "", "articles\x00", None, ["articles"]]),
    "schema": st.sampled_from(["public", "auth", "", None]),
    "record": st.none() | json_values | st.fixed_dictionaries({"id": json_values}),
    "old_record": st.none() | json_values | st.fixed_dictionaries({"id": json_values}),
}
webhook_shaped = st.fixed_dictionaries(
    {}, optional={name: strategy for name, strategy in field_values.items()}
)


def _dumps(value: Any, ascii_only: bool = False) -> bytes:
    # allow_nan: write NaN/Infinity as Python does. ascii_only writes a lone surrogate as the
    # escape "\ud800"; otherwise surrogatepass writes it as the raw (invalid UTF-8) bytes.
    text = json.dumps(value, allow_nan=True, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutated_payload(draw: st.DrawFn) -> bytes:
    """A real webhook body, changed in one of the ways a hostile or broken sender could."""
    event = load_event(draw(st.sampled_from(REAL_EVENTS)))
    payload = json.loads(event["body"])
    text: str = event["body"]
    body = text.encode()
    how = draw(
        st.sampled_from(
            [
                "set_field",
                "drop_field",
                "set_column",
                "duplicate_key",
                "nest",
                "nan",
                "surrogate",
                "big_number",
                "truncate",
                "flip_byte",
                "insert_bytes",
                "encode",
                "wrap",
            ]
        )
    )
    row = payload.get("record") or payload.get("old_record")
    if how == "set_field":
        payload[draw(st.sampled_from(sorted(field_values)))] = draw(json_values)
    elif how == "drop_field":
        payload.pop(draw(st.sampled_from(sorted(payload))))
    elif how == "set_column":
        row[draw(st.sampled_from(["id", "title", "meta", "new"]))] = draw(json_values)
    elif how == "duplicate_key":
        name = draw(st.sampled_from(["type", "table", "id", "title"]))
        at = text.find(f'"{name}"')
        return (
            text[:at]
            + f'"{name}": {_dumps(draw(json_values), ascii_only=True).decode()}, '
            + text[at:]
        ).encode()
    elif how == "nest":
        depth = draw(st.sampled_from([100, 255, 256, 600, 1200, 5000, 50_000]))
        return body.replace(b'"intro"', b"[" * depth + b"]" * depth, 1)
    elif how == "nan":
        token = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity"]))
        return body.replace(b"4.", token + b', "x": 4.', 1)
    elif how == "surrogate":
        escape = draw(st.sampled_from([rb"\ud800", rb"\udfff", rb"\udbff\udfff", rb"\ud800\ud800"]))
        return body.replace(b"First post", escape, 1)
    elif how == "big_number":
        number = draw(
            st.sampled_from([b"1e400", b"-1e400", b"1e-400", b"9" * 5000, b"-" + b"9" * 4301])
        )
        return body.replace(b"42", number, 1 + draw(st.integers(0, 1)))
    elif how == "truncate":
        return body[: draw(st.integers(0, len(body)))]
    elif how == "flip_byte":
        at = draw(st.integers(0, len(body) - 1))
        return body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]
    elif how == "insert_bytes":
        at = draw(st.integers(0, len(body)))
        return body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
    elif how == "encode":
        encoding = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "utf-8-sig", "latin-1"]))
        return text.encode(encoding, "replace")
    else:  # wrap: the payload inside something else
        return _dumps(draw(st.sampled_from([[payload], {"payload": payload}, json.dumps(payload)])))
    return _dumps(payload, ascii_only=draw(st.booleans()))


@dataclass
class Request:
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    method: str = "POST"
    path: str = "/revalidate"
    base64: bool = False
    base64_garbage: str | None = None


header_names = st.sampled_from(
    ["Authorization", "authorization", "Content-Type", "content-type", "User-Agent", "X-Other"]
)
header_values = st.sampled_from(
    [
        f"Bearer {WEBHOOK_SECRET}",
        f"bearer {WEBHOOK_SECRET}",
        "Bearer wrong",
        "Bearer ",
        "Basic abc",
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=utf-16",
        "text/plain",
        "",
        "Bearer \ud800",
        "é" * 10,
    ]
) | st.text(max_size=30)


# Hypothesis favours the ends of a range; a list picks each element about equally often.
rarely = st.sampled_from([False] * 9 + [True])
sometimes = st.sampled_from([False, False, True])


@st.composite
def requests(draw: st.DrawFn, bodies: st.SearchStrategy[bytes]) -> Request:
    request = Request(body=draw(bodies))
    # Mostly Supabase's own headers and route, so bodies reach the parser; sometimes anything.
    if not draw(rarely):
        content_type = draw(
            st.sampled_from(["application/json", "application/json; charset=utf-8"])
        )
        request.headers = [
            ("Content-Type", content_type),
            ("Authorization", f"Bearer {WEBHOOK_SECRET}"),
            ("User-Agent", "pg_net/0.14.0"),
        ]
    if draw(sometimes):
        request.headers += draw(st.lists(st.tuples(header_names, header_values), max_size=4))
    if draw(rarely):
        request.method = draw(st.sampled_from(["GET", "PUT", "DELETE", "OPTIONS", "post", "BREW"]))
    if draw(rarely):
        request.path = draw(st.sampled_from(["/", "/revalidate/", "/Revalidate", "/revalidate/x"]))
    request.base64 = draw(sometimes)
    if request.base64 and draw(sometimes):
        request.base64_garbage = draw(st.sampled_from(["%%not base64%%", "abc", "a===", "=="]))
    return request


def _body_bytes(request: Request) -> bytes:
    """The body bytes as the receiver gets them (a text body passes through UTF-8 'replace')."""
    if request.base64:
        return request.body
    return request.body.decode("utf-8", "replace").encode()


def _event(request: Request) -> dict[str, Any]:
    event = load_event("receiver/insert.json")
    headers: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in request.headers:
        headers[name] = value  # API Gateway's "headers": the last value of each name
        multi.setdefault(name, []).append(value)
    event.update(
        httpMethod=request.method,
        path=request.path,
        headers=headers or None,
        multiValueHeaders=multi or None,
        isBase64Encoded=request.base64,
    )
    if request.base64_garbage is not None:
        event["body"] = request.base64_garbage
    elif request.base64:
        event["body"] = base64.b64encode(request.body).decode() if request.body else None
    else:
        # A REST API hands a non-binary body over as text; invalid UTF-8 arrives replaced.
        event["body"] = request.body.decode("utf-8", "replace") if request.body else None
    return event


# ----- the property -------------------------------------------------------------------------


def _as_jsonb_would_read(body: bytes) -> Any:
    """The reference reading of an accepted body: RFC 8259 JSON in UTF-8 as jsonb holds it
    (no NaN/Infinity, no duplicate keys, no lone surrogates). Raises if it is not that."""

    def no_constants(name: str) -> Any:
        raise ValueError(name)

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        assert len({name for name, _ in pairs}) == len(pairs), "duplicate key accepted"
        return dict(pairs)

    text = body.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    document = json.loads(text, parse_constant=no_constants, object_pairs_hook=no_duplicates)
    json.dumps(document, ensure_ascii=False).encode("utf-8")  # no lone surrogates
    return document


def _check_one(
    aws: EmulatedAws,
    context: LambdaContext,
    request: Request,
    fault: tuple[str, str] | None,
) -> int:
    sqs = FaultyClient(aws.sqs)
    secrets = FaultyClient(aws.secrets)
    if fault is not None:
        service, kind = fault
        target, operation = (
            (sqs, "send_message") if service == "sqs" else (secrets, "get_secret_value")
        )
        target.faults[operation] = FAULTS[kind]
    settings_ = ReceiverSettings.model_validate(aws.environment("ReceiverFunction"))
    # A fresh container each time: nothing cached, so a Secrets Manager fault is a cold start.
    ports: ReceiverPorts = build_ports(settings_, secrets_client=secrets, sqs=sqs)  # type: ignore[arg-type]

    response = lambda_handler(_event(request), context, ports=ports)

    status = int(response["statusCode"])
    # `pytest --hypothesis-show-statistics` shows how the examples split between outcomes.
    if currently_in_test_context():
        event(f"status {status}")
    queued = aws.queue_messages()
    assert isinstance(response.get("body"), str)
    answer = json.loads(response["body"])
    if 200 <= status < 300:
        # Accepted: exactly one message, a valid change, every character one SQS takes.
        assert status == 202
        assert len(queued) == 1
        assert SQS_ALLOWED.fullmatch(queued[0]["Body"])
        change = Change.from_message(queued[0]["Body"])
        assert answer == {"received": True, "id": queued[0]["MessageId"]}
        assert change.key is not None
        # What was accepted is what Supabase could have sent, and the queued bodies are the
        # sent ones, unaltered (or dropped, never changed: no NaN turned into null).
        sent = _as_jsonb_would_read(_body_bytes(request))
        if not change.bodies_dropped:
            assert (change.record, change.old_record) == (
                sent.get("record"),
                sent.get("old_record"),
            )
    else:
        # Refused or failed: a JSON error, and nothing queued.
        assert queued == []
        assert answer["received"] is False and answer["message"]
        if status == 503:
            assert fault is not None, f"503 without a fault: {answer}"
        else:
            assert 400 <= status < 500, f"{status}: {answer}"
    return status


faults = st.none() | st.tuples(st.sampled_from(["sqs", "secrets"]), st.sampled_from(sorted(FAULTS)))


@examples(ci=150)
@given(request=requests(st.binary(max_size=512)), fault=faults)
def test_arbitrary_bytes_never_get_a_5xx(
    aws: EmulatedAws, lambda_context: LambdaContext, request: Request, fault: Any
) -> None:
    _check_one(aws, lambda_context, request, fault)


@examples(ci=150)
@given(
    request=requests(
        st.builds(_dumps, st.one_of(json_values, webhook_shaped), ascii_only=st.booleans())
    ),
    fault=faults,
)
def test_arbitrary_json_never_gets_a_5xx(
    aws: EmulatedAws, lambda_context: LambdaContext, request: Request, fault: Any
) -> None:
    _check_one(aws, lambda_context, request, fault)


def _supabase_request(body: bytes, **changes: Any) -> Request:
    return Request(body=body, headers=list(SUPABASE_HEADERS), **changes)


SUPABASE_HEADERS = (
    ("Content-Type", "application/json"),
    ("Authorization", f"Bearer {WEBHOOK_SECRET}"),
    ("User-Agent", "pg_net/0.14.0"),
)
INSERT_BODY = load_event("receiver/insert.json")["body"].encode()


# The four classes the issue found, always tried whatever the draw.
@example(request=_supabase_request(INSERT_BODY.replace(b"4.5", b"NaN")), fault=None)
@example(
    request=_supabase_request(INSERT_BODY.replace(b'"intro"', b"[" * 5000 + b"]" * 5000)),
    fault=None,
)
@example(request=_supabase_request(INSERT_BODY.replace(b"First post", rb"\ud800")), fault=None)
@example(request=_supabase_request(INSERT_BODY, base64=True, base64_garbage="abc"), fault=None)
@examples(ci=300)
@given(request=requests(mutated_payload()), fault=st.none() | faults)
def test_mutated_real_payloads_never_get_a_5xx(
    aws: EmulatedAws, lambda_context: LambdaContext, request: Request, fault: Any
) -> None:
    _check_one(aws, lambda_context, request, fault)


@pytest.mark.parametrize("event_file", REAL_EVENTS)
def test_the_real_payloads_pass_the_same_check(
    aws: EmulatedAws, lambda_context: LambdaContext, event_file: str
) -> None:
    # Given each real payload with Supabase's headers / When checked as the properties are
    body = load_event(event_file)["body"].encode()
    request = Request(
        body=body,
        headers=[
            ("Content-Type", "application/json"),
            ("Authorization", f"Bearer {WEBHOOK_SECRET}"),
        ],
    )
    status = _check_one(aws, lambda_context, request, None)
    # Then it is accepted: the property's "2xx" branch is reachable, not vacuous
    assert status == 202
