"""Change to visible: from a commit in Supabase to the read API answering the new version.

Everything runs in real time, in process, under the latency model (``bench.latency_stack``,
the memory DynamoDB and SQS, the memory Supabase table):

1. a **commit** changes a row of the memory table;
2. its **webhook** waits the model's webhook leg, then the receiver's real handler answers it
   (its ``SendMessage`` under the model), on a pool of warm receivers;
3. **Lambda's SQS poller**, modelled (``Poller``): ``pollers`` of them long-poll the queue;
   each delivered batch costs one SQS round trip; with a batching window a poller keeps
   gathering until the window ends, ``batch_size`` messages are in hand, or (never here)
   6 MB. Where the window starts is the one thing AWS's pages do not pin down: the SQS page
   says Lambda "continues to poll messages ... until the batch window expires", the event
   source mapping page says "the next batching window begins as soon as the previous
   function invocation completes". ``window_from="first-message"`` (the local poller's
   reading: a lone message waits out the whole window) and ``"previous-invocation"`` are
   both measured for the trickle. The SQS page also warns that under very low traffic a
   window can hold a lone message up to 20 s (Lambda's long poll), which neither models;
4. the **consumer**'s real handler, one warm execution environment per poller;
5. **visible**: the read API answers the new item once the row item's conditional write
   carrying a read taken after the commit has returned, and the new list once the same
   environment's head switch after that write has returned; to each the read API's own
   answer time under the model (the reader's real handler, median) is added.

Figures: change-to-visible p50/p95 for the item and the list, Supabase requests per change,
invocations, head switches lost to another consumer.
"""

from __future__ import annotations

import contextlib
import json
import random
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.config import Config

from bench.common import ROOT, BenchContext, Progress, percentile, quiet
from bench.latency import Call, critical_chain, wait
from bench.latency_consumer import (
    TABLE,
    InvocationContext,
    change_message,
    invoke_consumer,
    sqs_event,
)
from bench.latency_stack import BENCH_VISIBILITY_S, ModelStack

WINDOWS = (0, 1, 2)
TRICKLE = {"changes": 40, "per_second": 2.0}
BURST_ROWS = 1_000
PG_NET_PER_SECOND = 200  # pg_net's send rate (the project's brief: "about 200 requests/s")
RECEIVERS = 16  # warm receiver environments for the webhooks in flight


def _template_visibility_s() -> int:
    from local.template import load_template, queue_visibility_timeout_s

    return queue_visibility_timeout_s(load_template())


TEMPLATE_VISIBILITY_S = _template_visibility_s()


@dataclass
class VisibilityRun:
    workload: str  # "trickle" or "burst"
    window_s: float
    window_from: str
    batch_size: int
    pollers: int
    changes: int
    item_ms: list[float] = field(default_factory=list)
    list_ms: list[float] = field(default_factory=list)
    supabase_requests: int = 0
    invocations: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    lost_switches: int = 0
    failed_deliveries: int = 0  # records reported failed (or of a failed invocation)
    retried_soon: int = 0  # of those, made visible again in seconds by the consumer
    # (key, when, receipt handle) of each failed record
    failures: list[tuple[str, float, str]] = field(default_factory=list)
    reader_item_ms: float = 0.0
    reader_list_ms: float = 0.0
    seconds: float = 0.0

    def p(self, what: str, fraction: float) -> float:
        values = self.item_ms if what == "item" else self.list_ms
        return percentile(values, fraction) if values else float("nan")

    @property
    def supabase_per_change(self) -> float:
        return self.supabase_requests / max(self.changes, 1)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----- what became visible when ---------------------------------------------------------------


class VisibilityLog:
    """Listens to the trace: row item writes (with the read time they carry) and head
    switches, by execution environment."""

    def __init__(self, table: str = TABLE) -> None:
        from waituntil.cache.layout import list_item_key

        self._head = list_item_key(table)
        self._row_prefix = self._head + "/"
        self._lock = threading.Lock()
        self.writes: dict[str, list[tuple[int, float, str]]] = {}  # pk -> (read_at_ns, end, tag)
        self.switches: dict[str, list[float]] = {}  # tag -> ends of successful head switches
        self.lost_switches = 0
        self.shortened: set[str] = set()  # receipt handles the consumer made visible again soon

    def listen(self, call: Call, params: dict[str, Any]) -> None:
        if call.service == "sqs" and call.operation == "ChangeMessageVisibilityBatch":
            if not call.detail:
                with self._lock:
                    self.shortened.update(entry["ReceiptHandle"] for entry in params["Entries"])
            return
        if call.service != "dynamodb":
            return
        for pk, read_at_ns in _written(call.operation, params):
            if pk == self._head:
                with self._lock:
                    if call.detail:
                        self.lost_switches += 1
                    else:
                        self.switches.setdefault(call.tag, []).append(call.ended)
            elif pk.startswith(self._row_prefix) and read_at_ns is not None and not call.detail:
                with self._lock:
                    self.writes.setdefault(pk, []).append((read_at_ns, call.ended, call.tag))

    def visible(self, pk: str, commit_ns: int) -> tuple[float | None, float | None]:
        """When the item, and the list, first showed a read taken after ``commit_ns``."""
        with self._lock:
            writes = [(end, tag) for read, end, tag in self.writes.get(pk, []) if read > commit_ns]
            if not writes:
                return None, None
            item = min(end for end, _ in writes)
            lists = [
                min((s for s in self.switches.get(tag, []) if s > end), default=None)
                for end, tag in writes
            ]
        found = [when for when in lists if when is not None]
        return item, (min(found) if found else None)


def _written(operation: str, params: dict[str, Any]) -> list[tuple[str, int | None]]:
    """The keys a write request writes, each with the ``read_at_ns`` it carries (if any)."""

    def read_at(values: dict[str, Any]) -> int | None:
        value = values.get(":read_at_ns") or values.get("read_at_ns")
        return int(value["N"]) if value else None

    if operation == "UpdateItem":
        values = params.get("ExpressionAttributeValues", {})
        return [(params["Key"]["pk"]["S"], read_at(values))]
    if operation == "PutItem":
        return [(params["Item"]["pk"]["S"], read_at(params["Item"]))]
    if operation == "TransactWriteItems":
        written = []
        for entry in params["TransactItems"]:
            ((kind, action),) = entry.items()
            if kind == "Put":
                written.append((action["Item"]["pk"]["S"], read_at(action["Item"])))
            elif kind == "Update":
                values = action.get("ExpressionAttributeValues", {})
                written.append((action["Key"]["pk"]["S"], read_at(values)))
        return written
    return []


# ----- Lambda's SQS poller ---------------------------------------------------------------------


class Poller(threading.Thread):
    """One of the event source mapping's pollers, with its own warm consumer environment."""

    def __init__(
        self,
        stack: ModelStack,
        number: int,
        *,
        window_s: float,
        window_from: str,
        batch_size: int,
        stop: threading.Event,
        run: VisibilityRun,
        lock: threading.Lock,
    ) -> None:
        super().__init__(name=f"poller-{number}", daemon=True)
        self._stack = stack
        # Fractional long polls (the memory SQS takes them; botocore's validation would not).
        self._sqs = stack.raw_client("sqs", Config(parameter_validation=False))
        self._ports = stack.consumer_ports(tag=f"consumer-{number}")
        # A warm environment: clients made, secrets read, Supabase connected.
        invoke_consumer(self._ports, [change_message(2)])
        self._window_s = window_s
        self._window_from = window_from
        self._batch_size = batch_size
        self._stopping = stop
        self._run = run
        self._lock = lock
        self._window_began = time.monotonic()

    error: BaseException | None = None

    def run(self) -> None:
        try:
            self._poll()
        except BaseException as error:  # reported by the run, which stops
            self.error = error
            self._stopping.set()

    def _poll(self) -> None:
        while not self._stopping.is_set():
            messages = self._gather()
            if not messages:
                continue
            failed = self._invoke(messages)
            with self._lock:
                self._run.invocations += 1
                self._run.batch_sizes.append(len(messages))
                self._run.failed_deliveries += len(failed)
                now = time.perf_counter()
                self._run.failures += [
                    (str(json.loads(m["Body"])["key"]), now, m["ReceiptHandle"])
                    for m in messages
                    if m["MessageId"] in failed
                ]
            # As Lambda does: the records that succeeded are deleted; the others come back
            # after the queue's visibility timeout, or sooner if the consumer shortened it.
            done = [m for m in messages if m["MessageId"] not in failed]
            for start in range(0, len(done), 10):
                group = done[start : start + 10]
                self._sqs.delete_message_batch(
                    QueueUrl=self._stack.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(group)
                    ],
                )
                wait(self._stack.latencies, "sqs", self._stack.trace, "DeleteMessageBatch")
            self._window_began = time.monotonic()

    def _invoke(self, messages: list[dict[str, Any]]) -> set[str]:
        """The consumer's handler on one batch; the message ids that failed."""
        from consumer.handler import lambda_handler

        event = sqs_event(
            [m["Body"] for m in messages],
            message_ids=[m["MessageId"] for m in messages],
            received=[
                (m["ReceiptHandle"], m.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
                for m in messages
            ],
        )
        try:
            response = lambda_handler(event, InvocationContext(), ports=self._ports)
        except Exception:  # every record failed: Powertools raises, Lambda retries them all
            return {m["MessageId"] for m in messages}
        return {failure["itemIdentifier"] for failure in response["batchItemFailures"]}

    def _gather(self) -> list[dict[str, Any]]:
        first = self._receive(1.0, min(10, self._batch_size))
        if not first or self._window_s <= 0:
            return first
        began = time.monotonic() if self._window_from == "first-message" else self._window_began
        gathered = list(first)
        while len(gathered) < self._batch_size and not self._stopping.is_set():
            left = began + self._window_s - time.monotonic()
            if left <= 0:
                break
            gathered += self._receive(left, min(10, self._batch_size - len(gathered)))
        return gathered

    def _receive(self, wait_s: float, most: int) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=self._stack.queue_url,
            MaxNumberOfMessages=most,
            WaitTimeSeconds=wait_s,  # the memory SQS takes fractions
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        if messages:
            # The round trip that brought them: SQS to the poller, over the network.
            wait(self._stack.latencies, "sqs", self._stack.trace, "ReceiveMessage")
        return messages


# ----- a run -------------------------------------------------------------------------------------


class Receivers:
    """Warm receiver environments, shared by every run of a stack (secrets read)."""

    def __init__(self, stack: ModelStack, count: int = RECEIVERS) -> None:
        self.free = [stack.receiver_ports(tag=f"receiver-{n}") for n in range(count)]
        self.lock = threading.Lock()
        row = stack.table.row(2)
        for ports in self.free:
            _webhook(
                stack,
                ports,
                {
                    "type": "UPDATE",
                    "table": TABLE,
                    "schema": "public",
                    "record": row,
                    "old_record": row,
                },
            )
        _drain(stack)

    def deliver(self, stack: ModelStack, payload: dict[str, Any]) -> None:
        with self.lock:
            ports = self.free.pop()
        try:
            _webhook(stack, ports, payload, quiet_output=False)
        finally:
            with self.lock:
                self.free.append(ports)


def _drain(stack: ModelStack) -> None:
    sqs = stack.raw_client("sqs")
    while True:
        messages = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10)
        if not messages.get("Messages"):
            return
        for message in messages["Messages"]:
            sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])


def measure_run(*args: Any, **kwargs: Any) -> VisibilityRun:
    """One workload through the whole pipeline at one batching window (stdout silenced once
    for all its threads: Powertools prints its metrics there)."""
    with quiet():
        return _measure_run(*args, **kwargs)


def _measure_run(
    stack: ModelStack,
    receivers: Receivers,
    workload: str,
    window_s: float,
    *,
    window_from: str = "first-message",
    pollers: int = 5,
    batch_size: int | None = None,
    trickle: dict[str, float] | None = None,
    burst_rows: int = BURST_ROWS,
    reader_ms: tuple[float, float] = (0.0, 0.0),
    progress: Progress | None = None,
) -> VisibilityRun:
    # Lambda's rule for SQS: a batch above 10 needs a window of at least 1 s (the template
    # asserts the same): the template's 50 with a window, 10 without.
    size = batch_size or (50 if window_s > 0 else 10)
    trickle = trickle or TRICKLE
    count = int(trickle["changes"]) if workload == "trickle" else burst_rows
    run = VisibilityRun(workload, window_s, window_from, size, pollers, count)
    run.reader_item_ms, run.reader_list_ms = reader_ms
    log = VisibilityLog()
    stack.trace.listeners.append(log.listen)
    stop = threading.Event()
    lock = threading.Lock()
    threads = [
        Poller(
            stack,
            number,
            window_s=window_s,
            window_from=window_from,
            batch_size=size,
            stop=stop,
            run=run,
            lock=lock,
        )
        for number in range(pollers)
    ]
    requests_before = stack.table.requests
    commits: list[tuple[str, int, float]] = []  # key, commit epoch ns, commit perf_counter
    try:
        for thread in threads:
            thread.start()
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(receivers.free)) as senders:
            rng = random.Random(f"{workload}-{window_s}")
            pace = 1 / trickle["per_second"] if workload == "trickle" else 1 / PG_NET_PER_SECOND
            due = time.perf_counter()
            for index in range(count):
                if workload == "trickle":
                    due += rng.expovariate(1 / pace)
                else:
                    due += pace
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                if workload == "trickle":
                    key = rng.randrange(2, stack.table.rows + 1)
                    commit_ns, commit_perf = time.time_ns(), time.perf_counter()
                    row = stack.table.update(key)
                    kind = "UPDATE"
                else:
                    commit_ns, commit_perf = time.time_ns(), time.perf_counter()
                    row = stack.table.insert()
                    key, kind = int(row["id"]), "INSERT"
                commits.append((str(key), commit_ns, commit_perf))
                payload: dict[str, Any] = {
                    "type": kind,
                    "table": TABLE,
                    "schema": "public",
                    "record": row,
                }
                payload["old_record"] = row if kind == "UPDATE" else None
                senders.submit(receivers.deliver, stack, payload)
                if progress is not None and workload == "burst":
                    progress.count(f"burst at window {window_s:g} s", index + 1, count)
        _wait_until_visible(log, commits, threads, timeout_s=60 + 3 * window_s)
        run.seconds = time.perf_counter() - started
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        stack.trace.listeners.remove(log.listen)
    from waituntil.cache.layout import row_item_key

    for changed, commit_ns, commit_perf in commits:
        item, listed = log.visible(row_item_key(TABLE, changed), commit_ns)
        if item is not None:
            late = _retry_penalty_s(run.failures, log.shortened, changed, commit_perf, item)
            run.item_ms.append((item + late - commit_perf) * 1000 + run.reader_item_ms)
        if listed is not None:
            late = _retry_penalty_s(run.failures, log.shortened, changed, commit_perf, listed)
            run.list_ms.append((listed + late - commit_perf) * 1000 + run.reader_list_ms)
    run.supabase_requests = stack.table.requests - requests_before
    run.lost_switches = log.lost_switches
    run.retried_soon = sum(1 for _, _, handle in run.failures if handle in log.shortened)
    return run


def _retry_penalty_s(
    failures: list[tuple[str, float, str]],
    shortened: set[str],
    key: str,
    committed: float,
    visible: float,
) -> float:
    """A change whose delivery failed came back here after BENCH_VISIBILITY_S; on AWS it
    waits out the queue's visibility timeout from template.yaml: the difference is added.
    Unless the consumer made it visible again sooner (``ChangeMessageVisibility``, which the
    queue here honours as SQS does): then it came back when it would on AWS."""
    if any(
        failed == key and committed < when < visible and handle not in shortened
        for failed, when, handle in failures
    ):
        return float(TEMPLATE_VISIBILITY_S - BENCH_VISIBILITY_S)
    return 0.0


def _wait_until_visible(
    log: VisibilityLog,
    commits: list[tuple[str, int, float]],
    pollers: list[Poller],
    timeout_s: float,
) -> None:
    from waituntil.cache.layout import row_item_key

    deadline = time.monotonic() + timeout_s
    pending = list(commits)
    while pending and time.monotonic() < deadline:
        for poller in pollers:
            if poller.error is not None:
                raise RuntimeError(f"{poller.name} failed") from poller.error
        pending = [
            commit
            for commit in pending
            if log.visible(row_item_key(TABLE, commit[0]), commit[1])[1] is None
        ]
        time.sleep(0.05)
    if pending:
        raise RuntimeError(f"{len(pending)} changes never became visible in the list")


def _webhook(
    stack: ModelStack, ports: Any, payload: dict[str, Any], *, quiet_output: bool = True
) -> None:
    """pg_net's POST: the model's webhook leg, then the receiver's real handler. In threads,
    ``quiet_output=False``: the caller silences stdout once (redirecting it per thread would
    race)."""
    from receiver.handler import lambda_handler

    wait(stack.latencies, "webhook", stack.trace, "POST /revalidate")
    event = dict(_RECEIVER_EVENT)
    event["body"] = json.dumps(payload)
    event["requestContext"] = {**event["requestContext"], "requestId": str(uuid.uuid4())}
    with quiet() if quiet_output else contextlib.nullcontext():
        response = lambda_handler(event, BenchContext(), ports=ports)
    if response["statusCode"] != 202:
        raise RuntimeError(f"the receiver answered {response['statusCode']}: {response['body']}")


_RECEIVER_EVENT: dict[str, Any] = json.loads((ROOT / "events/receiver/update.json").read_text())


# ----- the read API's own time, and one change round trip by round trip ---------------------


def reader_times(stack: ModelStack, reads: int = 30) -> tuple[float, float]:
    """Median ms of the reader's real handler under the model: one item, the list's first
    page (each a fresh request, no ETag)."""
    from reader.handler import lambda_handler

    ports = stack.reader_ports(tag="reader")
    item_event = json.loads((ROOT / "events/reader/item.json").read_text())
    item_event["path"] = "/articles/2"
    item_event["pathParameters"] = {"table": TABLE, "id": "2"}
    list_event = json.loads((ROOT / "events/reader/list.json").read_text())
    samples: dict[str, list[float]] = {"item": [], "list": []}
    for _ in range(reads):
        for name, event in (("item", item_event), ("list", list_event)):
            started = time.perf_counter()
            with quiet():
                response = lambda_handler(event, BenchContext(), ports=ports)
            samples[name].append((time.perf_counter() - started) * 1000)
            if response["statusCode"] != 200:
                raise RuntimeError(f"the reader answered {response['statusCode']} for {name}")
    return statistics.median(samples["item"]), statistics.median(samples["list"])


def one_change(stack: ModelStack) -> list[Call]:
    """One change, each leg after the other (window 0, warm functions): the critical chain of
    every modelled call from the webhook to the read API answering the item and the list."""
    from reader.handler import lambda_handler as read

    receiver = stack.receiver_ports(tag="receiver-breakdown")
    consumer = stack.consumer_ports(tag="consumer-breakdown")
    reader = stack.reader_ports(tag="reader-breakdown")
    sqs = stack.raw_client("sqs")
    item_event = json.loads((ROOT / "events/reader/item.json").read_text())
    list_event = json.loads((ROOT / "events/reader/list.json").read_text())
    for attempt in range(2):  # the first warms every client; the second is measured
        key = 2 + attempt
        row = stack.table.update(key)
        with stack.trace.window() as calls:
            _webhook(
                stack,
                receiver,
                {
                    "type": "UPDATE",
                    "table": TABLE,
                    "schema": "public",
                    "record": row,
                    "old_record": row,
                },
            )
            messages = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10)
            messages = messages.get("Messages", [])
            wait(stack.latencies, "sqs", stack.trace, "ReceiveMessage")
            invoke_consumer(consumer, [message["Body"] for message in messages])
            item_event["path"] = f"/articles/{key}"
            item_event["pathParameters"] = {"table": TABLE, "id": str(key)}
            with quiet():
                read(item_event, BenchContext(), ports=reader)
                read(list_event, BenchContext(), ports=reader)
        for message in messages:
            sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    # The critical path: the chain that waited longest (a read ahead beside the Supabase read,
    # or a retirement beside the row write, ends early and is not on it).
    return critical_chain(calls, lambda call: stack.latencies.of(call.service))
