"""Logger, metrics and tracer: created once per container, configured by POWERTOOLS_* env vars."""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
metrics = Metrics()
tracer = Tracer()

# Most reads (a 200 from the cache) add no metric: only 304s and errors do. Powertools warns on
# every such invocation that it had nothing to publish, which is noise in each reader log line.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
