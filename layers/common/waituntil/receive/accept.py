"""The receiver's use case: one webhook request in, one queued change out, or a typed error.

Written against two ports (the webhook secrets, the change queue), like the consumer's and the
reader's flows, so it is tested on fakes; ``functions/receiver/handler.py`` only turns the API
Gateway event into a ``WebhookRequest``, calls ``accept`` and maps errors to answers. The rules
themselves (what a valid request is, how a change fits a message) are ``waituntil.receive.webhook``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from waituntil.core.contracts import Change, ChangeQueue
from waituntil.core.observability import logger, metrics
from waituntil.core.settings import ReceiverSettings
from waituntil.receive.webhook import (
    build_change,
    check_bearer,
    check_single_headers,
    fit_message,
    parse_payload,
    request_body,
)


class WebhookSecrets(Protocol):
    """The secrets a webhook's bearer token may match (``adapters/secrets.SecretReader``)."""

    def accepted_versions(self, name: str) -> Iterable[str]:
        """Current and, mid-rotation, pending; iterated lazily (see ``check_bearer``)."""
        ...


@dataclass(frozen=True)
class ReceiverPorts:
    settings: ReceiverSettings
    secrets: WebhookSecrets
    queue: ChangeQueue
    clock: Callable[[], datetime] = field(default=partial(datetime.now, UTC))


@dataclass(frozen=True)
class WebhookRequest:
    """The parts of a POST /revalidate request the receiver reads."""

    body: str | None
    is_base64_encoded: bool | None
    authorization: str | None
    content_type: str | None
    # Every header with all its values: a repeated Authorization is refused, not guessed.
    multi_value_headers: Mapping[str, Any] | None
    request_id: str  # becomes the change's correlation id


@dataclass(frozen=True)
class Accepted:
    message_id: str
    change: Change  # as queued: without its bodies if they could not travel


def accept(request: WebhookRequest, ports: ReceiverPorts) -> Accepted:
    """Authenticate, validate and queue one webhook; the change is stored in SQS on return.

    Raises a ``RequestRefused`` for the sender's mistakes (nothing queued) and
    ``DependencyUnavailable`` when Secrets Manager or SQS fails (nothing queued either).
    """
    settings = ports.settings
    check_single_headers(request.multi_value_headers)
    # Current and, mid-rotation, pending secret: see docs/OPERATING.md, "Rotating secrets".
    check_bearer(
        request.authorization, ports.secrets.accepted_versions(settings.webhook_secret_name)
    )
    payload = parse_payload(
        request_body(request.body, request.is_base64_encoded),
        request.content_type,
        settings.max_body_bytes,
    )
    change = build_change(
        payload,
        cached_tables=settings.cached_tables,
        schema_name=settings.schema_name,
        primary_keys=settings.primary_keys,
        received_at=ports.clock(),
        correlation_id=request.request_id,
    )
    message, queued = fit_message(change, settings.max_message_bytes)
    message_id = ports.queue.publish(message)
    metrics.add_metric(name="ChangesQueued", unit=MetricUnit.Count, value=1)
    if queued.bodies_dropped:
        metrics.add_metric(name="RowBodiesDropped", unit=MetricUnit.Count, value=1)
    logger.info(
        "change queued",
        extra={
            "message_id": message_id,
            "change_type": queued.type,
            "table": queued.table,
            "key": queued.key,
            "bodies_dropped": queued.bodies_dropped,
        },
    )
    return Accepted(message_id=message_id, change=queued)
