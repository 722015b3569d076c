"""Pipeline-level metrics the template's dashboard and alarms read (docs/OPERATING.md, "Metrics").

- ``ChangeLatency`` (Milliseconds): from the receiver accepting a webhook (``received_at``) to
  the consumer having written what it implies; the "webhook to cache" line of the dashboard.
- ``ResyncDriftRows`` (Count): rows a RESYNC had to write or tombstone because the cache did not
  match Supabase; ``ResyncDriftAlarm`` fires on any. Zero is recorded too, so the alarm can tell
  "no drift" from "no resync ran".

The consumer calls ``record_synced`` once per table it synced.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from aws_lambda_powertools.metrics import MetricUnit

from waituntil.core.contracts import Change
from waituntil.core.observability import metrics


def change_latencies_ms(changes: Iterable[Change], synced_at: datetime) -> list[float]:
    """Webhook-to-cache time of every row change; RESYNC messages carry no webhook."""
    return [
        max((synced_at - change.received_at).total_seconds() * 1000, 0.0)
        for change in changes
        if change.type != "RESYNC"
    ]


def record_synced(changes: Iterable[Change], synced_at: datetime, rows_fixed: int) -> None:
    """Record both metrics for one table's synced batch (``rows_fixed``: items written or
    tombstoned beyond the rows the batch's own changes named)."""
    changes = list(changes)
    for latency in change_latencies_ms(changes, synced_at):
        metrics.add_metric(name="ChangeLatency", unit=MetricUnit.Milliseconds, value=latency)
    if any(change.type == "RESYNC" for change in changes):
        metrics.add_metric(name="ResyncDriftRows", unit=MetricUnit.Count, value=rows_fixed)
