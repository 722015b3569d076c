"""Logger, metrics and tracer: created once per container, configured by POWERTOOLS_* env vars.

The tracer is created on first use (``from waituntil.observability import tracer``), not when
this module is imported: creating it loads the X-Ray SDK (about as long as ``import boto3``),
and the receiver, whose cold start Supabase waits on, does without it (README, "Cold start").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

logger = Logger()
metrics = Metrics()


def __getattr__(name: str) -> Tracer:
    # PEP 562: called only for names the module does not define yet.
    if name != "tracer":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from aws_lambda_powertools import Tracer

    tracer = Tracer()
    globals()["tracer"] = tracer  # created once: later imports find it directly
    return tracer
