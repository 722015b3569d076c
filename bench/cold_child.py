"""The receiver's cold start, measured in a fresh interpreter: ``python -m bench.cold_child``.

Run with the receiver's environment as on Lambda (the parent, ``bench.burst``, gives it:
``bench.lambda_site``): imports
``receiver.handler`` first (timed, wall and CPU), then answers two webhooks through the
handler's own ``default_ports`` (clients made as on Lambda, the secret read), timed: the
first invocation of a new environment and a warm one. SQS and Secrets Manager are answered
in process (``bench.memory_sqs``, ``bench.memory_secrets``) under the latency model, so that
nothing (moto included) is imported before the handler's own import is measured. Prints one
JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def main() -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    import receiver.handler

    import_s, import_cpu_s = time.perf_counter() - wall, time.process_time() - cpu

    import os

    from bench.common import ROOT, BenchContext, quiet
    from bench.latency import CallTrace, Latencies, instrument_session
    from bench.memory_secrets import MemorySecrets
    from bench.memory_sqs import MemorySQS
    from waituntil.adapters.aws import aws_session

    botocore_session: Any = aws_session()  # default_ports' clients copy its hooks
    trace = CallTrace()
    instrument_session(botocore_session, Latencies(), trace)
    botocore_session.register("before-send.sqs", MemorySQS().on_send)
    secrets = MemorySecrets({os.environ["WEBHOOK_SECRET_NAME"]: sys.argv[1]})
    botocore_session.register("before-send.secrets-manager", secrets.on_send)

    event = json.loads((ROOT / "events/receiver/update.json").read_text())
    timings = {"import_s": import_s, "import_cpu_s": import_cpu_s}
    for name in ("first", "warm"):
        wall, cpu = time.perf_counter(), time.process_time()
        with quiet():
            response = receiver.handler.lambda_handler(event, BenchContext())
        timings[f"{name}_s"] = time.perf_counter() - wall
        timings[f"{name}_cpu_s"] = time.process_time() - cpu
        if response["statusCode"] != 202:
            raise SystemExit(f"the receiver answered {response['statusCode']}")
    timings["calls"] = trace.total()
    print(json.dumps(timings))


if __name__ == "__main__":
    main()
