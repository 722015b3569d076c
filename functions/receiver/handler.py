"""POST /revalidate: authenticate the Supabase webhook, queue it durably, answer 202.

This is the "respond first" half of waitUntil: the work happens in the consumer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from waituntil.adapters.aws import secrets_client_fast, sqs_client
from waituntil.adapters.queue import QueuePublisher
from waituntil.adapters.secrets import SecretReader
from waituntil.errors import DependencyUnavailable, RequestRefused
from waituntil.observability import logger, metrics
from waituntil.settings import ReceiverSettings, receiver_settings
from waituntil.webhook import (
    build_change,
    check_bearer,
    check_single_headers,
    fit_message,
    parse_payload,
    request_body,
)

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

app = APIGatewayRestResolver()
OTHER_METHODS = ["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@dataclass(frozen=True)
class Ports:
    settings: ReceiverSettings
    secrets: SecretReader
    queue: QueuePublisher


def build_ports(
    settings: ReceiverSettings, *, secrets_client: SecretsManagerClient, sqs: SQSClient
) -> Ports:
    return Ports(
        settings=settings,
        secrets=SecretReader(secrets_client, settings.secret_max_age_s),
        queue=QueuePublisher(settings.queue_url, sqs),
    )


@cache
def default_ports() -> Ports:
    return build_ports(receiver_settings(), secrets_client=secrets_client_fast(), sqs=sqs_client())


@app.post("/revalidate")
def revalidate() -> Response[dict[str, Any]]:
    ports: Ports = app.context.get("ports") or default_ports()
    event = app.current_event
    check_single_headers(event.raw_event.get("multiValueHeaders"))
    # Current and, mid-rotation, pending secret: see README "Rotate the webhook secret".
    check_bearer(
        event.headers.get("authorization"),
        ports.secrets.accepted_versions(ports.settings.webhook_secret_name),
    )
    payload = parse_payload(
        request_body(event.body, event.is_base64_encoded),
        event.headers.get("content-type"),
        ports.settings.max_body_bytes,
    )
    change = build_change(
        payload,
        cached_tables=ports.settings.cached_tables,
        schema_name=ports.settings.schema_name,
        primary_keys=ports.settings.primary_keys,
        received_at=datetime.now(UTC),
        correlation_id=event.request_context.request_id,
    )
    message, queued = fit_message(change, ports.settings.max_message_bytes)
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
    return Response(
        status_code=HTTPStatus.ACCEPTED,
        content_type=content_types.APPLICATION_JSON,
        body={"received": True, "id": message_id},
    )


@app.route("/revalidate", method=OTHER_METHODS)
def revalidate_wrong_method() -> Response[dict[str, Any]]:
    return _error(HTTPStatus.METHOD_NOT_ALLOWED, "use POST", headers={"Allow": "POST"})


@app.not_found
def not_found(_: Exception) -> Response[dict[str, Any]]:
    return _error(HTTPStatus.NOT_FOUND, "no such route; webhooks go to POST /revalidate")


@app.exception_handler(RequestRefused)
def request_refused(error: RequestRefused) -> Response[dict[str, Any]]:
    logger.info("webhook refused", extra={"status": error.status_code, "reason": str(error)})
    metrics.add_metric(name="WebhooksRefused", unit=MetricUnit.Count, value=1)
    return _error(error.status_code, str(error))


@app.exception_handler(DependencyUnavailable)
def dependency_unavailable(error: DependencyUnavailable) -> Response[dict[str, Any]]:
    # Not a 2xx: nothing was queued, so Supabase must see a failure (it logs it for 6 hours).
    logger.exception("dependency unavailable; change not queued")
    metrics.add_metric(name="QueueFailures", unit=MetricUnit.Count, value=1)
    return _error(HTTPStatus.SERVICE_UNAVAILABLE, str(error), headers={"Retry-After": "1"})


def _error(
    status: int, message: str, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"received": False, "error": HTTPStatus(status).phrase, "message": message},
        headers=headers,
    )


# No Powertools Tracer here: it loads the X-Ray SDK, which took the handler's import from
# 1.7x to 2.5x `import boto3` (README, "Cold start"). Active tracing still records this
# function's invocation, and botocore passes the trace id on to SQS, so the consumer's trace
# continues the webhook's; only the subsegments of the SQS and Secrets Manager calls are missing.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, ports: Ports | None = None
) -> dict[str, Any]:
    app.append_context(ports=ports)
    return app.resolve(event, context)
