"""One measured first fill under the latency model, in a process of its own.

``python -m bench.fill_child ROWS WORKERS BACKEND LATENCY`` (LATENCY: ``model`` or ``none``)
prints one JSON line: seconds, invocations, calls per service, DynamoDB's bill (write units,
requests), the bytes of row data filled, CPU seconds (this process; of which the memory
DynamoDB's), and peak memory before and after. A process of its own, as ``bench.scale_child``
is, so that its peak memory is the fill's: the services it talks to keep their data in a
SQLite file (DynamoDB) or make rows from keys (Supabase), not in this process's heap.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

from bench.latency import NO_LATENCY, CallTrace, Latencies


def vm_hwm_mb() -> float:
    """Peak resident memory so far (VmHWM; see bench.scale_child for why not ru_maxrss)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_queue_delay_s() -> float:
    """Seconds this process's threads spent runnable but waiting for a CPU (schedstat's
    run_delay, summed over the live threads): what a shared machine adds to a fill."""
    import os

    total = 0
    tasks = "/proc/self/task"
    for task in os.listdir(tasks) if os.path.isdir(tasks) else []:
        try:
            with open(f"{tasks}/{task}/schedstat") as stats:
                total += int(stats.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def main(argv: list[str]) -> None:
    from bench.latency_consumer import drain_fill
    from bench.latency_stack import model_stack

    rows, workers, backend, latency = int(argv[0]), int(argv[1]), argv[2], argv[3]
    latencies = Latencies.parse(argv[4]) if len(argv) > 4 else Latencies()
    model = latencies if latency == "model" else NO_LATENCY
    trace = CallTrace(keep_calls=False)  # counts only: constant memory at any size
    with model_stack(rows, model, backend=backend, trace=trace) as stack:
        ports = stack.consumer_ports(workers=workers)
        start_mb = vm_hwm_mb()
        delay = run_queue_delay_s()
        load = os.getloadavg()[0]
        cpu = time.process_time()
        began = time.perf_counter()

        def report(invocations: int) -> None:
            print(
                f"  fill {rows:,} rows, {workers} writers: invocation {invocations}, "
                f"{time.perf_counter() - began:.0f} s",
                file=sys.stderr,
                flush=True,
            )

        result = drain_fill(stack, ports, on_invocation=report)
        cpu_s = time.process_time() - cpu
        run_delay_s = run_queue_delay_s() - delay
        load = (load + os.getloadavg()[0]) / 2
        peak_mb = vm_hwm_mb()
        row_bytes = sum(len(stack.table.row_text(key).encode()) for key in range(1, rows + 1))
        bill = stack.dynamodb.bill.as_dict() if stack.dynamodb is not None else {}
        print(
            json.dumps(
                {
                    "rows": rows,
                    "workers": workers,
                    "backend": backend,
                    "latency": latency,
                    "seconds": result.seconds,
                    "invocations": result.invocations,
                    "calls": trace.by_service(),
                    "operations": trace.by_operation(),
                    "supabase_requests": stack.table.requests,
                    "row_bytes": row_bytes,
                    "write_units": bill.get("write_units"),
                    "write_units_by_kind": bill.get("write_units_by_kind"),
                    "dynamodb_requests": bill.get("requests"),
                    "cpu_s": cpu_s,
                    "run_queue_delay_s": run_delay_s,
                    "load_average": load,
                    "service_cpu_s": bill.get("service_cpu_s", 0.0),
                    "shim_cpu_s": trace.shim_cpu_s,
                    "waited_s": trace.waited_s,
                    "rss_start_mb": start_mb,
                    "rss_peak_mb": peak_mb,
                }
            )
        )


if __name__ == "__main__":
    main(sys.argv[1:])
