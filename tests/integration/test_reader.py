"""The reader handler in-process, under moto DynamoDB from template.yaml, seeded by CacheStore."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import pytest

from reader.handler import ReaderPorts, build_ports, lambda_handler
from tests.conftest import EmulatedAws, LambdaContext, load_event
from waituntil.adapters.cache_store import CacheStore
from waituntil.cache.layout import content_etag, dump_json, fresh_rows
from waituntil.cache.list_patch import ListSizes, plan_patch
from waituntil.cache.model import RowState, position_tag
from waituntil.core.list_order import ListOrder
from waituntil.core.settings import ReaderSettings
from waituntil.read.cache_client import read_version
from waituntil.read.response import MAX_RESPONSE_BYTES

ROW_42: dict[str, Any] = json.loads(load_event("receiver/insert.json")["body"])["record"]
T0 = 1_796_000_000_000_000_000  # ns: Mon, 30 Nov 2026 00:53:20 GMT
GRACE_S = 60


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Reader:
    aws: EmulatedAws
    context: LambdaContext
    ports: ReaderPorts
    store: CacheStore  # the consumer's writer, on the same clock
    clock: Clock

    def seed(
        self,
        rows: list[dict[str, Any]],
        *,
        read_at_ns: int,
        chunk_bytes: int = 512,
        touched: tuple[int, ...] = (),
        items: bool = True,
    ) -> None:
        """What the consumer does: rows to their items, then the list flips to a new version
        holding ``rows`` (rows of the previous version missing here are removed)."""
        order = ListOrder("id")
        policy = self.ports.settings.policy("articles").fingerprint
        keys = [str(row["id"]) for row in rows] + [str(key) for key in touched]
        fresh = fresh_rows(list(dict.fromkeys(keys)), rows, order)
        if items:
            self.store.write_rows(
                "articles", fresh, read_at_ns=read_at_ns, order=order, policy=policy
            )
        base = self.store.get_head("articles")
        states = {
            row.key: RowState(
                key=row.key,
                body=row.body,
                read_at_ns=read_at_ns,
                position=row.position,
                positions=frozenset({position_tag(read_at_ns, row.position)})
                if row.position
                else frozenset(),
                policy=policy,
            )
            for row in fresh
        }
        if items:  # as the consumer does: the states that won, read back
            states = self.store.get_rows("articles", list(states))
        if base is not None:  # rows that are gone in this version
            listed = read_version(self.store, base) or []
            for old in listed:
                key = str(old["id"])
                if key not in states or states[key].body is None:
                    states[key] = RowState(
                        key=key,
                        body=None,
                        read_at_ns=read_at_ns,
                        position=None,
                        positions=frozenset({position_tag(read_at_ns - 1, (old["id"],))}),
                    )
        plan = plan_patch(
            self.store,
            "articles",
            base,
            states,
            order,
            ListSizes(chunk_bytes=chunk_bytes),
            now_ns=read_at_ns,
            nonce=f"seed{read_at_ns}",
            policy=policy,
        )
        assert plan.head is not None
        self.store.write_nodes("articles", plan.chunks, plan.pages)
        assert self.store.flip_head(plan.head, base)
        self.store.retire(
            "articles", plan.retired_chunks, plan.retired_pages, base.version if base else None
        )

    def get(
        self,
        event_file: str = "reader/list.json",
        *,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        method: str | None = None,
        ports: ReaderPorts | None = None,
    ) -> dict[str, Any]:
        event = copy.deepcopy(load_event(event_file))
        if query is not None:
            event["queryStringParameters"] = query
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
        for name, value in (headers or {}).items():
            event["headers"][name] = value
            event["multiValueHeaders"][name] = [value]
        if method:
            event["httpMethod"] = event["requestContext"]["httpMethod"] = method
        response: dict[str, Any] = lambda_handler(event, self.context, ports=ports or self.ports)
        response["h"] = {
            name: ", ".join(values) for name, values in response["multiValueHeaders"].items()
        }
        body = response.get("body")
        response["json"] = json.loads(body) if body else None
        return response


@pytest.fixture
def reader(aws: EmulatedAws, lambda_context: LambdaContext) -> Reader:
    clock = Clock()
    store = CacheStore(
        aws.stack.table_name, aws.dynamodb, sleep=lambda _: None, clock=clock, grace_s=GRACE_S
    )
    settings = ReaderSettings.model_validate(aws.environment("ReaderFunction"))
    ports = ReaderPorts(settings=settings, store=store)
    return Reader(aws=aws, context=lambda_context, ports=ports, store=store, clock=clock)


def _rows(count: int, title: str = "t", size: int = 40) -> list[dict[str, Any]]:
    return [{"id": n, "title": title, "text": "x" * size} for n in range(1, count + 1)]


# The bundled events' requestContext: domainName and path (stage included).
LIST_URL = "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/articles"


def _links(response: dict[str, Any]) -> dict[str, dict[str, str]]:
    """rel -> query parameters of each Link target (absolute: the requested URL and a query)."""
    result = {}
    for part in response["h"]["Link"].split(", "):
        target, relation = part.split("; ")
        assert target.startswith(f"<{LIST_URL}?") and target.endswith(">")
        result[relation.split('"')[1]] = dict(parse_qsl(target[len(LIST_URL) + 2 : -1]))
    return result


# ----- rows -----------------------------------------------------------------------------------


def test_a_cached_row_is_served_as_stored_with_validators(reader: Reader) -> None:
    # Given row 42 cached by the consumer
    reader.seed([ROW_42], read_at_ns=T0)
    # When it is read
    response = reader.get("reader/item.json")
    # Then the body is the stored JSON text itself, with its content hash as ETag
    stored = dump_json(ROW_42)
    assert response["statusCode"] == 200
    assert response["body"] == stored
    assert response["h"]["Content-Type"] == "application/json"
    assert response["h"]["ETag"] == f'"{content_etag(stored)}"'
    assert response["h"]["Last-Modified"] == "Mon, 30 Nov 2026 00:53:20 GMT"
    assert response["h"]["Cache-Control"] == "public, max-age=60, stale-while-revalidate=300"


def test_head_answers_what_get_would_so_the_gateway_can_give_its_length(reader: Reader) -> None:
    # Given row 42 and a list of three pages cached
    reader.seed([ROW_42], read_at_ns=T0)
    reader.seed(_rows(30), read_at_ns=T0 + 1)
    # When a row and a page are asked for with GET and with HEAD
    pairs = [
        (reader.get("reader/item.json"), reader.get("reader/item_head.json")),
        (reader.get(query={"page": "2"}), reader.get(query={"page": "2"}, method="HEAD")),
    ]
    # Then HEAD has GET's status, headers and body: API Gateway drops the body on the wire and
    # keeps its Content-Length (a body-less reply would announce Content-Length: 0)
    for get, head in pairs:
        assert head["statusCode"] == get["statusCode"] == 200
        assert head["h"] == get["h"]
        assert head["body"] == get["body"] != ""


def test_the_etag_round_trip_answers_304_without_a_body(reader: Reader) -> None:
    # Given a client that read row 42 and kept its ETag
    reader.seed([ROW_42], read_at_ns=T0)
    etag = reader.get("reader/item.json")["h"]["ETag"]
    # When it revalidates (the bundled event lists a weak miss and the right tag)
    assert etag in load_event("reader/if_none_match.json")["headers"]["If-None-Match"]
    response = reader.get("reader/if_none_match.json")
    # Then 304, no body, same validators
    assert (response["statusCode"], response["body"]) == (304, "")
    assert response["h"]["ETag"] == etag
    assert "Content-Type" not in response["h"]
    # When the row changes / Then the old tag no longer matches and the new row is served
    changed = {**ROW_42, "title": "Changed"}
    reader.seed([changed], read_at_ns=T0 + 1)
    again = reader.get("reader/if_none_match.json")
    assert (again["statusCode"], again["json"]["title"]) == (200, "Changed")
    # And If-None-Match: * matches whatever exists
    assert reader.get("reader/item.json", headers={"If-None-Match": "*"})["statusCode"] == 304


def test_if_modified_since_is_honoured_without_if_none_match(reader: Reader) -> None:
    reader.seed([ROW_42], read_at_ns=T0)
    last_modified = reader.get("reader/item.json")["h"]["Last-Modified"]
    response = reader.get("reader/item.json", headers={"If-Modified-Since": last_modified})
    assert response["statusCode"] == 304


@pytest.mark.parametrize("deleted", [False, True])
def test_a_missing_or_deleted_row_is_404(reader: Reader, deleted: bool) -> None:
    # Given row 404 never cached, or cached and then deleted (a tombstone)
    if deleted:
        reader.seed([{"id": 404, "title": "soon gone"}], read_at_ns=T0)
        reader.seed([], read_at_ns=T0 + 1, touched=(404,))
    # When read / Then a JSON 404 that no cache keeps
    response = reader.get("reader/item_missing.json")
    assert response["statusCode"] == 404
    assert response["json"]["error"] == "Not Found"
    assert response["h"]["Cache-Control"] == "no-store"


# ----- the list -------------------------------------------------------------------------------


def test_list_pages_link_to_each_other_with_counts(reader: Reader) -> None:
    # Given 30 rows stored in several chunks
    rows = _rows(30)
    reader.seed(rows, read_at_ns=T0)
    # When the first page is read without parameters
    first = reader.get()
    pages = int(first["h"]["X-Page-Count"])
    assert pages >= 3
    assert first["h"]["X-Total-Count"] == "30"
    assert (first["h"]["X-Page"], set(_links(first))) == ("1", {"next", "first", "last"})
    # Then following rel="next" walks every page once, in order, to the last one
    seen, response = list(first["json"]), first
    for number in range(2, pages + 1):
        response = reader.get(query=_links(response)["next"])
        assert response["statusCode"] == 200
        assert response["h"]["X-Page"] == str(number)
        assert "prev" in _links(response)
        seen += response["json"]
    assert "next" not in _links(response)
    assert seen == rows
    # And rel="last" and ?page=N name the same page as the walk reached
    assert reader.get(query=_links(first)["last"])["body"] == response["body"]
    assert reader.get(query={"page": str(pages)})["body"] == response["body"]


def test_the_bundled_page_2_event_serves_the_second_chunk(reader: Reader) -> None:
    reader.seed(_rows(30), read_at_ns=T0)
    first, second = reader.get(), reader.get("reader/list_page_2.json")
    assert second["statusCode"] == 200
    assert second["json"][0]["id"] == first["json"][-1]["id"] + 1


def test_a_list_larger_than_6_mb_is_served_in_pages_under_6_mb(reader: Reader) -> None:
    # Given about 7 MB of rows (the consumer's default chunk size)
    rows = _rows(7_000, size=1_000)
    reader.seed(rows, read_at_ns=T0, chunk_bytes=256_000, items=False)
    assert len(dump_json(rows)) > 7_000_000
    # When every page is read by following the links
    response, served, largest = reader.get(), [], 0
    while True:
        largest = max(largest, len(json.dumps(response)))
        served += response["json"]
        if "next" not in _links(response):
            break
        response = reader.get(query=_links(response)["next"])
    # Then each Lambda response stays far under 6 MB and together they are the whole list
    assert largest < MAX_RESPONSE_BYTES
    assert served == rows


def test_a_list_page_round_trips_its_etag(reader: Reader) -> None:
    # Given page 2 read once
    reader.seed(_rows(30), read_at_ns=T0)
    page_2 = reader.get("reader/list_page_2.json")
    etag = page_2["h"]["ETag"]
    # When revalidated, weakly, by page number and by cursor / Then 304 with the page headers
    for query in ({"page": "2"}, _links(reader.get())["next"]):
        response = reader.get(query=query, headers={"If-None-Match": f"W/{etag}"})
        assert (response["statusCode"], response["body"]) == (304, "")
        assert response["h"]["ETag"] == etag
        assert response["h"]["X-Total-Count"] == "30"
    # When the list grows at its end / Then page 2 is the same rows, still 304
    reader.seed(_rows(31), read_at_ns=T0 + 1)
    same = reader.get(query={"page": "2"}, headers={"If-None-Match": etag})
    assert same["statusCode"] == 304
    # When the rows of page 2 change / Then page 2 has a new ETag and is served again
    reader.seed(_rows(31, title="t2"), read_at_ns=T0 + 2)
    changed = reader.get(query={"page": "2"}, headers={"If-None-Match": etag})
    assert changed["statusCode"] == 200
    assert changed["h"]["ETag"] != etag


def test_a_cursor_keeps_its_version_until_retired_and_then_is_gone(reader: Reader) -> None:
    # Given page 1 of version 1 read by a client
    reader.seed(_rows(30, title="v1"), read_at_ns=T0)
    first = reader.get()
    next_link = _links(first)["next"]
    # When the list switches to version 2 before the client asks for page 2
    reader.seed(_rows(40, title="v2"), read_at_ns=T0 + 10**9)
    pinned = reader.get(query=next_link)
    # Then page 2 through the cursor is still version 1 (old chunks are within their grace)
    assert pinned["statusCode"] == 200
    assert {row["title"] for row in pinned["json"]} == {"v1"}
    assert pinned["h"]["X-Total-Count"] == first["h"]["X-Total-Count"] == "30"
    assert pinned["h"]["Last-Modified"] == first["h"]["Last-Modified"]
    # And a fresh read gets version 2, whole
    fresh = reader.get(query={"page": "2"})
    assert {row["title"] for row in fresh["json"]} == {"v2"}
    assert fresh["h"]["X-Total-Count"] == "40"
    # When the grace period has passed / Then the cursor is 410 with a way back to page 1
    reader.clock.now += GRACE_S + 1
    gone = reader.get(query=next_link)
    assert gone["statusCode"] == 410
    assert "first page" in gone["json"]["message"]
    assert gone["h"]["Link"] == f'<{LIST_URL}?page=1>; rel="first"'


def test_a_list_not_cached_yet_is_404(reader: Reader) -> None:
    response = reader.get()
    assert (response["statusCode"], response["json"]["error"]) == (404, "Not Found")


def test_bad_pages_and_cursors_are_400(reader: Reader) -> None:
    # Given a cached list of one page
    reader.seed(_rows(3), read_at_ns=T0)
    # When a page or cursor is malformed, or past the end / Then 400 with a reason
    for query in (
        {"page": "0"},
        {"page": "x"},
        {"page": "99"},
        {"cursor": "bogus"},
        {"cursor": ""},
    ):
        response = reader.get(query=query)
        assert (response["statusCode"], bool(response["json"]["message"])) == (400, True), query


# ----- refusals -------------------------------------------------------------------------------


def test_bundled_refusals_are_json_errors(reader: Reader) -> None:
    # Given a cached table
    reader.seed([ROW_42], read_at_ns=T0)
    # When each refused request of events/reader arrives / Then the status says why, in JSON
    for event_file, status in [
        ("reader/item_missing.json", 404),
        ("reader/unknown_table.json", 404),
        ("reader/bad_id.json", 400),
        ("reader/list_bad_page.json", 400),
        ("reader/list_bad_cursor.json", 400),
        ("reader/wrong_method.json", 405),
    ]:
        response = reader.get(event_file)
        assert (response["statusCode"], bool(response["json"]["message"])) == (status, True)


def test_other_methods_are_405_with_allow(reader: Reader) -> None:
    # Given both read routes / When called with any other method / Then 405, Allow: GET, HEAD
    for event_file in ("reader/list.json", "reader/item.json"):
        for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"):
            response = reader.get(event_file, method=method)
            assert response["statusCode"] == 405, (event_file, method)
            assert response["h"]["Allow"] == "GET, HEAD"


def test_an_id_the_router_pattern_rejects_is_still_served(reader: Reader) -> None:
    # Given a text key with a quote, delivered decoded (as the local stack does)
    reader.seed([{"id": 'say "hi"', "title": "quoted"}], read_at_ns=T0)
    event = copy.deepcopy(load_event("reader/item.json"))
    event["path"] = '/articles/say "hi"'
    event["pathParameters"]["id"] = "say%20%22hi%22"
    # When read / Then API Gateway's path parameters are used, not a 404
    response = lambda_handler(event, reader.context, ports=reader.ports)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["title"] == "quoted"


def test_dynamodb_failure_is_503_not_500(reader: Reader) -> None:
    # Given a store whose table does not exist
    broken = CacheStore("no-such-table", reader.aws.dynamodb)
    ports = ReaderPorts(settings=reader.ports.settings, store=broken)
    # When an item and a page are read / Then 503 with Retry-After
    for event_file in ("reader/item.json", "reader/list.json"):
        response = reader.get(event_file, ports=ports)
        assert response["statusCode"] == 503
        assert response["h"]["Retry-After"] == "1"


def test_iam_mode_refuses_unsigned_requests_and_serves_signed_ones(reader: Reader) -> None:
    # Given READ_ACCESS=iam (ReadAccess=iam in the template)
    reader.seed([ROW_42], read_at_ns=T0)
    settings = ReaderSettings.model_validate(
        {**reader.aws.environment("ReaderFunction"), "READ_ACCESS": "iam"}
    )
    ports = build_ports(settings, dynamodb=reader.aws.dynamodb)
    # When an unsigned request reaches the function / Then 403
    assert reader.get("reader/item.json", ports=ports)["statusCode"] == 403
    # When API Gateway authorized an IAM caller / Then 200, cacheable privately only
    event = load_event("reader/item.json")
    event["requestContext"]["identity"]["userArn"] = "arn:aws:iam::123456789012:user/reader"
    response = lambda_handler(event, reader.context, ports=ports)
    assert response["statusCode"] == 200
    assert response["multiValueHeaders"]["Cache-Control"][0].startswith("private, ")


def test_template_wires_the_reader_settings(aws: EmulatedAws) -> None:
    # Given the template's environment for ReaderFunction / Then the reader settings validate
    settings = ReaderSettings.model_validate(aws.environment("ReaderFunction"))
    assert settings.table_name == aws.stack.table_name
    assert (settings.read_access, settings.cache_max_age_s) == ("public", 60)
    assert aws.environment("ReaderFunction")["POWERTOOLS_SERVICE_NAME"] == "reader"
