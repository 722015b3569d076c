"""POST /revalidate: authenticate the Supabase webhook, queue it durably, answer 202.

This is the "respond first" half of waitUntil: the work happens in the consumer. The use case
is ``waituntil.receive.accept.accept()``; this module wires its ports, routes, and maps errors
to answers.

The routing is written out here instead of using Powertools' ``APIGatewayRestResolver`` (the
reader's is too): API Gateway sends this function one resource, ``/revalidate``, so there is
one route and one answer per error type, and importing Powertools' event handler (every
resolver it has, AppSync's asyncio included) was about 30 ms of the receiver's cold start, a
sixth of it, which pg_net's 1 s webhook timeout waits on (docs/SCALE.md, "Cold start"). The
answers are the proxy responses the resolver gave: a compact JSON body, ``multiValueHeaders``.
"""

from __future__ import annotations

import json
from functools import cache
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

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

ROUTE = "/revalidate"


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


def revalidate(event: dict[str, Any], ports: ReceiverPorts) -> dict[str, Any]:
    request_context = event.get("requestContext") or {}
    accepted = accept(
        WebhookRequest(
            body=event.get("body"),
            is_base64_encoded=event.get("isBase64Encoded"),
            authorization=_header(event, "authorization"),
            content_type=_header(event, "content-type"),
            multi_value_headers=event.get("multiValueHeaders"),
            request_id=str(request_context.get("requestId", "")),
        ),
        ports,
    )
    return _answer(HTTPStatus.ACCEPTED, {"received": True, "id": accepted.message_id})


def route(event: dict[str, Any], ports: ReceiverPorts | None) -> dict[str, Any]:
    """The answer to one API Gateway (REST, proxy) event; errors mapped to statuses here."""
    if event.get("path") != ROUTE:
        return _error(HTTPStatus.NOT_FOUND, "no such route; webhooks go to POST /revalidate")
    if str(event.get("httpMethod", "")).upper() != "POST":
        return _error(HTTPStatus.METHOD_NOT_ALLOWED, "use POST", headers={"Allow": "POST"})
    try:
        return revalidate(event, ports or default_ports())
    except RequestRefused as error:
        logger.info("webhook refused", extra={"status": error.status_code, "reason": str(error)})
        metrics.add_metric(name="WebhooksRefused", unit=MetricUnit.Count, value=1)
        return _error(error.status_code, str(error))
    except DependencyUnavailable as error:
        # Not a 2xx: nothing was queued, so Supabase must see a failure (it logs it for 6 hours).
        logger.exception("dependency unavailable; change not queued")
        metrics.add_metric(name="QueueFailures", unit=MetricUnit.Count, value=1)
        return _error(HTTPStatus.SERVICE_UNAVAILABLE, str(error), headers={"Retry-After": "1"})


def _header(event: dict[str, Any], name: str) -> str | None:
    """A request header by name, whatever its case (API Gateway keeps the sender's case)."""
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def _answer(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    values = {**(headers or {}), "Content-Type": "application/json"}
    return {
        "statusCode": int(status),
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
        "multiValueHeaders": {name: [value] for name, value in values.items()},
    }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    body = {"received": False, "error": HTTPStatus(status).phrase, "message": message}
    return _answer(status, body, headers)


# No Powertools Tracer here: it loads the X-Ray SDK, which took the handler's import from
# 1.7x to 2.5x `import boto3` (docs/SCALE.md, "Cold start"). Active tracing still records this
# function's invocation, and botocore passes the trace id on to SQS, so the consumer's trace
# continues the webhook's; only the subsegments of the SQS and Secrets Manager calls are missing.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, ports: ReceiverPorts | None = None
) -> dict[str, Any]:
    return route(event, ports)
