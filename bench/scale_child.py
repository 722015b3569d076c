"""One measured consumer run of ``bench.scale``, in a process of its own.

``python -m bench.scale_child DESIGN JOB ROWS`` with the consumer's environment (endpoints of
the moto server and the local Supabase); change message bodies on stdin (a JSON list). Prints one
JSON line: time, invocations, Supabase rows read, write requests and units, RSS at start and
at peak.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import threading
import time
from typing import Any

from waituntil.cache.layout import item_bytes

# The consumer's Timeout in template.yaml: each invocation gets this much, as on Lambda.
INVOCATION_SECONDS = 60


class Context:
    function_name = "bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    def __init__(self) -> None:
        self._deadline = time.monotonic() + INVOCATION_SECONDS

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def rss_mb() -> float:
    """This process's peak resident memory so far (VmHWM). Not ru_maxrss: after fork and exec
    that still counts the parent's memory at the fork, which here holds moto and the rows."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    import boto3

    from consumer.handler import build_ports, lambda_handler
    from waituntil.adapters.aws import PATIENT
    from waituntil.adapters.cache_store import CacheStore
    from waituntil.core.settings import ConsumerSettings

    design, job, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bodies: list[str] = json.loads(sys.stdin.read() or "[]")
    settings = ConsumerSettings.model_validate(dict(__import__("os").environ))
    dynamodb = boto3.client("dynamodb", config=PATIENT)
    bill = WriteBill()
    dynamodb.meta.events.register("provide-client-params.dynamodb", bill.record)
    sqs = boto3.client("sqs")
    ports = build_ports(
        settings,
        secrets_client=boto3.client("secretsmanager"),
        dynamodb=dynamodb,
        sqs=sqs,
        s3=boto3.client("s3"),
    )
    writer_rows = (
        _writer_rows(int(job), rows, ports.list_order("articles")) if design == "writer" else []
    )
    start_mb = rss_mb()
    invocations = 0
    started = time.perf_counter()
    if design == "writer":
        # The row writer alone, with ``job`` threads: as a fill's page writes what differs.
        store = CacheStore(settings.table_name, dynamodb, workers=int(job))
        store.write_rows(
            "articles", writer_rows, read_at_ns=time.time_ns(), order=ports.list_order("articles")
        )
        invocations, rows_read = 1, 0
    elif design == "patch":
        if job == "fill":
            bodies = [_one_webhook()]
        events = [bodies]
        while events:
            batch = events.pop(0)
            event = {"Records": [_record(body) for body in batch]}
            response = lambda_handler(event, Context(), ports=ports)
            invocations += 1
            if response["batchItemFailures"]:
                raise SystemExit(f"records failed: {response}")
            queued = _receive_all(sqs, settings.queue_url)
            events += [queued[i : i + 10] for i in range(0, len(queued), 10)]
        rows_read = ports.source.rows_read  # type: ignore[attr-defined]
    else:
        from bench.full_read_baseline import run_batch

        keys = [json.loads(body)["key"] for body in bodies]
        run_batch(dynamodb, settings.table_name, ports.source, keys, items=job != "warm")
        invocations = 1
        rows_read = ports.source.rows_read  # type: ignore[attr-defined]
    seconds = time.perf_counter() - started
    peak_mb = rss_mb()
    requests, units = bill.requests, bill.units_after(dynamodb, settings.table_name)
    print(
        json.dumps(
            {
                "design": design,
                "job": job,
                "rows": rows,
                "seconds": seconds,
                "invocations": invocations,
                "supabase_requests": 0,
                "supabase_rows": rows_read,
                "write_requests": requests,
                "write_units": units,
                "rss_start_mb": start_mb,
                "rss_peak_mb": peak_mb,
            }
        )
    )


def _writer_rows(workers: int, rows: int, order: Any) -> list[Any]:
    """``rows`` new rows, keyed apart from the table's and from the other writer run's."""
    from bench.scale import article
    from waituntil.cache.layout import fresh_rows

    first = 10_000_000 * workers
    data = [article(key) for key in range(first, first + rows)]
    return fresh_rows([str(row["id"]) for row in data], data, order)


def _one_webhook() -> str:
    from datetime import UTC, datetime

    from waituntil.core.contracts import Change

    return Change(
        type="UPDATE",
        schema_name="public",
        table="articles",
        key=1,
        received_at=datetime.now(UTC),
        correlation_id="bench-fill",
    ).to_message()


def _receive_all(sqs: Any, queue_url: str) -> list[str]:
    bodies: list[str] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


class WriteBill:
    """Write requests and units as DynamoDB bills them (1 unit per started KB), counted as the
    writes are made. Only the keys of updates are kept, and in a file: peak memory is what
    this benchmark measures, so its own bookkeeping must not grow with the table."""

    def __init__(self) -> None:
        self.requests = 0
        self._units = 0
        self._updated = tempfile.TemporaryFile("w+")  # noqa: SIM115 (lives as long as the run)
        # The row writer calls from its thread pool: one write at a time, or lines interleave.
        self._lock = threading.Lock()

    def record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self._record(model.name, params)

    def _record(self, name: str, params: dict[str, Any]) -> None:
        if name == "PutItem":
            self.requests += 1
            self._units += _units(item_bytes(params["Item"]))
        elif name == "BatchWriteItem":
            for request in next(iter(params["RequestItems"].values())):
                self.requests += 1
                put = request.get("PutRequest")
                self._units += _units(item_bytes(put["Item"])) if put else 1
        elif name == "UpdateItem":
            self.requests += 1
            self._updated.write(params["Key"]["pk"]["S"] + "\n")
        elif name == "DeleteItem":
            self.requests += 1
            self._units += 1
        elif name == "TransactWriteItems":
            # A transactional write costs two units per started KB of each item it writes.
            self.requests += 1
            for action in params["TransactItems"]:
                put = action.get("Put")
                self._units += 2 * (_units(item_bytes(put["Item"])) if put else 1)

    def units_after(self, client: Any, table_name: str) -> int:
        """All units: an update is billed at the size of the item it leaves (or found, if
        larger), so updated items are read back now, outside the timed part."""
        self._updated.seek(0)
        updated = [line.rstrip("\n") for line in self._updated]
        units = self._units
        for start in range(0, len(updated), 100):
            batch = updated[start : start + 100]
            response = client.batch_get_item(
                RequestItems={table_name: {"Keys": [{"pk": {"S": pk}} for pk in set(batch)]}}
            )
            found = response["Responses"][table_name]
            sizes = {item["pk"]["S"]: item_bytes(item) for item in found}
            units += sum(_units(sizes.get(pk, 1)) for pk in batch)
        return units


def _units(size: int) -> int:
    return max(1, -(-size // 1024))


def _record(body: str) -> dict[str, Any]:
    return {
        "messageId": str(hash(body)),
        "receiptHandle": "bench",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench",
        "awsRegion": "us-east-1",
    }


if __name__ == "__main__":
    main()
