"""EventBridge's scheduled rules, locally: each ``AWS::Events::Rule`` of the template whose
condition holds and whose schedule is ``rate(N unit)`` sends its target queue the message its
``InputTransformer`` builds (``<time>`` and ``<id>`` filled as EventBridge fills them), every
period, the first one period after the stack starts (a new rule's first run is not immediate
either).

So ``make dev`` reconciles every minute and resyncs every day as a deployment does, from the
same parameters. Local-only deviation: ``cron(...)`` schedules are not run (a warning says so).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from local.template import Resolver, resources_of_type

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("local.scheduler")

_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86_400}


@dataclass(frozen=True)
class ScheduledMessage:
    rule_id: str
    period_s: float
    queue_url: str
    input_template: str
    input_paths: dict[str, str]

    def body(self, now: datetime, event_id: str) -> str:
        """The message EventBridge sends: the input template with its paths filled."""
        event = {"time": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "id": event_id}
        text = self.input_template
        for name, path in self.input_paths.items():
            text = text.replace(f"<{name}>", str(event[path.removeprefix("$.")]))
        return text


def period_s(expression: str) -> float | None:
    """Seconds between runs of ``rate(N unit)``; None for anything else (``cron``)."""
    match = _RATE.fullmatch(expression.strip())
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_S[match.group(2).removesuffix("s")]


def scheduled_messages(resolver: Resolver, queue_urls: dict[str, str]) -> list[ScheduledMessage]:
    """The template's scheduled rules that target one of the stack's queues (by logical id)."""
    found: list[ScheduledMessage] = []
    for rule_id, rule in resources_of_type(resolver.template, "AWS::Events::Rule").items():
        condition = rule.get("Condition")
        if condition is not None and not resolver.condition(condition):
            continue
        properties = rule["Properties"]
        expression = str(resolver.resolve(properties["ScheduleExpression"]))
        period = period_s(expression)
        if period is None:
            log.warning("%s: schedule %r is not run locally (rate(...) only)", rule_id, expression)
            continue
        for target in properties["Targets"]:
            queue_id = _queue_of(target["Arn"])
            transformer: dict[str, Any] = target["InputTransformer"]
            found.append(
                ScheduledMessage(
                    rule_id=rule_id,
                    period_s=period,
                    queue_url=queue_urls[queue_id],
                    input_template=str(resolver.resolve(transformer["InputTemplate"])),
                    input_paths=dict(transformer["InputPathsMap"]),
                )
            )
    return found


def _queue_of(arn: Any) -> str:
    # Targets name a queue of the stack as {"Fn::GetAtt": [LogicalId, "Arn"]}.
    logical_id, attribute = arn["Fn::GetAtt"]
    assert attribute == "Arn", arn
    return str(logical_id)


class Scheduler:
    """One thread running every scheduled message at its period until ``stop``."""

    def __init__(self, messages: list[ScheduledMessage], sqs: SQSClient) -> None:
        self.messages = messages
        self._sqs = sqs
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self.sent: list[tuple[str, str]] = []  # (rule, message id)

    def start(self) -> None:
        if self.messages:
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        due = {message.rule_id: time.monotonic() + message.period_s for message in self.messages}
        while not self._stopping.is_set():
            for message in self.messages:
                if time.monotonic() >= due[message.rule_id]:
                    due[message.rule_id] += message.period_s
                    self.send(message)
            self._stopping.wait(max(min(due.values()) - time.monotonic(), 0.05))

    def send(self, message: ScheduledMessage) -> None:
        """Send one run of ``message`` now (what the schedule does at each period)."""
        body = message.body(datetime.now(UTC), str(uuid.uuid4()))
        try:
            sent = self._sqs.send_message(QueueUrl=message.queue_url, MessageBody=body)
        except Exception:  # a stopping moto: the next period tries again
            log.exception("%s: could not send the scheduled message", message.rule_id)
            return
        self.sent.append((message.rule_id, sent["MessageId"]))
        log.info("%s: scheduled message sent", message.rule_id)
