"""Outcome unknown: DynamoDB applies a write, its answer is lost, botocore resends it.

Every fault here goes through botocore's own retry path on moto (``tests.faults.LostAnswers``):
the write applies, its answer becomes a 500 or a read timeout, botocore decides to resend, and
the resend meets the state the first attempt left.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.retries.standard import ExponentialBackoff
from supabase import create_client

from local.supabase import LocalSupabase
from tests.conftest import EmulatedAws, LambdaContext
from tests.consumer_support import batch, cache_equals, change, consumer_ports, resync, run
from tests.consumer_support import drain as drain_queue
from tests.faults import LostAnswers, writes_key
from tests.list_checks import expiring, orphans
from waituntil.adapters.aws import PATIENT
from waituntil.adapters.cache_store import CacheStore
from waituntil.cache.layout import fresh_rows, list_item_key, version_item_key
from waituntil.cache.list_patch import ListSizes
from waituntil.cache.model import PublishResult
from waituntil.core.errors import DependencyUnavailable
from waituntil.core.list_order import ListOrder
from waituntil.read.cache_client import get_list
from waituntil.sync.list_publish import publish_list

ORDER = ListOrder("id")


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore waits up to a second before a resend; the resends here need no waiting.
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)


def _client() -> Any:
    """A DynamoDB client configured as the consumer's (adaptive retries, 10 attempts)."""
    return boto3.client("dynamodb", config=PATIENT)


def _store(aws: EmulatedAws, client: Any, now: float = 1_800_000_000.0) -> CacheStore:
    return CacheStore(aws.stack.table_name, client, sleep=lambda _: None, clock=lambda: now)


def _sync(
    store: CacheStore, rows: list[dict[str, Any]], touched: list[int], at: int
) -> PublishResult:
    """A consumer's batch: write the touched rows as read at ``at``, then patch the list."""
    keys = [str(key) for key in touched]
    store.write_rows("articles", fresh_rows(keys, rows, ORDER), read_at_ns=at, order=ORDER)
    return publish_list(
        store,
        "articles",
        keys,
        order=ORDER,
        sizes=ListSizes(chunk_bytes=1024),
        clock_ns=lambda: at,
        complete=True,
    )


def _rows(title: str = "a") -> list[dict[str, Any]]:
    return [{"id": key, "title": f"{title} {key}", "pad": "x" * 300} for key in range(1, 21)]


@pytest.mark.parametrize("mode", ["500", "timeout"])
def test_a_head_switch_whose_answer_is_lost_leaves_the_list_whole(
    aws: EmulatedAws, mode: str
) -> None:
    # Given a list of 20 rows in several chunks
    client = _client()
    lost = LostAnswers(client, mode)
    store = _store(aws, client)
    rows = _rows()
    _sync(store, rows, list(range(1, 21)), 100)
    before = store.get_head("articles")
    assert before is not None and before.chunk_count > 2
    # When row 7 changes and the head switch applies but its answer is lost (botocore resends)
    rows[6] = {"id": 7, "title": "changed", "pad": "y" * 300}
    lost.arm(matching=writes_key(list_item_key("articles")))
    result = _sync(store, rows, [7], 200)
    # Then the switch counts as done: the list reads back whole, with the change
    assert lost.lost and not lost.armed
    assert result.outcome == "published"
    assert get_list(store, "articles") == rows
    # And the table keeps working: the next change publishes, and the old version was retired
    rows[12] = {"id": 13, "title": "again", "pad": "z" * 300}
    assert _sync(store, rows, [13], 300).outcome == "published"
    assert get_list(store, "articles") == rows
    assert expiring(store, version_item_key("articles", before.version))


def test_a_retirement_cut_short_is_finished_by_the_redelivery(aws: EmulatedAws) -> None:
    # Given a list of 20 rows, and a change whose head switch lands but whose retirement of
    # the old version fails every attempt (the record fails; SQS delivers it again)
    client = _client()
    store = _store(aws, client)
    rows = _rows()
    _sync(store, rows, list(range(1, 21)), 100)
    before = store.get_head("articles")
    assert before is not None
    rows[6] = {"id": 7, "title": "changed", "pad": "y" * 300}
    failing = _RetireFails(client)
    with pytest.raises(DependencyUnavailable):
        _sync(store, rows, [7], 200)
    assert failing.failed and not expiring(store, version_item_key("articles", before.version))
    # When the record is delivered again (nothing left to change in the list)
    failing.off()
    _sync(store, rows, [7], 200)
    # Then the old version is retired all the same (its frozen item and the chunk it replaced)
    assert expiring(store, version_item_key("articles", before.version))
    assert orphans(store, "articles") == []


class _RetireFails:
    """Every ``SET expires_at`` UpdateItem answers a 500, on every attempt (it never applies):
    a retirement that fails after botocore's retries."""

    def __init__(self, client: Any) -> None:
        self.failed = 0
        self._on = True
        client.meta.events.register_first("before-call.dynamodb.UpdateItem", self._fail)

    def off(self) -> None:
        self._on = False

    def _fail(self, params: dict[str, Any], **_: Any) -> Any:
        # ``params`` is the serialized request: its JSON body names the expression.
        if not self._on or b"SET expires_at" not in params["body"]:
            return None
        self.failed += 1
        return _error_response()


def _error_response() -> tuple[Any, dict[str, Any]]:
    http = AWSResponse("https://dynamodb.invalid/", 500, HTTPHeaders(), None)
    return http, {
        "Error": {"Code": "InternalServerError", "Message": "Internal server error"},
        "ResponseMetadata": {"HTTPStatusCode": 500},
    }


# ----- every write the consumer makes, through the handler -------------------------------------


def write_kind(operation: str, request: dict[str, Any]) -> str:
    """Which of the store's writes a request is."""
    text = json.dumps(request)
    kinds = [
        ("fill journal", "#fill"),
        ("row", ":read_at_ns"),
        ("row put", '"kind": {"S": "row"}'),
        ("position tags", "DELETE #positions"),
        ("retire", "SET expires_at"),
        ("publish in flight", "#attempts"),
        ("retired mark", "REMOVE #retiring"),
        ("node", "PutRequest"),
        ("checkpoint delete", "DeleteRequest"),
    ]
    if operation == "TransactWriteItems":
        return "head switch"
    if "#lease/" in text:
        return "lease release" if operation == "DeleteItem" else "lease"
    if operation == "PutItem":
        return "heal state" if "#heal" in text else "checkpoint"
    return next((kind for kind, needle in kinds if needle in text), operation)


class _FirstAnswersOfEachKind:
    """Loses the answer of the first ``most`` writes of each kind (within botocore's retry
    quota: a resend that fails its condition is never refunded, as on AWS)."""

    def __init__(self, most: int = 2) -> None:
        self.most = most
        self.kinds: dict[str, int] = {}

    def __call__(self, operation: str, request: dict[str, Any]) -> bool:
        kind = write_kind(operation, request)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        return self.kinds[kind] <= self.most


@pytest.mark.parametrize("mode", ["500", "timeout"])
def test_every_write_losing_its_first_answer_still_converges(
    aws: EmulatedAws, supabase: LocalSupabase, lambda_context: LambdaContext, mode: str
) -> None:
    # Given a table of 30 rows, and a consumer whose every DynamoDB write (row items, the first
    # fill's batched puts and its journal, list nodes, head switches, retirements, position
    # tags, checkpoints, publishes in flight, the sync's lease)
    # applies and then loses its answer once, so that botocore resends it
    client = _client()
    lost = LostAnswers(client, mode)
    first_answers = _FirstAnswersOfEachKind()
    lost.arm(times=10**6, matching=first_answers)
    ports = consumer_ports(aws, supabase, "articles", dynamodb=client, LIST_CHUNK_BYTES="1024")
    supabase.seed(
        "articles", [{"id": key, "title": f"t{key}", "body": "b" * 300} for key in range(1, 31)]
    )
    # When the first change fills the table, more changes follow, and a RESYNC runs
    assert run(batch(change("INSERT", 1)), ports, lambda_context) == []
    drain_queue(aws, ports, lambda_context)
    writer = create_client(supabase.url, supabase.service_key)
    writer.table("articles").update({"title": "changed"}).eq("id", 5).execute()
    writer.table("articles").delete().eq("id", 9).execute()
    writer.table("articles").insert({"id": 31, "title": "new", "body": "c" * 300}).execute()
    assert (
        run(
            batch(change("UPDATE", 5), change("DELETE", 9), change("INSERT", 31)),
            ports,
            lambda_context,
        )
        == []
    )
    # (a row's second update drops the position tags its first left: ``list_publish._prune``)
    writer.table("articles").update({"title": "changed again"}).eq("id", 5).execute()
    assert run(batch(change("UPDATE", 5)), ports, lambda_context) == []
    assert run(batch(resync("articles")), ports, lambda_context) == []
    drain_queue(aws, ports, lambda_context)
    # Then every kind of write did lose an answer, and the cache equals the table
    assert set(first_answers.kinds) == {
        "fill journal",
        "row put",
        "row",
        "position tags",
        "retire",
        "publish in flight",
        "retired mark",
        "node",
        "checkpoint delete",
        "head switch",
        "checkpoint",
        "lease",
        "lease release",
    }
    cache_equals(ports, supabase.rows("articles"))
    assert orphans(ports.store, "articles") == []
