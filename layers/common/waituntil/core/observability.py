"""Logger and metrics, created once per container and configured by POWERTOOLS_* env vars;
the tracer, created on first use: the consumer and the reader trace, while the receiver, whose
cold start Supabase's webhook timeout waits on, does not import X-Ray at all.

The tracer records AWS calls (botocore) and nothing else unless a function asks
(``tracer.patch``: the consumer adds httpx, its Supabase reads). Powertools' default is X-Ray's
``patch_all``, which on Lambda imports every library X-Ray can trace that happens to be
installed: the reader imported httpx (installed for the consumer) that way, about 30 ms of
its cold start for calls it never makes (docs/SCALE.md, "Cold start").
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

TRACED_LIBRARIES = ("botocore",)

logger = Logger()
metrics = Metrics()

# Most reads (a 200 from the cache) add no metric: only 304s and errors do. Powertools warns on
# every such invocation that it had nothing to publish, which is noise in each reader log line.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


def __getattr__(name: str) -> Tracer:
    # PEP 562: called only for names the module does not define yet.
    if name != "tracer":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from aws_lambda_powertools import Tracer

    tracer = Tracer(patch_modules=TRACED_LIBRARIES)
    globals()["tracer"] = tracer  # created once: later imports find it directly
    return tracer
