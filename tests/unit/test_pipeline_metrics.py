"""ChangeLatency and ResyncDriftRows, as the dashboard and ResyncDriftAlarm read them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from waituntil.core.contracts import Change
from waituntil.core.observability import metrics
from waituntil.sync.pipeline_metrics import change_latencies_ms, record_synced

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _change(kind: str, received_at: datetime) -> Change:
    return Change(
        type=kind,  # type: ignore[arg-type]
        schema_name="public",
        table="articles" if kind != "RESYNC" else "*",
        key=None if kind == "RESYNC" else 1,
        received_at=received_at,
        correlation_id="c",
    )


@pytest.fixture
def emitted() -> Iterator[None]:
    """The metrics this test records, and only those."""
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def _values(name: str, unit: str) -> list[float]:
    entry = metrics.metric_set.get(name)
    if entry is None:
        return []
    assert entry["Unit"] == unit
    return list(entry["Value"])


def test_latency_is_measured_from_the_webhook_for_row_changes_only() -> None:
    # Given two row changes received 1.5 s and 250 ms before the sync, and a resync
    changes = [
        _change("INSERT", T0 - timedelta(milliseconds=1500)),
        _change("DELETE", T0 - timedelta(milliseconds=250)),
        _change("RESYNC", T0 - timedelta(hours=1)),
    ]
    # When their latencies are computed
    latencies = change_latencies_ms(changes, T0)
    # Then only the row changes count, in milliseconds
    assert latencies == [1500.0, 250.0]


def test_a_resync_records_its_drift_even_when_it_is_zero(emitted: None) -> None:
    # Given a resync batch that fixed nothing, then one that fixed 3 rows
    # When each is recorded
    record_synced([_change("RESYNC", T0)], T0, rows_fixed=0)
    record_synced([_change("RESYNC", T0)], T0, rows_fixed=3)
    # Then both values are emitted (zero tells "no drift" from "no resync"), and no latency
    assert _values("ResyncDriftRows", "Count") == [0.0, 3.0]
    assert _values("ChangeLatency", "Milliseconds") == []


def test_a_batch_of_row_changes_records_latency_and_no_drift(emitted: None) -> None:
    # Given a batch of one row change received 2 s before the sync
    # When it is recorded
    record_synced([_change("UPDATE", T0 - timedelta(seconds=2))], T0, rows_fixed=5)
    # Then its latency is emitted and no drift (that is only a resync's finding)
    assert _values("ChangeLatency", "Milliseconds") == [2000.0]
    assert _values("ResyncDriftRows", "Count") == []
