"""Which failed records come back soon, and how soon: THE mapping of typed errors to
"retry soon" (one place, as for every other error mapping).

A failed record normally comes back after the queue's visibility timeout (660 s), which is
sized for a consumer that died mid-batch, not for a record that merely lost a race. A record
that failed for a reason a few seconds cure (other consumers kept switching the list's head;
a node of the version it read expired under it) is made visible again after a short,
jittered delay instead, growing with its receive count. Everything else keeps the full
timeout: a Supabase or DynamoDB outage retried every few seconds would spend the record's
``MaxReceiveCount`` in a minute and push a good change to the dead-letter queue.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from waituntil.core.errors import ListContended, ListNodeMissing

# Failures that say "another consumer was busy here a moment ago", not "a service is down".
# Not ListFilling/ListRebuilding (a fill takes minutes: its records would burn their receives)
# nor any DependencyUnavailable other than contention.
RETRY_SOON: tuple[type[Exception], ...] = (ListContended, ListNodeMissing)

# Delay before the n-th retry: BASE * GROWTH**(n-1) s, taken between half and all of it
# (jitter: records of one burst must not come back together and contend again). 1-2 s after
# the first receive, then 5-10, 25-50, 125-250: with the template's MaxReceiveCount of 5 a
# record contended at every receive reaches the dead-letter queue after 2.5 minutes at the
# earliest, not seconds. From CAP_S on, the queue's own timeout (660 s) is no longer slower
# than the delay: the record is left to it.
BASE_S = 2
GROWTH = 5
CAP_S = 600


def retry_soon(error: BaseException) -> bool:
    return isinstance(error, RETRY_SOON)


def retry_delay_s(
    error: BaseException, receive_count: int, uniform: Callable[[float, float], float] | None = None
) -> int | None:
    """Seconds until the record should be received again, or None: the queue's own
    visibility timeout applies."""
    if not retry_soon(error):
        return None
    ceiling: float = BASE_S * GROWTH ** max(receive_count - 1, 0)
    if ceiling >= CAP_S:
        return None
    draw: Callable[[float, float], float] = uniform or random.uniform  # jitter, not a secret
    return max(1, math.ceil(draw(0.5, 1.0) * ceiling))
