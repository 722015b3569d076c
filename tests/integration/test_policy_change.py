"""A table policy that changes while its list exists: the cache records the policy it was built
with, is not served under another one, and is rebuilt as a fresh version, not patched.

moto for AWS (resources from template.yaml), a local Supabase on PostgreSQL with RLS for the
anon role;
the consumer through its handler, the reader through the read API with its own settings (a
deployment updates both from the same template parameter).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from local.supabase import LocalSupabase
from tests.conftest import EmulatedAws, LambdaContext
from tests.consumer_support import batch, change, consumer_ports, drain, run
from waituntil.core.errors import ListFilling, NotCached
from waituntil.core.settings import ReaderSettings
from waituntil.read.api import read_item, read_page
from waituntil.read.request import ReadRequest
from waituntil.sync.ports import ConsumerPorts

# The service role's view (drafts too), served to signed callers only (below).
SERVICE = {"role": "service"}


@pytest.fixture(autouse=True)
def _drafts_hidden(supabase: LocalSupabase) -> None:
    # RLS for the anon role: drafts are hidden from the public.
    supabase.sql(
        """drop policy "articles are public" on articles;
           create policy "published articles are public" on articles
             for select to anon using (published)"""
    )


def _article(key: int) -> dict[str, Any]:
    # rating runs against the key, so key order and rating order differ everywhere
    return {
        "id": key,
        "rating": 100 - key,
        "title": f"t{key}",
        "body": f"internal {key} " + "x" * 200,
        "published": key % 4 != 0,
    }


def _ports(aws: EmulatedAws, supabase: LocalSupabase, policy: dict[str, Any]) -> ConsumerPorts:
    return consumer_ports(
        aws,
        supabase,
        "articles",
        TABLE_POLICIES=json.dumps({"articles": policy}),
        LIST_CHUNK_BYTES="1024",
        SUPABASE_PAGE_SIZE="7",
    )


CALLER = "arn:aws:iam::123456789012:role/cache-reader"  # a SigV4-signed caller


def _reader(aws: EmulatedAws, policy: dict[str, Any]) -> ReaderSettings:
    # ReadAccess=iam (the requests below are signed): a reader open to the public refuses to
    # start on a service-role view (ServiceViewServedPublicly), which these tests cache too.
    return ReaderSettings.model_validate(
        {
            **aws.environment("ReaderFunction"),
            "CACHED_TABLES": "articles",
            "TABLE_POLICIES": json.dumps({"articles": policy}),
            "READ_ACCESS": "iam",
        }
    )


def _served(ports: ConsumerPorts, settings: ReaderSettings) -> list[dict[str, Any]]:
    """Every page of the list as the read API serves it (raises what it would answer)."""
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        request = ReadRequest(method="GET", table="articles", page=str(page), caller_arn=CALLER)
        response = read_page(ports.store, request, settings)
        rows += json.loads(response.body)
        if page >= int(response.headers["X-Page-Count"]):
            return rows
        page += 1


def _item(ports: ConsumerPorts, settings: ReaderSettings, key: int) -> dict[str, Any] | None:
    request = ReadRequest(method="GET", table="articles", raw_id=str(key), caller_arn=CALLER)
    try:
        body: dict[str, Any] = json.loads(read_item(ports.store, request, settings).body)
    except NotCached:
        return None
    return body


def _filled(
    aws: EmulatedAws,
    supabase: LocalSupabase,
    context: LambdaContext,
    policy: dict[str, Any],
) -> ConsumerPorts:
    supabase.seed("articles", [_article(key) for key in range(1, 31)])
    ports = _ports(aws, supabase, policy)
    assert run(batch(change("INSERT", 1)), ports, context) == []
    drain(aws, ports, context)
    return ports


def _by(rows: list[dict[str, Any]], *order: str) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: tuple(row[column] for column in order))


@pytest.mark.parametrize(
    ("before", "after", "order"),
    [
        (SERVICE, {**SERVICE, "order": "rating"}, ("rating", "id")),
        ({**SERVICE, "order": "rating"}, SERVICE, ("id",)),
    ],
    ids=["key-to-column-order", "column-to-key-order"],
)
def test_a_changed_list_order_rebuilds_the_list_in_the_new_order(
    aws: EmulatedAws,
    supabase: LocalSupabase,
    lambda_context: LambdaContext,
    before: dict[str, Any],
    after: dict[str, Any],
    order: tuple[str, ...],
) -> None:
    # Given a list of 30 rows filled in one order
    _filled(aws, supabase, lambda_context, before)
    # When the policy's order changes, and a change and a RESYNC-free drain follow
    ports = _ports(aws, supabase, after)
    assert run(batch(change("UPDATE", 5)), ports, lambda_context) == []
    drain(aws, ports, lambda_context)
    # Then the list holds every row once, in the new order (a fresh version, not a patch)
    assert _served(ports, _reader(aws, after)) == _by(supabase.rows("articles"), *order)


def test_a_tightened_policy_never_serves_what_it_hides_and_rebuilds(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext
) -> None:
    # Given a table cached with the service role's view (drafts and every column included)
    ports = _filled(aws, supabase, lambda_context, SERVICE)
    assert _item(ports, _reader(aws, SERVICE), 4) is not None  # a draft
    # When the policy is tightened: the public's view, fewer columns, a row filter
    tight = {"role": "anon", "columns": "id,title", "filter": "rating=gt.75"}
    reader = _reader(aws, tight)
    # Then at once, before any consumer has run, nothing built with the old policy is served:
    # not the draft, not the dropped columns, not the filtered rows, not the list
    assert _item(ports, reader, 4) is None
    assert _item(ports, reader, 1) is None
    with pytest.raises(ListFilling):
        _served(ports, reader)
    # And the next change rebuilds the table with the new policy
    ports = _ports(aws, supabase, tight)
    assert run(batch(change("UPDATE", 1)), ports, lambda_context) == []
    drain(aws, ports, lambda_context)
    visible = [
        {"id": row["id"], "title": row["title"]}
        for row in supabase.rows("articles")
        if row["published"] and row["rating"] > 75
    ]
    assert _served(ports, reader) == visible
    assert _item(ports, reader, 1) == {"id": 1, "title": "t1"}
    assert _item(ports, reader, 4) is None  # a draft: hidden by RLS
    assert _item(ports, reader, 28) is None  # rating 72: filtered out
