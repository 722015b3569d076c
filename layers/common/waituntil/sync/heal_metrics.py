"""The reconciler's metrics (docs/OPERATING.md, "Metrics"; the dashboard's Heal row).

Each is recorded twice: once with the ``service`` dimension alone (what the alarms watch, one
series whatever the tables), once with ``table`` as well (what the dashboard draws per table).

- ``RowsHealed`` (Count): row items the reconciler changed: each one a change whose webhook
  never reached the cache. Zero is recorded too, so "nothing lost" shows as 0, not as no data.
- ``ReconcileFailures`` (Count): cycles that failed (a count, a read or a write); the next cycle
  starts again, and the reason is in the log line "reconcile failed".
- ``ReconcileAge`` (Seconds): at each cycle, how long ago the table's last successful cycle
  ended; it grows while cycles fail.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from waituntil.core.observability import metrics


def _record(name: str, unit: MetricUnit, value: float, table: str) -> None:
    metrics.add_metric(name=name, unit=unit, value=value)
    service = metrics.service or "consumer"
    with single_metric(
        name=name, unit=unit, value=value, default_dimensions={"service": service}
    ) as metric:
        metric.add_dimension(name="table", value=table)


def record_healed(table: str, rows: int) -> None:
    _record("RowsHealed", MetricUnit.Count, rows, table)


def record_failure(table: str) -> None:
    _record("ReconcileFailures", MetricUnit.Count, 1, table)


def record_age(table: str, seconds: float) -> None:
    _record("ReconcileAge", MetricUnit.Seconds, round(seconds, 1), table)
