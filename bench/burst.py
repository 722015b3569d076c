"""A burst answered in time: a bulk insert's webhooks against the receiver, cold starts
included. Is every webhook answered 2xx within pg_net's timeout, with p99 under 1 s?

Measured here, as inputs:

- the receiver's **warm service time**: its real handler in process, 300 webhooks one after
  another, its ``SendMessage`` to moto's SQS behind the latency shim (wall and CPU each);
- its **cold start**: in fresh interpreters (``bench.cold_child``), ``import
  receiver.handler`` and the first invocation (clients made, the secret read, one
  ``SendMessage``), wall and CPU.

Modelled, from AWS's and Supabase's documents, and simulated event by event:

- **pg_net** sends about 200 requests/s and never retries; a webhook gets 1 s from SQL
  (``net.http_post``'s default) or 5 s from the dashboard. Two arrival patterns: a steady
  200/s, and 200 at once every second (pg_net's worker takes a batch of 200 per round);
- **API Gateway** (REST): the stage's throttle from the template (``ApiRateLimit`` 200/s,
  ``ApiBurstLimit`` 400) as a token bucket; a refused request is a 429, lost;
- **Lambda**: a request with no idle environment starts a new one (cold start) if the
  function may scale (1,000 new environments per 10 s per function, refilled continuously;
  the account's 1,000 concurrent executions), else is throttled (lost). CPU: the measured
  CPU seconds run at the function's share of a vCPU, as Lambda allocates it by memory
  (1,769 MB is one vCPU: ``share_of``), at each ``MEMORY_SIZES``; the init phase at that
  share too (what AWS documents), or at a whole core (``init_share=1``: an unthrottled init
  phase has been observed, e.g. Bite-Sized Serverless, "Lambda Cold Starts and Bootstrap
  Code", 2023; AWS does not document it, so no choice rests on it). The managed runtime's own
  start (before our imports) is not measured here: ``runtime_init_s``; the report gives the
  largest value that still answers every webhook in time, and ``chosen_memory`` the smallest
  memory that leaves ``RUNTIME_START_S`` for it.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.common import ROOT, BenchContext, Progress, percentile, quiet, use_fake_aws
from bench.lambda_site import lambda_command, lambda_environment, runtime_python
from bench.latency import Latencies

PG_NET_PER_SECOND = 200
PG_NET_BATCH = 200
API_RATE, API_BURST = 200.0, 400.0  # template.yaml: ApiRateLimit, ApiBurstLimit
SCALE_PER_10_S = 1_000  # new execution environments per function per 10 s
ACCOUNT_CONCURRENCY = 1_000
VCPU_MB = 1_769  # Lambda: 1,769 MB of memory is one vCPU
MEMORY_SIZES = (256, 512, 1_024, 1_769)  # the receiver's MemorySize candidates
# What the managed runtime's own start may take before our imports, for the choice of memory:
# a bare Python function's Init Duration is about 75-90 ms (a published measurement at 512 and
# 1,024 MB: dev.robot.wtf, "Cold Start Benchmarks", 2026), and the environment's creation comes
# before it; 250 ms leaves room for both and for a Lambda core slower than this machine's.
RUNTIME_START_S = 0.25
# AWS Lambda pricing, us-east-1, Arm: duration per GB-second, requests, provisioned
# concurrency per GB-second configured; SnapStart (Python): cache per GB-second (3 hours at
# least per version), restore per GB.
ON_DEMAND_GB_S_USD = 0.0000133334
REQUEST_USD = 0.20 / 1_000_000
PROVISIONED_GB_S_USD = 0.0000033334
SNAPSTART_CACHE_GB_S_USD = 0.0000015046
SNAPSTART_RESTORE_GB_USD = 0.0001397998
SECONDS_PER_MONTH = 730 * 3600


def template_memory_mb() -> int:
    """The receiver's MemorySize in template.yaml (what a deployment gets)."""
    from local.template import function_property, load_template

    return int(str(function_property(load_template(), "ReceiverFunction", "MemorySize")))


def share_of(memory_mb: int) -> float:
    """The share of a vCPU Lambda gives a function of this memory (a single thread can use
    one vCPU at most)."""
    return min(1.0, memory_mb / VCPU_MB)


def at_share(wall: float, cpu: float, share: float, network_s: float) -> float:
    """A measured step's time on a function with ``share`` of a vCPU: its network wait, then
    its CPU at that share. The wait is the gap between wall and CPU time, but at most the
    model's ``network_s`` for the calls the step makes: on a loaded machine the rest of that
    gap is a thread waiting for a CPU, which the function's share already accounts for (an
    import makes no call: its whole gap is that)."""
    return min(max(wall - cpu, 0.0), network_s) + cpu / share


def warm_network_s(latencies: Latencies) -> float:
    """A warm webhook's calls: one ``SendMessage``."""
    return latencies.of("sqs")


def first_network_s(latencies: Latencies) -> float:
    """A cold environment's first webhook: the secret read, then its ``SendMessage``."""
    return latencies.of("secretsmanager") + latencies.of("sqs")


@dataclass
class ReceiverTimes:
    warm_s: list[float]
    warm_cpu_s: list[float]
    import_s: float  # medians of fresh interpreters
    import_cpu_s: float
    first_s: float
    first_cpu_s: float

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["warm_p50_ms"] = percentile(self.warm_s, 0.5) * 1000
        data["warm_p99_ms"] = percentile(self.warm_s, 0.99) * 1000
        del data["warm_s"], data["warm_cpu_s"]
        return data


def measure_receiver(
    latencies: Latencies, samples: int = 300, cold_runs: int = 5, progress: Progress | None = None
) -> ReceiverTimes:
    from bench.latency_stack import WEBHOOK_SECRET, model_stack

    use_fake_aws()  # before the handler's import: Powertools reads its settings then
    from receiver.handler import lambda_handler

    event = json.loads((ROOT / "events/receiver/update.json").read_text())
    warm: list[float] = []
    warm_cpu: list[float] = []
    with model_stack(10, latencies) as stack:
        ports = stack.receiver_ports()
        for index in range(samples + 1):
            wall, cpu = time.perf_counter(), time.thread_time()
            with quiet():
                response = lambda_handler(event, BenchContext(), ports=ports)
            if index:  # the first reads the secret: a cold environment's, measured below
                warm.append(time.perf_counter() - wall)
                warm_cpu.append(time.thread_time() - cpu)
            assert response["statusCode"] == 202, response
        environment = stack.environment["ReceiverFunction"]
    colds = []
    for run in range(cold_runs):
        if progress is not None:
            progress.step(f"burst: receiver cold start {run + 1}/{cold_runs}")
        colds.append(_cold_start(environment, WEBHOOK_SECRET))
    return ReceiverTimes(
        warm_s=warm,
        warm_cpu_s=warm_cpu,
        import_s=statistics.median(c["import_s"] for c in colds),
        import_cpu_s=statistics.median(c["import_cpu_s"] for c in colds),
        first_s=statistics.median(c["first_s"] for c in colds),
        first_cpu_s=statistics.median(c["first_cpu_s"] for c in colds),
    )


def _cold_start(environment: dict[str, str], secret: str) -> dict[str, float]:
    python = runtime_python()
    lambda_like = lambda_environment("receiver", python=python)
    # The benchmark's own modules come last on the path, after the function and the layer.
    lambda_like["PYTHONPATH"] += os.pathsep + str(ROOT)
    result = subprocess.run(  # noqa: S603 (our own interpreter and module)
        [*lambda_command(python), "-m", "bench.cold_child", secret],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={
            **lambda_like,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            **environment,
        },
    )
    timings: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return timings


# ----- the simulation --------------------------------------------------------------------------


@dataclass
class BurstOutcome:
    webhooks: int
    pattern: str
    timeout_s: float
    cpu_share: float
    runtime_init_s: float
    provisioned: int
    memory_mb: int = 0  # 0: a CPU share given directly
    init_share: float = 0.0  # the init phase's share of a vCPU (0: as cpu_share)
    answered_in_time: int = 0
    late: int = 0  # answered after pg_net gave up: queued all the same, recorded as failed
    throttled_api: int = 0  # 429 from API Gateway's throttle: lost
    throttled_lambda: int = 0  # no environment could start: lost
    cold_starts: int = 0
    peak_concurrency: int = 0
    response_ms: list[float] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.throttled_api + self.throttled_lambda

    @property
    def all_in_time(self) -> bool:
        return self.answered_in_time == self.webhooks

    def p(self, fraction: float) -> float:
        return percentile(self.response_ms, fraction) if self.response_ms else float("nan")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["response_ms"]
        data.update(p50_ms=self.p(0.5), p99_ms=self.p(0.99), max_ms=self.p(1.0), lost=self.lost)
        return data


def simulate(
    times: ReceiverTimes,
    latencies: Latencies,
    *,
    webhooks: int,
    pattern: str = "steady",
    timeout_s: float = 1.0,
    cpu_share: float = 1.0,
    init_share: float | None = None,
    memory_mb: int = 0,
    runtime_init_s: float = 0.0,
    provisioned: int = 0,
    seed: int = 0,
) -> BurstOutcome:
    """Every webhook of a bulk insert, event by event (times in seconds from the commit).
    ``memory_mb``: the function's memory, which sets ``cpu_share``; ``init_share``: the init
    phase's share when it differs (the imports run in it; the first invocation does not)."""
    rng = random.Random(seed)
    if memory_mb:
        cpu_share = share_of(memory_mb)
    init_share = init_share or cpu_share
    outcome = BurstOutcome(
        webhooks,
        pattern,
        timeout_s,
        cpu_share,
        runtime_init_s,
        provisioned,
        memory_mb=memory_mb,
        init_share=init_share,
    )
    leg = latencies.of("webhook")

    warm = [
        at_share(w, c, cpu_share, warm_network_s(latencies))
        for w, c in zip(times.warm_s, times.warm_cpu_s, strict=True)
    ]
    cold = (
        runtime_init_s
        + at_share(times.import_s, times.import_cpu_s, init_share, 0.0)
        + at_share(times.first_s, times.first_cpu_s, cpu_share, first_network_s(latencies))
    )
    if pattern == "steady":
        arrivals = [index / PG_NET_PER_SECOND for index in range(webhooks)]
    else:  # pg_net's rounds: a batch of 200 at once, one round a second
        arrivals = [float(index // PG_NET_BATCH) for index in range(webhooks)]
    free_at: list[float] = [0.0] * provisioned  # environments and when each is next idle
    api_tokens, api_at = API_BURST, 0.0
    scale_tokens, scale_at = float(SCALE_PER_10_S), 0.0
    busy: list[float] = []  # end times of requests in flight (concurrency)
    for sent in arrivals:
        at = sent + leg / 2  # the request reaches API Gateway
        api_tokens = min(API_BURST, api_tokens + (at - api_at) * API_RATE)
        api_at = at
        if api_tokens < 1:
            outcome.throttled_api += 1
            continue
        api_tokens -= 1
        busy = [end for end in busy if end > at]
        idle = [i for i, when in enumerate(free_at) if when <= at]
        if idle:
            environment = idle[0]
            service = rng.choice(warm)
        else:
            scale_tokens = min(SCALE_PER_10_S, scale_tokens + (at - scale_at) * SCALE_PER_10_S / 10)
            scale_at = at
            if scale_tokens < 1 or len(busy) >= ACCOUNT_CONCURRENCY:
                outcome.throttled_lambda += 1
                continue
            scale_tokens -= 1
            free_at.append(at)
            environment = len(free_at) - 1
            service = cold
            outcome.cold_starts += 1
        done = at + service
        free_at[environment] = done
        busy.append(done)
        outcome.peak_concurrency = max(outcome.peak_concurrency, len(busy))
        response = done + leg / 2 - sent
        if response <= timeout_s:
            outcome.answered_in_time += 1
            outcome.response_ms.append(response * 1000)
        else:
            outcome.late += 1
            outcome.response_ms.append(response * 1000)
    return outcome


def largest_runtime_init(times: ReceiverTimes, latencies: Latencies, **options: Any) -> float:
    """The largest managed-runtime start (s, to the 10 ms) that still answers every webhook
    in time with p99 under 1 s; 0 if none does."""
    low, high = 0.0, 5.0
    if not _passes(simulate(times, latencies, runtime_init_s=0.0, **options)):
        return 0.0
    while high - low > 0.01:
        middle = (low + high) / 2
        if _passes(simulate(times, latencies, runtime_init_s=middle, **options)):
            low = middle
        else:
            high = middle
    return low


def _passes(outcome: BurstOutcome) -> bool:
    return outcome.all_in_time and outcome.p(0.99) < 1000


def provisioned_needed(times: ReceiverTimes, latencies: Latencies, **options: Any) -> int | None:
    """The fewest provisioned environments with which the burst passes (None: none does)."""
    for count in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000):
        if _passes(simulate(times, latencies, provisioned=count, **options)):
            return count
    return None


def chosen_memory(times: ReceiverTimes, latencies: Latencies) -> int | None:
    """The smallest of ``MEMORY_SIZES`` at which every case (1,000 and 10,000 webhooks, both
    of pg_net's patterns, SQL's 1 s timeout, the init phase at the function's share) still
    answers in time with ``RUNTIME_START_S`` left for the runtime's own start."""
    for memory_mb in MEMORY_SIZES:
        if all(
            largest_runtime_init(
                times,
                latencies,
                webhooks=webhooks,
                pattern=pattern,
                timeout_s=1.0,
                memory_mb=memory_mb,
            )
            >= RUNTIME_START_S
            for webhooks in (1_000, 10_000)
            for pattern in ("steady", "batches")
        ):
            return memory_mb
    return None


def provisioned_monthly_usd(count: int, memory_mb: int) -> float:
    return count * memory_mb / 1024 * SECONDS_PER_MONTH * PROVISIONED_GB_S_USD


def on_demand_usd_per_million(
    times: ReceiverTimes, memory_mb: int, latencies: Latencies | None = None
) -> float:
    """What a million warm webhooks cost at this memory: requests and duration (billed by
    the millisecond, the median warm invocation with its CPU at the memory's share)."""
    share = share_of(memory_mb)
    network_s = warm_network_s(latencies or Latencies())
    warm = statistics.median(
        at_share(wall, cpu, share, network_s)
        for wall, cpu in zip(times.warm_s, times.warm_cpu_s, strict=True)
    )
    billed_s = max(0.001, round(warm, 3))
    return 1_000_000 * (REQUEST_USD + billed_s * memory_mb / 1024 * ON_DEMAND_GB_S_USD)


def snapstart_monthly_usd(memory_mb: int, restores: int) -> float:
    """SnapStart's own charges for one published version: its cache all month, and
    ``restores`` new execution environments restored from it."""
    gb = memory_mb / 1024
    return gb * SECONDS_PER_MONTH * SNAPSTART_CACHE_GB_S_USD + restores * gb * (
        SNAPSTART_RESTORE_GB_USD
    )
