"""Logger, metrics and tracer: created once per container, configured by POWERTOOLS_* env vars."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
metrics = Metrics()
tracer = Tracer()
