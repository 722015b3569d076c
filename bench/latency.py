"""The latency model: every call to AWS or Supabase waits a fixed time, without burning CPU.

On AWS, what decides a batch's time is how many calls wait on one another: a DynamoDB call
costs a few milliseconds of network and no CPU of the caller's. In-process moto inverts that
(about 8 ms of CPU per conditional write, no network), so a thread pool looks useless and
sequential round trips look free. The shims here put the network back:

- ``instrument_client(client, service, latencies, trace)``: botocore event hooks on a boto3
  client. ``before-send`` sleeps the service's latency on each HTTP attempt (so botocore's
  retries pay it again); ``before-parameter-build``/``after-call`` record the call's span and
  parameters in the trace.
  Whatever answers afterwards (moto, ``bench.memory_dynamodb``) is unchanged.
- ``DelayedTransport``: an httpx transport that sleeps before handing the request on; what
  postgrest-py (the consumer's ``SupabaseSource``) sends goes through it.

Both sleep with ``time.sleep``, which releases the GIL and holds no lock, so calls made in
parallel (the row writer's thread pool) overlap as they do on the network. ``CallTrace``
records each call's span and counts the **sequential round trips**: the chain of calls in which
each began after the previous one ended (the heaviest by latency: the critical path); calls
that overlap count once.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

# Model defaults (seconds): same-region round trips as the project's brief gives them
# (/work/shared/BRIEF.md is not shipped; docs/BENCHMARKS.md quotes the sources):
# DynamoDB and SQS 5-10 ms, S3 PUT and a Supabase REST read 20-30 ms. The webhook leg
# (pg_net -> API Gateway -> the receiver) is the issue's own model figure: the 50 ms floor of
# one change is the webhook, one SendMessage, one Supabase read and one write.
DEFAULT_LATENCIES: dict[str, float] = {
    "dynamodb": 0.005,
    "s3": 0.020,
    "sqs": 0.010,
    "secretsmanager": 0.010,
    "supabase": 0.025,
    "webhook": 0.010,
}
LATENCY_SOURCES = {
    "dynamodb": "same-region DynamoDB round trip, 5-10 ms (low end)",
    "s3": "same-region S3 PUT, 20-30 ms (low end)",
    "sqs": "same-region SQS round trip, 5-10 ms (high end: SendMessage is the slower call)",
    "secretsmanager": "taken as SQS's (an AWS JSON API in the region); cached after the first",
    "supabase": "a Supabase REST (PostgREST) read from the same region, 20-30 ms (middle)",
    "webhook": "pg_net to API Gateway to the receiver: 10 ms, so that one change's floor "
    "(webhook + SendMessage + Supabase read + write) is the 50 ms the issue names",
}


@dataclass(frozen=True)
class Latencies:
    """Seconds each call waits, by service (``DEFAULT_LATENCIES`` unless told)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LATENCIES))

    def of(self, service: str) -> float:
        return self.seconds[service]

    def scaled(self, factor: float) -> Latencies:
        """The same model with every latency times ``factor`` (0: none, as moto alone)."""
        return replace(self, seconds={s: v * factor for s, v in self.seconds.items()})

    @classmethod
    def parse(cls, text: str) -> Latencies:
        """``dynamodb=5,supabase=25`` (milliseconds) over the defaults."""
        seconds = dict(DEFAULT_LATENCIES)
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = part.partition("=")
            if name not in seconds:
                raise ValueError(f"unknown service {name!r}: one of {sorted(seconds)}")
            seconds[name] = float(value) / 1000
        return cls(seconds)


NO_LATENCY = Latencies().scaled(0)


@dataclass(frozen=True)
class Call:
    """One call: which service and operation, when it began and ended (perf_counter s), and
    how long of that it slept in the model."""

    service: str
    operation: str
    started: float
    ended: float
    waited: float
    detail: str = ""  # the error code of a call that failed
    tag: str = ""  # which execution environment made it (``instrument_client``'s ``tag``)
    target: str = ""  # what it read or wrote: an item's key, or how many items


class CallTrace:
    """Every call's span, thread-safe; counts, and the chain of calls that waited on one
    another. ``keep_calls=False`` keeps counts only (a million-row fill: constant memory)."""

    def __init__(self, *, keep_calls: bool = True) -> None:
        self._keep = keep_calls
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.counts: Counter[tuple[str, str]] = Counter()
        self.waited_s = 0.0
        self.shim_cpu_s = 0.0  # CPU the shims themselves spent (must stay negligible)
        self.listeners: list[Callable[[Call, dict[str, Any]], None]] = []

    def record(self, call: Call, params: dict[str, Any] | None = None) -> None:
        with self._lock:
            self.counts[(call.service, call.operation)] += 1
            self.waited_s += call.waited
            if self._keep:
                self.calls.append(call)
        for listener in self.listeners:
            listener(call, params or {})

    def add_shim_cpu(self, seconds: float) -> None:
        with self._lock:
            self.shim_cpu_s += seconds

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.counts.clear()
            self.waited_s = 0.0
            self.shim_cpu_s = 0.0

    def total(self) -> int:
        return sum(self.counts.values())

    def by_service(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (service, _), count in self.counts.items():
            totals[service] += count
        return dict(sorted(totals.items()))

    def by_operation(self) -> dict[str, int]:
        return {f"{s}.{o}": n for (s, o), n in sorted(self.counts.items())}

    @staticmethod
    def count_services(calls: Sequence[Call]) -> dict[str, int]:
        return dict(sorted(Counter(call.service for call in calls).items()))

    @staticmethod
    def count_operations(calls: Sequence[Call]) -> dict[str, int]:
        counts = Counter(f"{call.service}.{call.operation}" for call in calls)
        return dict(sorted(counts.items()))

    @contextmanager
    def window(self) -> Iterator[list[Call]]:
        """The calls recorded inside the block (a list filled when the block ends)."""
        with self._lock:
            first = len(self.calls)
        captured: list[Call] = []
        try:
            yield captured
        finally:
            with self._lock:
                captured.extend(self.calls[first:])


def critical_chain(
    calls: Sequence[Call], weight: Callable[[Call], float] | None = None
) -> list[Call]:
    """The longest chain of calls each of which began after the previous one ended.

    Calls that overlap in time cannot both be on it: a batch of parallel writes counts once.
    With ``weight`` (for example the latency each call waited), the heaviest such chain.
    O(n log n): calls by end time, and for each call the best chain ending before it begins.
    """
    if not calls:
        return []
    weigh = weight or (lambda _call: 1.0)
    by_end = sorted(calls, key=lambda call: call.ended)
    ends = [call.ended for call in by_end]
    best: list[float] = []  # best chain weight ending at or before by_end[i]
    best_at: list[int] = []  # the call that ends that best chain
    chain_weight: list[float] = []
    previous: list[int] = []
    for index, call in enumerate(by_end):
        # Chains that end no later than this call begins (a small tolerance: a call that
        # begins as the previous one returns, in the same thread, follows it).
        before = bisect.bisect_right(ends, call.started + 1e-9, 0, index) - 1
        base = best[before] if before >= 0 else 0.0
        chain_weight.append(base + weigh(call))
        previous.append(best_at[before] if before >= 0 else -1)
        if index == 0 or chain_weight[index] > best[index - 1]:
            best.append(chain_weight[index])
            best_at.append(index)
        else:
            best.append(best[index - 1])
            best_at.append(best_at[index - 1])
    chain: list[Call] = []
    at = best_at[-1]
    while at >= 0:
        chain.append(by_end[at])
        at = previous[at]
    return chain[::-1]


def sequential_round_trips(calls: Sequence[Call]) -> int:
    """How many calls of ``calls`` waited on one another: the longest chain's length."""
    return len(critical_chain(calls))


# ----- the shims ---------------------------------------------------------------------------


def instrument_client(
    client: Any,
    service: str,
    latencies: Latencies,
    trace: CallTrace,
    *,
    tag: str = "",
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Make every call of a boto3 ``client`` wait ``latencies.of(service)`` and record it
    (with ``tag``, saying whose client it is).

    Registered first, so the latency is paid before moto (or ``bench.memory_dynamodb``)
    answers; nothing else about the call changes. Returns the client.
    """
    seconds = latencies.of(service)
    local = threading.local()

    def before_parameter_build(params: dict[str, Any], model: Any, **_: Any) -> None:
        # The call's own parameters (``before-call`` sees the serialized request instead).
        local.stack = getattr(local, "stack", [])
        local.stack.append((time.perf_counter(), 0.0, params, model.name))

    def before_send(**_: Any) -> None:
        if seconds <= 0:
            return
        cpu = time.thread_time()
        began = time.perf_counter()
        sleep(seconds)
        slept = time.perf_counter() - began
        trace.add_shim_cpu(time.thread_time() - cpu)
        stack = getattr(local, "stack", None)
        if stack:
            started, waited, params, name = stack[-1]
            stack[-1] = (started, waited + slept, params, name)

    def after_call(**kwargs: Any) -> None:
        # ``after-call-error`` (a call that raised: a connection error, an emulator's own
        # failure) carries no ``model``: the name comes from the call's start, and the error
        # goes on to botocore unchanged.
        stack = getattr(local, "stack", None)
        if not stack:
            return
        started, waited, params, name = stack.pop()
        error = kwargs.get("exception")
        parsed = kwargs.get("parsed") or {}
        failed = error is not None or "Error" in parsed
        detail = str(parsed.get("Error", {}).get("Code", "")) if failed and parsed else ""
        ended = time.perf_counter()
        call = Call(service, name, started, ended, waited, detail, tag, target_of(params))
        trace.record(call, params)

    events = client.meta.events
    events.register_first(f"before-parameter-build.{_event_name(client)}", before_parameter_build)
    events.register_first(f"before-send.{_event_name(client)}", before_send)
    events.register_last(f"after-call.{_event_name(client)}", after_call)
    events.register_last(f"after-call-error.{_event_name(client)}", after_call)
    return client


def instrument_session(
    session: Any, latencies: Latencies, trace: CallTrace, *, tag: str = ""
) -> None:
    """The same hooks on a botocore session, for the clients a function makes itself (its
    ``default_ports``): each call waits its service's latency and is recorded."""
    names = {"secrets-manager": "secretsmanager"}
    local = threading.local()

    def service_of(event_name: str) -> str:
        hyphenized = event_name.split(".")[1]
        return names.get(hyphenized, hyphenized)

    def before_parameter_build(params: dict[str, Any], **_: Any) -> None:
        local.stack = getattr(local, "stack", [])
        local.stack.append((time.perf_counter(), 0.0, params))

    def before_send(event_name: str, **_: Any) -> None:
        seconds = latencies.of(service_of(event_name))
        if seconds <= 0:
            return
        began = time.perf_counter()
        time.sleep(seconds)
        stack = getattr(local, "stack", None)
        if stack:
            started, waited, params = stack[-1]
            stack[-1] = (started, waited + time.perf_counter() - began, params)

    def after_call(event_name: str, model: Any, **kwargs: Any) -> None:
        stack = getattr(local, "stack", None)
        if not stack:
            return
        started, waited, params = stack.pop()
        failed = kwargs.get("exception") is not None or "Error" in (kwargs.get("parsed") or {})
        call = Call(service_of(event_name), model.name, started, time.perf_counter(), waited)
        trace.record(replace(call, detail="failed" if failed else "", tag=tag), params)

    session.register("before-parameter-build", before_parameter_build)
    session.register("before-send", before_send)
    session.register("after-call", after_call)
    session.register("after-call-error", after_call)


def target_of(params: dict[str, Any]) -> str:
    """What a call reads or writes, in short: the key of one item, or the count of several
    (the report names the cache's item kinds from these)."""
    for name in ("Key", "Item"):
        key = params.get(name)
        if isinstance(key, dict) and isinstance(key.get("pk"), dict):
            return str(next(iter(key["pk"].values())))
    for name in ("RequestItems", "TransactItems"):
        requests = params.get(name)
        if isinstance(requests, dict):
            count = sum(
                len(r) if isinstance(r, list) else len(r.get("Keys", [])) for r in requests.values()
            )
            return _items(count)
        if isinstance(requests, list):
            return _items(len(requests))
    if "QueueUrl" in params:
        return "the change queue"
    if "SecretId" in params:
        return str(params["SecretId"])
    return ""


def _items(count: int) -> str:
    return "1 item" if count == 1 else f"{count} items"


def what(call: Call) -> str:
    """The cache item kind a call touched, from its key (``cache_layout``'s key shapes)."""
    target = call.target
    if target == "1 items":  # as runs before this wording recorded it
        return "1 item"
    if call.service != "dynamodb" or not target.startswith("/"):
        return target
    if "#c/" in target:
        return "a list chunk"
    if "#i/" in target:
        return "an index page"
    if "@" in target:
        return "a frozen list version"
    if target.endswith("#sync"):
        return "the sync checkpoint"
    if target.count("/") == 1:
        return "the list head"
    return "a row item"


def _event_name(client: Any) -> str:
    return str(client.meta.service_model.service_id.hyphenize())


class DelayedTransport(httpx.BaseTransport):
    """An httpx transport that waits the model's latency, records the call, and hands the
    request to ``inner`` (``httpx.MockTransport`` over ``bench.memory_supabase``, or a real
    ``httpx.HTTPTransport``)."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        latencies: Latencies,
        trace: CallTrace,
        service: str = "supabase",
        sleep: Callable[[float], None] = time.sleep,
        tag: str = "",
    ) -> None:
        self._inner = inner
        self._tag = tag
        self._seconds = latencies.of(service)
        self._trace = trace
        self._service = service
        self._sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        if self._seconds > 0:
            cpu = time.thread_time()
            self._sleep(self._seconds)
            self._trace.add_shim_cpu(time.thread_time() - cpu)
        waited = time.perf_counter() - started
        response = self._inner.handle_request(request)
        response.read()
        operation = f"{request.method} {request.url.path.rsplit('/', 1)[-1]}"
        self._trace.record(
            Call(self._service, operation, started, time.perf_counter(), waited, tag=self._tag),
            {"url": str(request.url)},
        )
        return response


def wait(latencies: Latencies, service: str, trace: CallTrace, operation: str) -> None:
    """One modelled call with nothing behind it (the webhook's leg to API Gateway)."""
    started = time.perf_counter()
    seconds = latencies.of(service)
    if seconds > 0:
        time.sleep(seconds)
    ended = time.perf_counter()
    trace.record(Call(service, operation, started, ended, ended - started))
