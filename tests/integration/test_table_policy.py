"""Per-table cache policy end to end: the consumer reads each table as its policy says (whose
view, which columns, which rows, which key and order), and the public read API never shows what
Supabase's Row Level Security hides from the anon role.

moto for AWS (resources from template.yaml), a local Supabase whose RLS is PostgreSQL's own.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from supabase import create_client

from local.supabase import LocalSupabase
from reader.handler import build_ports as build_reader_ports
from reader.handler import default_ports as default_reader_ports
from reader.handler import lambda_handler as reader_handler
from tests.conftest import EmulatedAws, LambdaContext, load_event
from tests.consumer_support import batch, change, consumer_ports, row_of, run_and_drain
from waituntil.core.errors import ServiceViewServedPublicly
from waituntil.core.settings import ConsumerSettings, ReaderSettings, reader_settings
from waituntil.read.cache_client import get_item, get_list
from waituntil.sync.ports import ConsumerPorts

POLICIES = {
    "articles": {"filter": "deleted=is.false", "columns": "id,title,published"},
    "authors": {"key": "slug", "order": "name"},
}


@pytest.fixture(autouse=True)
def _drafts_hidden(supabase: LocalSupabase) -> None:
    # RLS for the anon role: drafts are hidden from the public; every author is public. Two
    # more columns: a soft delete, and a note the policy's columns leave out.
    supabase.sql(
        """alter table articles add column deleted boolean not null default false,
                                add column note text;
           drop policy "articles are public" on articles;
           create policy "published articles are public" on articles
             for select to anon using (published)"""
    )


def _ports(aws: EmulatedAws, supabase: LocalSupabase, **policies: Any) -> ConsumerPorts:
    return consumer_ports(aws, supabase, TABLE_POLICIES=json.dumps(policies or POLICIES))


def _read(aws: EmulatedAws, context: LambdaContext, path: str) -> dict[str, Any]:
    """GET through the read API's handler, as API Gateway would call it."""
    table, _, key = path.strip("/").partition("/")
    event = copy.deepcopy(load_event("reader/item.json" if key else "reader/list.json"))
    event["path"] = path
    event["pathParameters"] = {"table": table, **({"id": key} if key else {})}
    event["queryStringParameters"] = event["multiValueQueryStringParameters"] = None
    environment = {**aws.environment("ReaderFunction"), "TABLE_POLICIES": json.dumps(POLICIES)}
    ports = build_reader_ports(
        ReaderSettings.model_validate({**environment, "CACHED_TABLES": "articles,authors"}),
        dynamodb=aws.dynamodb,
        s3=aws.s3,
    )
    response: dict[str, Any] = reader_handler(event, context, ports=ports)
    return response


def _article(key: int, *, published: bool, **extra: Any) -> dict[str, Any]:
    return {"id": key, "title": f"t{key}", "published": published, "deleted": False, **extra}


def test_a_hidden_row_never_reaches_the_public_read_api_even_when_its_webhook_arrives(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given a published article and a draft (RLS hides drafts from the anon role)
    supabase.seed("articles", [_article(1, published=True), _article(2, published=False)])
    ports = _ports(aws, supabase)
    # When both webhooks arrive (Supabase sends the draft's too, with the full row)
    assert (
        run_and_drain(batch(change("INSERT", 1), change("INSERT", 2)), aws, ports, lambda_context)
        == []
    )
    # Then the draft is neither an item nor in the list, through the API or the store
    assert _read(aws, lambda_context, "/articles/2")["statusCode"] == 404
    listed = json.loads(_read(aws, lambda_context, "/articles")["body"])
    assert [row["id"] for row in listed] == [1]
    assert get_item(ports.store, "articles", 2) is None
    # And the consumer read with the anon key, never the service key
    assert {record.role for record in supabase.request_log} == {"anon"}


def test_a_row_hidden_by_an_update_disappears_from_the_cache(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given a published article, cached
    supabase.seed("articles", [_article(1, published=True), _article(2, published=True)])
    ports = _ports(aws, supabase)
    run_and_drain(batch(change("INSERT", 1)), aws, ports, lambda_context)
    assert get_item(ports.store, "articles", 2) is not None
    # When it is unpublished (an UPDATE), and its webhook arrives
    writer = create_client(supabase.url, supabase.service_key)
    writer.table("articles").update({"published": False}).eq("id", 2).execute()
    assert run_and_drain(batch(change("UPDATE", 2)), aws, ports, lambda_context) == []
    # Then it is gone, as an item and from the list (a tombstone, like a delete)
    assert get_item(ports.store, "articles", 2) is None
    assert [row["id"] for row in get_list(ports.store, "articles") or []] == [1]
    assert _read(aws, lambda_context, "/articles/2")["statusCode"] == 404


def test_the_policy_filter_removes_rows_and_columns_outside_select_never_reach_dynamodb(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given rows with a column the policy does not select, and one soft-deleted row
    secret_note = "internal note: call the author at 555-0100"
    supabase.seed(
        "articles",
        [
            _article(1, published=True, note=secret_note),
            {**_article(2, published=True, note=secret_note), "deleted": True},
        ],
    )
    ports = _ports(aws, supabase)
    # When they are synced
    assert (
        run_and_drain(batch(change("INSERT", 1), change("INSERT", 2)), aws, ports, lambda_context)
        == []
    )
    # Then the cached row holds only the selected columns, the soft-deleted row is not cached
    assert get_item(ports.store, "articles", 1) == {"id": 1, "title": "t1", "published": True}
    assert get_item(ports.store, "articles", 2) is None
    # And no DynamoDB item holds the unselected column, in any form
    items = aws.dynamodb.scan(TableName=aws.stack.table_name)["Items"]
    assert items
    for item in items:
        assert "555-0100" not in json.dumps(item, default=str)
        assert b"555-0100" not in b"".join(
            value["B"] for value in item.values() if isinstance(value, dict) and "B" in value
        )


def test_two_tables_with_different_keys_and_orders_are_cached_side_by_side(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given articles keyed by id and authors keyed by slug, listed by name
    supabase.seed("articles", [_article(1, published=True), _article(2, published=True)])
    authors = [
        {"slug": "grace", "name": "Grace Hopper"},
        {"slug": "ada", "name": "Ada Lovelace"},
        {"slug": "alan", "name": "Alan Turing"},
    ]
    supabase.seed("authors", authors)
    ports = _ports(aws, supabase)
    # When a change of each arrives
    event = batch(change("UPDATE", 2), change("UPDATE", "grace", table="authors"))
    assert run_and_drain(event, aws, ports, lambda_context) == []
    # Then each table is cached under its own key and in its own order
    assert [row["id"] for row in get_list(ports.store, "articles") or []] == [1, 2]
    names = [row["name"] for row in get_list(ports.store, "authors") or []]
    assert names == ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    assert get_item(ports.store, "authors", "ada") == row_of(supabase, "ada", "authors")
    author = _read(aws, lambda_context, "/authors/grace")
    expected = row_of(supabase, "grace", "authors")
    assert (author["statusCode"], json.loads(author["body"])) == (200, expected)


def test_a_table_opted_out_to_the_service_role_sees_every_row(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given a draft, and articles explicitly cached with the service role's view
    supabase.seed("articles", [_article(1, published=True), _article(2, published=False)])
    ports = _ports(aws, supabase, articles={"role": "service"}, authors={"key": "slug"})
    # When synced / Then the draft is cached too: this is what the opt-out exposes
    assert run_and_drain(batch(change("INSERT", 2)), aws, ports, lambda_context) == []
    assert [row["id"] for row in get_list(ports.store, "articles") or []] == [1, 2]
    assert {record.role for record in supabase.request_log} == {"service_role"}


def test_the_consumer_refuses_to_start_without_an_anon_key_for_anon_tables(
    aws: EmulatedAws,
) -> None:
    # Given the default policy (anon) and no anon key secret configured
    environment = {**aws.environment("ConsumerFunction"), "SUPABASE_URL": "http://x"}
    environment.pop("SUPABASE_ANON_KEY_SECRET_NAME")
    # When the ports are built / Then it fails loudly instead of reading with the service key
    from consumer.handler import build_ports

    with pytest.raises(ValueError, match="anon"):
        build_ports(
            ConsumerSettings.model_validate(environment),
            secrets_client=aws.secrets,
            dynamodb=aws.dynamodb,
            sqs=aws.sqs,
        )


def test_a_public_reader_with_an_undeclared_service_view_serves_nothing(
    aws: EmulatedAws, lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the reader's template environment (ReadAccess=public) with articles cached by the
    # service role and no "public": true, and a cached draft that RLS would hide
    environment = {
        **aws.environment("ReaderFunction"),
        "TABLE_POLICIES": json.dumps({"articles": {"role": "service"}}),
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    reader_settings.cache_clear()
    default_reader_ports.cache_clear()
    event = copy.deepcopy(load_event("reader/list.json"))
    try:
        # When the first read reaches a fresh container (its ports built from the environment)
        # Then the function refuses to start with the typed error (API Gateway answers 502),
        # and no row is served
        with pytest.raises(ServiceViewServedPublicly, match="ReadAccess is public"):
            reader_handler(event, lambda_context)
    finally:
        reader_settings.cache_clear()
        default_reader_ports.cache_clear()
