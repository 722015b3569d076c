"""The local stand-in for EventBridge's scheduled rules (``local.scheduler``): the template's
rules, at their periods, sending the messages their input transformers build."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from local.scheduler import ScheduledMessage, Scheduler, period_s, scheduled_messages
from local.template import Resolver, load_template
from waituntil.core.contracts import Change


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(1 day)", 86_400),
        ("cron(0 12 * * ? *)", None),
        ("none", None),
    ],
)
def test_a_rate_is_a_period_and_anything_else_is_not_run(
    expression: str, seconds: int | None
) -> None:
    assert period_s(expression) == seconds


def test_the_templates_schedules_send_a_reconcile_every_minute_and_a_resync_every_day() -> None:
    # Given the template with its default parameters
    resolver = Resolver(load_template())
    # When its scheduled rules are read
    messages = scheduled_messages(resolver, {"ChangeQueue": "http://queue"})
    # Then there are two, at the default periods, each sending a valid change of every table
    periods = {message.rule_id: message.period_s for message in messages}
    assert periods == {"ReconcileRule": 60, "ResyncRule": 86_400}
    for message in messages:
        change = Change.from_message(message.body(datetime.now(UTC), "id-1"))
        assert change.table == "*" and change.key is None
        assert (
            change.type == {"ReconcileRule": "RECONCILE", "ResyncRule": "RESYNC"}[message.rule_id]
        )
        assert change.correlation_id.endswith("id-1")


def test_a_schedule_turned_off_is_not_run() -> None:
    resolver = Resolver(load_template(), parameters={"ReconcileSchedule": "none"})
    messages = scheduled_messages(resolver, {"ChangeQueue": "http://queue"})
    assert [message.rule_id for message in messages] == ["ResyncRule"]


class _Queue:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def send_message(self, QueueUrl: str, MessageBody: str) -> dict[str, Any]:  # noqa: N803
        with self.lock:
            self.sent.append((QueueUrl, MessageBody))
            return {"MessageId": f"m{len(self.sent)}"}


def test_the_scheduler_sends_at_each_period_and_stops() -> None:
    # Given a rule every 50 ms (real rules are minutes; the loop is the same)
    message = ScheduledMessage("Rule", 0.05, "http://queue", '{"at": "<time>"}', {"time": "$.time"})
    queue = _Queue()
    scheduler = Scheduler([message], queue)  # type: ignore[arg-type]
    # When it runs for about 0.3 s, then stops
    scheduler.start()
    time.sleep(0.3)
    scheduler.stop()
    sent = len(queue.sent)
    time.sleep(0.15)
    # Then it sent a few, none in the first period, none after it stopped
    assert 3 <= sent <= 7
    assert len(queue.sent) == sent
    assert all(url == "http://queue" and '"at": "20' in body for url, body in queue.sent)
