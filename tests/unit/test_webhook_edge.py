"""The webhook's edge, evaluated on the template's own rules and limits.

What reaches the receiver is decided before it runs, by AWS WAF (the WebhookGate web ACL) and
then API Gateway's throttle. Neither runs here, so both are modelled, each small enough to read
whole, and fed the template's values: a change to a rule or a limit changes what these tests
see. The models:

- AWS WAF evaluates a web ACL's rules by priority; the first that matches with Allow or Block
  decides, otherwise the default action does. The statements WebhookGate uses are evaluated
  (And, Not, ByteMatch, RegexMatch; text transformations NONE and URL_DECODE); any other one
  raises, so the model cannot silently skip a rule it does not know.
- API Gateway throttles each method with a token bucket: ``burst`` tokens, refilled at
  ``rate`` a second; a request finding none is answered 429. The most specific method setting
  applies (a resource path and method, else ``/*`` ``*``).
- pg_net sends a bulk insert's webhooks in batches of up to ``pg_net.batch_size`` (200) per
  worker cycle, about 200 a second by design; faster cycles are tried too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest

from local.template import Resolver, load_template

GATE_KEY = "a-gate-key-only-supabase-sends"
PG_NET_BATCH = 200
BULK_INSERT_ROWS = 10_000


@dataclass(frozen=True)
class Request:
    at_s: float
    method: str
    path: str  # as sent, percent-encoding included
    headers: dict[str, str] = field(default_factory=dict)
    sender: str = "supabase"


def _resolved_template() -> tuple[dict[str, Any], Resolver]:
    template = load_template()
    return template, Resolver(template, parameters={"WebhookGateKey": GATE_KEY})


# ----- AWS WAF -------------------------------------------------------------------------------


def _field(to_match: dict[str, Any], request: Request) -> str | None:
    if "UriPath" in to_match:
        return request.path
    if "SingleHeader" in to_match:
        name = to_match["SingleHeader"]["Name"].lower()
        return next((v for k, v in request.headers.items() if k.lower() == name), None)
    raise NotImplementedError(f"the model does not read {to_match}")


def _transformed(value: str, transformations: list[dict[str, Any]]) -> str:
    for transformation in sorted(transformations, key=lambda t: int(t["Priority"])):
        kind = transformation["Type"]
        if kind == "URL_DECODE":
            value = unquote(value)
        elif kind != "NONE":
            raise NotImplementedError(f"the model does not apply {kind}")
    return value


def _matches(statement: dict[str, Any], request: Request) -> bool:
    ((kind, body),) = statement.items()
    if kind == "AndStatement":
        return all(_matches(part, request) for part in body["Statements"])
    if kind == "OrStatement":
        return any(_matches(part, request) for part in body["Statements"])
    if kind == "NotStatement":
        return not _matches(body["Statement"], request)
    if kind in ("ByteMatchStatement", "RegexMatchStatement"):
        raw = _field(body["FieldToMatch"], request)
        if raw is None:  # a missing header matches nothing
            return False
        value = _transformed(raw, body["TextTransformations"])
        if kind == "RegexMatchStatement":
            return re.search(body["RegexString"], value) is not None
        search, constraint = str(body["SearchString"]), body["PositionalConstraint"]
        return {
            "EXACTLY": value == search,
            "STARTS_WITH": value.startswith(search),
            "ENDS_WITH": value.endswith(search),
            "CONTAINS": search in value,
        }[constraint]
    raise NotImplementedError(f"the model does not evaluate {kind}")


def waf_status(web_acls: list[dict[str, Any]], request: Request) -> int | None:
    """The status a web ACL blocks the request with, or None when it lets it through."""
    for acl in web_acls:
        decided = False
        for rule in sorted(acl["Rules"], key=lambda r: int(r["Priority"])):
            if not _matches(rule["Statement"], request):
                continue
            action = rule["Action"]
            if "Block" in action:
                return int((action["Block"].get("CustomResponse") or {}).get("ResponseCode", 403))
            if "Allow" in action:
                decided = True
                break
        if not decided and "Block" in acl["DefaultAction"]:
            return 403
    return None


def associated_web_acls(template: dict[str, Any], resolver: Resolver) -> list[dict[str, Any]]:
    """The web ACLs associated with the API's stage, resolved."""
    acls = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::WAFv2::WebACLAssociation":
            continue
        target = resource["Properties"]["ResourceArn"]
        if "${Api}" not in str(target) or "${Api.Stage}" not in str(target):
            continue
        (acl_id, _) = resource["Properties"]["WebACLArn"]["Fn::GetAtt"]
        acls.append(resolver.resolve(template["Resources"][acl_id]["Properties"]))
    return acls


# ----- API Gateway's throttle ----------------------------------------------------------------


def method_limits(
    template: dict[str, Any], resolver: Resolver, path: str, method: str
) -> tuple[float, float]:
    """(rate, burst) of the most specific stage method setting for a resource and method."""
    settings = resolver.resolve(template["Resources"]["Api"]["Properties"]["MethodSettings"])
    resource = path.replace("/", "~1")
    ranked = sorted(
        settings,
        key=lambda s: (s["ResourcePath"] == f"/{resource}", s["HttpMethod"] == method),
        reverse=True,
    )
    for setting in ranked:
        if setting["ResourcePath"] in ("/*", f"/{resource}") and setting["HttpMethod"] in (
            "*",
            method,
        ):
            return float(setting["ThrottlingRateLimit"]), float(setting["ThrottlingBurstLimit"])
    raise AssertionError(f"no throttle for {method} {path}")


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float = -1.0
    last_s: float = 0.0

    def admit(self, at_s: float) -> bool:
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (at_s - self.last_s) * self.rate)
        self.last_s = at_s
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def edge(requests: Iterable[Request]) -> Iterator[tuple[Request, int]]:
    """Each request with the status the edge answers it (0: it reaches the receiver)."""
    template, resolver = _resolved_template()
    acls = associated_web_acls(template, resolver)
    bucket = TokenBucket(*method_limits(template, resolver, "/revalidate", "POST"))
    for request in sorted(requests, key=lambda r: r.at_s):
        blocked = waf_status(acls, request)
        if blocked is not None:
            yield request, blocked
        elif not bucket.admit(request.at_s):
            yield request, 429
        else:
            yield request, 0


# ----- senders -------------------------------------------------------------------------------

SUPABASE_HEADERS = {
    "Content-Type": "application/json",
    "Authorization": "Bearer the-webhook-secret",
    "X-Webhook-Gate": GATE_KEY,
}


def pg_net_bulk_insert(rows: int, cycle_s: float) -> list[Request]:
    """A bulk insert's webhooks as pg_net sends them: ``PG_NET_BATCH`` at once per cycle."""
    return [
        Request(
            at_s=(index // PG_NET_BATCH) * cycle_s,
            method="POST",
            path="/v1/revalidate",
            headers=dict(SUPABASE_HEADERS),
        )
        for index in range(rows)
    ]


def flood(per_s: int, seconds: int, headers: dict[str, str]) -> list[Request]:
    return [
        Request(
            at_s=i / per_s, method="POST", path="/v1/revalidate", headers=headers, sender="flood"
        )
        for i in range(per_s * seconds)
    ]


# ----- the requirements ----------------------------------------------------------------------


@pytest.mark.parametrize("cycle_s", [1.0, 0.5, 0.25])
def test_a_bulk_insert_of_10000_rows_is_never_throttled(cycle_s: float) -> None:
    # Given a 10,000-row bulk insert's webhooks, 200 per pg_net cycle: one cycle a second (the
    # documented ~200/s), and two and four times faster
    requests = pg_net_bulk_insert(BULK_INSERT_ROWS, cycle_s)
    # When they pass the gate and the webhook's throttle
    answers = [status for _, status in edge(requests)]
    # Then every one reaches the receiver
    assert answers.count(0) == BULK_INSERT_ROWS, {s: answers.count(s) for s in set(answers)}


@pytest.mark.parametrize(
    "flood_headers",
    [
        pytest.param({"Content-Type": "application/json"}, id="no headers"),
        pytest.param({"Authorization": "Bearer guess", "X-Webhook-Gate": "guess"}, id="guessed"),
        pytest.param({"Authorization": "Bearer guess", "x-webhook-gate": ""}, id="empty gate"),
    ],
)
def test_a_flood_without_the_gate_key_takes_nothing_supabase_needs(
    flood_headers: dict[str, str],
) -> None:
    # Given 5,000 requests a second for 10 s without the gate key, while Supabase sends a
    # 2,000-row bulk insert at its usual rate
    requests = flood(5_000, 10, flood_headers) + pg_net_bulk_insert(2_000, 1.0)
    # When both reach the edge
    answered = list(edge(requests))
    # Then every webhook of Supabase's reaches the receiver, and none of the flood does
    supabase = [status for request, status in answered if request.sender == "supabase"]
    flooded = [status for request, status in answered if request.sender == "flood"]
    assert supabase == [0] * 2_000
    assert set(flooded) == {403}


@pytest.mark.parametrize(
    ("path", "blocked"),
    [
        ("/v1/revalidate", True),
        ("/revalidate", True),  # a custom domain mapped at its root
        ("/v1/revalidate/", True),
        ("/v1/revalidat%65", True),  # API Gateway decodes the path before routing
        ("/v1/articles", False),
        ("/v1/articles/42", False),
        ("/v1/articles/revalidate", False),  # a row whose key is "revalidate"
    ],
)
def test_the_gate_closes_the_webhook_path_only(path: str, blocked: bool) -> None:
    # Given a request without the gate key
    template, resolver = _resolved_template()
    request = Request(at_s=0, method="POST" if blocked else "GET", path=path)
    # When the web ACLs of the API's stage evaluate it
    status = waf_status(associated_web_acls(template, resolver), request)
    # Then only the webhook's path is closed (with a 403 naming the header), reads pass
    assert status == (403 if blocked else None)


def test_the_gate_lets_the_key_through_on_any_method() -> None:
    # Given requests that carry the gate key
    template, resolver = _resolved_template()
    acls = associated_web_acls(template, resolver)
    # When sent with POST or another method (the receiver answers those 405 itself)
    statuses = {
        method: waf_status(acls, Request(0, method, "/v1/revalidate", {"X-Webhook-Gate": GATE_KEY}))
        for method in ("POST", "GET", "PUT")
    }
    # Then the gate lets them through
    assert statuses == {"POST": None, "GET": None, "PUT": None}


def test_reads_keep_their_own_throttle() -> None:
    # Given the stage's method settings
    template, resolver = _resolved_template()
    # When the limits of a read and of the webhook are looked up
    read = method_limits(template, resolver, "/{table}", "GET")
    webhook = method_limits(template, resolver, "/revalidate", "POST")
    # Then the webhook's bucket is its own, and at least five times pg_net's rate
    assert read != webhook
    assert webhook[0] >= 5 * PG_NET_BATCH
    assert webhook[1] >= 2 * PG_NET_BATCH
