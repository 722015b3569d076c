"""The latency benchmarks' instruments, small and without sleeping: the shims wait what they
are told and count every call, the critical-path counter counts overlapping calls once, and
the in-process services answer what the benchmarks rely on. No timing is asserted: the
shims take an injected ``sleep`` that records instead of waiting."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from bench.latency import (
    Call,
    CallTrace,
    DelayedTransport,
    Latencies,
    critical_chain,
    instrument_client,
    sequential_round_trips,
    what,
)
from bench.memory_dynamodb import MemoryDynamoDB
from bench.memory_supabase import BenchSupabaseSource, SourceTable
from waituntil.core.table_policy import TablePolicy


@pytest.fixture
def memory() -> Any:
    service = MemoryDynamoDB()
    yield service
    service.close()


def _dynamodb() -> Any:
    return boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


def test_the_boto3_shim_waits_the_latency_it_was_told_once_per_call_and_counts_each(
    memory: MemoryDynamoDB,
) -> None:
    # Given a DynamoDB client behind the shim, told 7 ms per call, over the memory service
    slept: list[float] = []
    trace = CallTrace()
    client = _dynamodb()
    instrument_client(
        client, "dynamodb", Latencies.parse("dynamodb=7"), trace, tag="env-1", sleep=slept.append
    )
    memory.attach(client)
    # When it makes three calls, one of which fails its condition
    client.put_item(TableName="t", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    client.get_item(TableName="t", Key={"pk": {"S": "a"}})
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        client.put_item(
            TableName="t", Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)"
        )
    # Then each call waited exactly the model's latency, once, and each was recorded
    assert slept == [0.007, 0.007, 0.007]
    assert trace.by_operation() == {"dynamodb.GetItem": 1, "dynamodb.PutItem": 2}
    assert [call.detail for call in trace.calls] == ["", "", "ConditionalCheckFailedException"]
    assert {call.tag for call in trace.calls} == {"env-1"}
    assert [call.target for call in trace.calls] == ["a", "a", "a"]
    # And the service answered them (the shim changed nothing else)
    assert memory.bill.requests == {"PutItem": 2, "GetItem": 1}


def test_a_call_that_raises_is_recorded_and_its_own_error_reaches_the_caller() -> None:
    # Given a DynamoDB client behind the shim, whose endpoint fails before any answer
    trace = CallTrace()
    client = _dynamodb()
    instrument_client(
        client, "dynamodb", Latencies.parse("dynamodb=7"), trace, sleep=lambda _: None
    )

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="http://dynamodb.invalid")

    client.meta.events.register("before-send.dynamodb.GetItem", unreachable)
    # When it makes a call
    with pytest.raises(EndpointConnectionError):
        client.get_item(TableName="t", Key={"pk": {"S": "a"}})
    # Then botocore's own error reached the caller (not the shim's), and the call is recorded
    assert trace.by_operation() == {"dynamodb.GetItem": 1}
    assert trace.calls[0].detail == ""


def test_the_httpx_shim_waits_the_supabase_latency_per_request_and_counts_each() -> None:
    # Given the consumer's Supabase adapter over a 50-row table, behind the shim (25 ms)
    table = SourceTable(50, pool_size=4)
    slept: list[float] = []
    trace = CallTrace()
    transport = DelayedTransport(table.transport(), Latencies(), trace, sleep=slept.append)
    source = BenchSupabaseSource(transport, {"articles": TablePolicy()}, max_rows=1000)
    # When it reads two keys (one gone) and a page by key
    table.delete(7)
    rows = source.read_rows("articles", ["3", "7"])
    page = source.read_page("articles", 45, 1000)
    # Then the rows are the table's, and each request waited 25 ms once and was counted: the
    # two reads, and the gone key asked again alone (an answer cut short could have left it out)
    assert [row["id"] for row in rows] == [3]
    assert [row["id"] for row in page] == [46, 47, 48, 49, 50]
    assert slept == [0.025, 0.025, 0.025]
    assert trace.by_service() == {"supabase": 3}
    assert table.requests == 3


def _call(started: float, ended: float, service: str = "dynamodb") -> Call:
    return Call(service, "UpdateItem", started, ended, waited=ended - started)


def test_the_critical_path_counts_calls_that_overlap_once() -> None:
    # Given a read, then 16 writes in parallel (overlapping), then a switch after them all
    calls = [_call(0.0, 1.0, "supabase")]
    calls += [_call(1.0 + i * 0.01, 2.0 + i * 0.01) for i in range(16)]
    calls.append(_call(2.2, 3.0))
    # When the sequential round trips are counted
    chain = critical_chain(calls)
    # Then the parallel writes count as one round trip: three in all
    assert sequential_round_trips(calls) == 3
    assert [call.service for call in chain] == ["supabase", "dynamodb", "dynamodb"]
    assert chain[0].ended <= chain[1].started and chain[1].ended <= chain[2].started


def test_the_critical_path_counts_calls_one_after_another_each() -> None:
    # Given five calls in a row, and one that overlaps the second and third
    calls = [_call(float(i), float(i) + 0.9) for i in range(5)]
    calls.append(_call(1.5, 2.5))
    # When counted / Then the five in a row are the chain; the overlapping one adds nothing
    assert sequential_round_trips(calls) == 5
    assert sequential_round_trips([]) == 0


def test_the_critical_path_can_weigh_calls_by_their_latency() -> None:
    # Given two ways through: three short calls in a row, or one long call over them
    short = [_call(0.0, 1.0), _call(1.0, 2.0), _call(2.0, 3.0)]
    long = _call(0.0, 3.5, "supabase")
    # When weighed by latency (the long one weighs 10) / Then the long one is the path
    chain = critical_chain([*short, long], lambda c: 10.0 if c.service == "supabase" else 1.0)
    assert chain == [long]


def test_latencies_parse_milliseconds_over_the_defaults_and_refuse_unknown_services() -> None:
    # Given / When a model is parsed from the command line
    model = Latencies.parse("dynamodb=8, supabase=30")
    # Then those two change, the rest keep their defaults, and zero latency is a scale
    assert model.of("dynamodb") == pytest.approx(0.008)
    assert model.of("supabase") == pytest.approx(0.030)
    assert model.of("sqs") == pytest.approx(0.010)
    assert model.scaled(0).of("supabase") == 0
    with pytest.raises(ValueError, match="unknown service"):
        Latencies.parse("dynamo=5")


def test_the_memory_dynamodb_keeps_conditions_return_values_and_the_bill(
    memory: MemoryDynamoDB,
) -> None:
    # Given an item written, then updated with SET/ADD/REMOVE
    client = _dynamodb()
    memory.attach(client)
    client.put_item(TableName="t", Item={"pk": {"S": "r"}, "v": {"N": "1"}, "x": {"S": "y"}})
    updated = client.update_item(
        TableName="t",
        Key={"pk": {"S": "r"}},
        UpdateExpression="SET #v = #v + :one ADD tags :t REMOVE x",
        ConditionExpression="attribute_exists(pk) AND #v < :two",
        ExpressionAttributeNames={"#v": "v"},
        ExpressionAttributeValues={":one": {"N": "1"}, ":two": {"N": "2"}, ":t": {"SS": ["a"]}},
        ReturnValues="UPDATED_OLD",
    )
    # When a write's condition fails, asking for the item
    with pytest.raises(ClientError) as failed:
        client.put_item(
            TableName="t",
            Item={"pk": {"S": "r"}},
            ConditionExpression="#v = :one",
            ExpressionAttributeNames={"#v": "v"},
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    # Then the update applied and returned what it changed, the refusal carries the item
    assert updated["Attributes"] == {"v": {"N": "1"}, "x": {"S": "y"}}
    item = client.get_item(TableName="t", Key={"pk": {"S": "r"}})["Item"]
    assert item == {"pk": {"S": "r"}, "v": {"N": "2"}, "tags": {"SS": ["a"]}}
    refusal: Any = failed.value.response
    assert refusal["Item"] == item
    # And every write was billed, the failed one included (one unit each, small items)
    assert memory.bill.write_units == 3


def test_a_transaction_resent_with_its_token_applies_nothing_twice(memory: MemoryDynamoDB) -> None:
    # Given a transaction that creates an item if absent, with a client request token
    client = _dynamodb()
    memory.attach(client)
    items = [
        {
            "Put": {
                "TableName": "t",
                "Item": {"pk": {"S": "h"}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
    ]
    client.transact_write_items(TransactItems=items, ClientRequestToken="token-1")
    # When it is resent with the same token / Then it succeeds and applies nothing again
    client.transact_write_items(TransactItems=items, ClientRequestToken="token-1")
    # And without the token its condition fails, with the reason
    with pytest.raises(ClientError) as failed:
        client.transact_write_items(TransactItems=items)
    refusal: Any = failed.value.response
    assert refusal["Error"]["Code"] == "TransactionCanceledException"
    assert refusal["CancellationReasons"] == [{"Code": "ConditionalCheckFailed"}]


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        ("/articles/42", "a row item"),
        ("/articles", "the list head"),
        ("/articles#i/3f2a.2", "an index page"),
        ("/articles#c/3f2a.1", "a list chunk"),
        ("/articles@1796-3f2a", "a frozen list version"),
        ("/articles#sync", "the sync checkpoint"),
        ("3 items", "3 items"),
    ],
)
def test_the_report_names_the_cache_item_a_call_touched(target: str, kind: str) -> None:
    # Given a DynamoDB call on a key of each shape / When named / Then as the layout says
    assert what(Call("dynamodb", "GetItem", 0.0, 1.0, 1.0, target=target)) == kind


OLD_SECTION = """## Under network latency

Written by `python -m bench.latency_run --report` on 2026-12-06 04:38 UTC (3.11; 73 minutes).

### The model

old model

### Goals against this run

```
goal                  measured here  met
--------------------  -------------  ---
fill <= 10 min        47.1 min       **no**
receiver import       1.89x          **no**
```

### First fill at scale

old fill figures

### Cold starts

old imports
"""

NEW_SECTION = """## Under network latency

Written by `python -m bench.latency_run --report --skip fills` on 2026-12-07 10:00 UTC.

### The model

new model

### Goals against this run

```
goal             measured here  met
---------------  -------------  ---
receiver import  1.45x          yes
```

### Cold starts

new imports
"""


def test_a_partial_run_keeps_the_parts_it_did_not_measure_and_says_whose_they_are() -> None:
    from bench.latency_run import merge_sections

    # Given the section of a full run, and a run that skipped the fills
    # When the new section is merged into the old one
    merged = merge_sections(OLD_SECTION, NEW_SECTION, ["fills"])
    # Then the re-measured parts are the new run's, the fills' subsection and goal rows are
    # the old run's, and the section says which run they come from
    assert "new model" in merged and "old model" not in merged
    assert "new imports" in merged and "old imports" not in merged
    assert "old fill figures" in merged
    assert "1.45x" in merged and "1.89x" not in merged
    assert "47.1 min" in merged
    assert merged.count("2026-12-06 04:38 UTC") == 2  # the note, and the goals' footnote
    assert merged.startswith(
        "## Under network latency\n\nWritten by `python -m bench.latency_run --report --skip fills`"
    )
    # And every subsection appears once, a kept one where it was
    headings = [line for line in merged.splitlines() if line.startswith("### ")]
    assert headings == [
        "### The model",
        "### Goals against this run",
        "### First fill at scale",
        "### Cold starts",
    ]


@pytest.mark.parametrize(
    ("patch_s", "full_s", "ratio", "met"),
    [(0.2, 0.4, "x0.50", "yes"), (0.5, 0.4, "x1.25", "**no**")],
)
def test_the_patch_path_is_held_to_the_full_read_design_measured_in_the_same_run(
    patch_s: float, full_s: float, ratio: str, met: str
) -> None:
    from datetime import UTC, datetime

    from bench.critical_path import BatchFigures
    from bench.latency_report import _goals
    from bench.latency_run import Results, Scale

    # Given a run whose 10-change batches at 1,000 rows took patch_s under the model, and the
    # full-read design's took full_s (three batches each, the median in the middle)
    patch = BatchFigures("memory", True, 1_000, 10, seconds=[patch_s - 0.1, patch_s, 9.0])
    on_moto = BatchFigures("moto", True, 300, 10, seconds=[0.1])
    results = Results(
        when=datetime.now(UTC),
        machine="test",
        command="test",
        latencies=Latencies(),
        scale=Scale(),
        batches=[patch, on_moto],
        full_read_s=[full_s, full_s + 1.0, full_s - 0.1],
    )
    # When the goals are written
    goals = "\n".join(_goals(results))
    # Then the goal's row gives the ratio of the medians and whether it was met
    row = next(line for line in goals.splitlines() if "full-read design" in line)
    assert ratio in row
    assert f" {met} " in row


def test_the_visibility_bench_charges_the_full_timeout_only_to_records_not_shortened() -> None:
    # Given two failed deliveries of one key between its commit (t=0) and visibility (t=10):
    # one whose visibility the consumer shortened, one it did not
    from bench.latency_stack import BENCH_VISIBILITY_S
    from bench.visibility import TEMPLATE_VISIBILITY_S, _retry_penalty_s

    shortened = {"h-soon"}
    # When the penalty is computed / Then only the one left to the queue's timeout pays it
    soon = [("7", 1.0, "h-soon")]
    late = [("7", 1.0, "h-late")]
    assert _retry_penalty_s(soon, shortened, "7", 0.0, 10.0) == 0.0
    assert (
        _retry_penalty_s(late, shortened, "7", 0.0, 10.0)
        == TEMPLATE_VISIBILITY_S - BENCH_VISIBILITY_S
    )


def test_the_memory_queue_brings_a_message_back_when_its_visibility_was_shortened() -> None:
    # Given the memory SQS with a long visibility timeout and one received message
    import time

    from bench.memory_sqs import MemorySQS

    queue = MemorySQS(visibility_timeout_s=600)
    client = boto3.client(
        "sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    queue.attach(client)
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
    client.send_message(QueueUrl=url, MessageBody="m")
    (message,) = client.receive_message(QueueUrl=url)["Messages"]
    # When its visibility is set to 0 s, and an unknown handle's too
    answer = client.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "0", "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0},
            {"Id": "1", "ReceiptHandle": "gone", "VisibilityTimeout": 0},
        ],
    )
    time.sleep(0.01)
    # Then it is received again at once (second receive), and the unknown handle failed
    again = client.receive_message(QueueUrl=url)["Messages"]
    assert [m["Body"] for m in again] == ["m"]
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    assert [failure["Id"] for failure in answer["Failed"]] == ["1"]


def test_a_cold_start_counts_a_loaded_machines_wait_for_a_cpu_as_cpu_not_as_network() -> None:
    from bench.burst import at_share, first_network_s

    # Given an import that took 0.73 s of wall time for 0.26 s of CPU on a loaded machine, and
    # a first call of 0.20 s wall, 0.05 s CPU (the model's calls wait 0.02 s)
    network_s = first_network_s(Latencies())
    # When each is put at a quarter of a vCPU
    imported = at_share(0.73, 0.26, 0.25, 0.0)
    first = at_share(0.20, 0.05, 0.25, network_s)
    # Then the import is its CPU alone (it makes no call), and the first call its CPU plus no
    # more network than its calls wait under the model
    assert imported == pytest.approx(0.26 / 0.25)
    assert network_s == pytest.approx(0.02)
    assert first == pytest.approx(0.02 + 0.05 / 0.25)
