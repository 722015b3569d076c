"""POST /revalidate: authenticate the Supabase webhook, queue it durably, answer 202.

This is the "respond first" half of waitUntil: the work happens in the consumer. The use case
is ``waituntil.receive.accept.accept()``; this module wires its ports, routes, and maps errors
to answers.
"""

from __future__ import annotations

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
from waituntil.core.errors import DependencyUnavailable, RequestRefused
from waituntil.core.observability import logger, metrics
from waituntil.core.settings import ReceiverSettings, receiver_settings
from waituntil.receive.accept import ReceiverPorts, WebhookRequest, accept

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

app = APIGatewayRestResolver()
OTHER_METHODS = ["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def build_ports(
    settings: ReceiverSettings, *, secrets_client: SecretsManagerClient, sqs: SQSClient
) -> ReceiverPorts:
    return ReceiverPorts(
        settings=settings,
        secrets=SecretReader(secrets_client, settings.secret_max_age_s),
        queue=QueuePublisher(settings.queue_url, sqs),
    )


@cache
def default_ports() -> ReceiverPorts:
    return build_ports(receiver_settings(), secrets_client=secrets_client_fast(), sqs=sqs_client())


@app.post("/revalidate")
def revalidate() -> Response[dict[str, Any]]:
    ports: ReceiverPorts = app.context.get("ports") or default_ports()
    event = app.current_event
    accepted = accept(
        WebhookRequest(
            body=event.body,
            is_base64_encoded=event.is_base64_encoded,
            authorization=event.headers.get("authorization"),
            content_type=event.headers.get("content-type"),
            multi_value_headers=event.raw_event.get("multiValueHeaders"),
            request_id=event.request_context.request_id,
        ),
        ports,
    )
    return Response(
        status_code=HTTPStatus.ACCEPTED,
        content_type=content_types.APPLICATION_JSON,
        body={"received": True, "id": accepted.message_id},
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
# 1.7x to 2.5x `import boto3` (docs/SCALE.md, "Cold start"). Active tracing still records this
# function's invocation, and botocore passes the trace id on to SQS, so the consumer's trace
# continues the webhook's; only the subsegments of the SQS and Secrets Manager calls are missing.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, ports: ReceiverPorts | None = None
) -> dict[str, Any]:
    app.append_context(ports=ports)
    return app.resolve(event, context)
