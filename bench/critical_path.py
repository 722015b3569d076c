"""The critical path of a warm batch: calls per service, and how many wait on one another.

For a batch of 1 and of 10 single-row updates, at 1,000 and 100,000 rows, the consumer's real
handler runs warm (its clients made, its secrets read, one batch done before) against:

- the **model**: ``bench.memory_dynamodb`` and ``bench.memory_supabase``, every call waiting
  its latency (``bench.latency``); the figure this project's speed is judged by;
- the same **without latency**: the consumer's own CPU (the floor under the model);
- **moto**, with and without the latency (1,000 rows only; a 100,000-row table costs moto
  about 20 minutes to fill): the same calls (a check on the memory service), and the
  figure the benchmarks gave before the model;
- the **full-read design** the patchable list replaced (``bench.full_read_baseline``), for
  the 10-change batch at the smallest size, on the same stack behind the same shim: the
  patch path must be no slower than it (``full_read_batches``).

A batch's **sequential round trips** are the calls on its critical path: of the chains of its
calls in which each began after the previous one ended, the one that waited longest under the
model (``bench.latency.critical_chain``, each call weighed by its latency): calls made in
parallel count once, and a branch that ended early, with time to spare, is not on it (the
longest chain by count alone is kept too, as ``longest_chain``). As a cross-check, the
latency a batch pays (its time under the model less its time without) divided by the mean
latency of the calls on that chain gives the same count when the chain is all the batch
waited on.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.common import Progress
from bench.latency import NO_LATENCY, Call, CallTrace, Latencies, critical_chain, what
from bench.latency_consumer import change_message, drain_fill, invoke_consumer
from bench.latency_stack import ModelStack, model_stack

SIZES = (1_000, 100_000)
CHANGES = (1, 10)
REPEATS = {1: 7, 10: 5}


@dataclass
class BatchFigures:
    backend: str  # "memory" or "moto"
    latency: bool
    rows: int
    changes: int
    seconds: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)  # the process's CPU during each batch
    round_trips: list[int] = field(default_factory=list)  # calls on the critical path
    # The longest chain by count alone: a branch that ended early, with time to spare (a read
    # ahead while Supabase answers), can lengthen it without making the batch any slower.
    longest_chain: list[int] = field(default_factory=list)
    chain_model_s: list[float] = field(default_factory=list)  # nominal latency on the chain
    calls: dict[str, int] = field(default_factory=dict)  # by service, last repeat
    operations: dict[str, int] = field(default_factory=dict)  # by service.operation
    chain: list[str] = field(default_factory=list)  # the last repeat's chain, in order
    chain_targets: list[str] = field(default_factory=list)  # what each of those touched
    repeat_calls: list[dict[str, int]] = field(default_factory=list)  # by service, per repeat

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def median_cpu_s(self) -> float:
        return statistics.median(self.cpu_s) if self.cpu_s else 0.0

    @property
    def median_round_trips(self) -> float:
        return statistics.median(self.round_trips) if self.round_trips else 0.0

    @property
    def median_chain_model_s(self) -> float:
        return statistics.median(self.chain_model_s) if self.chain_model_s else 0.0

    def median_calls(self) -> dict[str, float]:
        """Calls per service, the median over the repeats (a batch's keys fall in one chunk
        or several, so the count varies a little)."""
        services = sorted({s for calls in self.repeat_calls for s in calls})
        return {
            s: statistics.median(calls.get(s, 0) for calls in self.repeat_calls) for s in services
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    latencies: Latencies,
    sizes: tuple[int, ...] = SIZES,
    changes: tuple[int, ...] = CHANGES,
    *,
    moto_rows: int | None = 1_000,
    progress: Progress | None = None,
) -> list[BatchFigures]:
    results: list[BatchFigures] = []
    for rows in sizes:
        with model_stack(rows, latencies, queue="memory") as stack:
            fill(stack, progress)
            results += batches(stack, "memory", rows, progress, changes)
    if moto_rows:
        with model_stack(moto_rows, latencies, backend="moto", queue="memory") as stack:
            fill(stack, progress)
            results += batches(stack, "moto", moto_rows, progress, changes)
    return results


def fill(stack: ModelStack, progress: Progress | None) -> None:
    if progress is not None:
        progress.step(f"critical path: filling {stack.table.rows:,} rows ({stack.backend})")
    drain_fill(stack, stack.consumer_ports(latencies=NO_LATENCY))


def batches(
    stack: ModelStack,
    backend: str,
    rows: int,
    progress: Progress | None,
    changes: tuple[int, ...] = CHANGES,
    *,
    repeats: dict[int, int] | None = None,
    bare: bool = True,
) -> list[BatchFigures]:
    """Warm batches of each size, with the model's latency and (``bare``) without."""
    rng = random.Random(rows)
    results = []
    for latency in (True, False) if bare else (True,):
        ports = stack.consumer_ports(latencies=None if latency else NO_LATENCY)
        _run(stack, ports, rng.sample(range(2, rows + 1), 1))  # warm: clients, secrets
        for count in changes:
            if progress is not None:
                progress.step(
                    f"critical path: {count}-change batches at {rows:,} rows, {backend}, "
                    f"{'with' if latency else 'without'} latency"
                )
            figures = BatchFigures(backend, latency, rows, count)
            for _ in range((repeats or REPEATS)[count]):
                cpu = time.process_time()
                calls, seconds = _run(stack, ports, rng.sample(range(2, rows + 1), count))
                figures.cpu_s.append(time.process_time() - cpu)
                chain = critical_chain(calls, lambda call: stack.latencies.of(call.service))
                figures.seconds.append(seconds)
                figures.round_trips.append(len(chain))
                figures.longest_chain.append(len(critical_chain(calls)))
                figures.chain_model_s.append(
                    sum(stack.latencies.of(call.service) for call in chain)
                )
                figures.calls = CallTrace.count_services(calls)
                figures.repeat_calls.append(figures.calls)
                figures.operations = CallTrace.count_operations(calls)
                figures.chain = [f"{call.service}.{call.operation}" for call in chain]
                figures.chain_targets = [what(call) for call in chain]
            results.append(figures)
    return results


def _run(stack: ModelStack, ports: Any, keys: list[int]) -> tuple[list[Call], float]:
    """Commit ``keys`` in Supabase, then one consumer invocation with their changes."""
    for key in keys:
        stack.table.update(key)
    bodies = [change_message(key) for key in keys]
    with stack.trace.window() as calls:
        started = time.perf_counter()
        invoke_consumer(ports, bodies)
        seconds = time.perf_counter() - started
    return calls, seconds


FULL_READ_CHANGES = 10
FULL_READ_REPEATS = 7


def full_read_batches(
    stack: ModelStack, repeats: int = FULL_READ_REPEATS, changes: int = FULL_READ_CHANGES
) -> list[float]:
    """Seconds per batch of the design before the patchable list, under the model: each batch
    re-reads the whole table from Supabase and rewrites every chunk (``full_read_baseline``).

    It runs through a DynamoDB client and a Supabase source behind the same shim as the
    consumer's, on the same stack, so its calls wait the same latencies; one batch first, to
    make its first version (the design's steady state replaces one).
    """
    from bench.full_read_baseline import run_batch

    ports = stack.consumer_ports()
    client = stack.client("dynamodb")
    rows = stack.table.rows
    rng = random.Random(rows + changes)
    run_batch(client, stack.table_name, ports.source, [2], items=True)
    seconds = []
    for _ in range(repeats):
        keys = rng.sample(range(2, rows + 1), changes)
        for key in keys:
            stack.table.update(key)
        started = time.perf_counter()
        run_batch(client, stack.table_name, ports.source, keys, items=True)
        seconds.append(time.perf_counter() - started)
    return seconds


def latency_paid_round_trips(model: BatchFigures, bare: BatchFigures) -> float:
    """Round trips implied by time: the latency the batch paid over its mean per chain call."""
    if not model.median_round_trips or not model.median_chain_model_s:
        return 0.0
    per_call = model.median_chain_model_s / model.median_round_trips
    return (model.median_s - bare.median_s) / per_call
