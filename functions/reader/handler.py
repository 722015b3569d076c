"""GET /{table} and GET /{table}/{id}: serve the DynamoDB cache over HTTP.

The routes, headers and errors are described in ``waituntil.read.api``; this module only turns
API Gateway events into read requests and read responses back into proxy responses, and maps
errors to answers in one place (``route``).

The routing is written out here, as the receiver's is, instead of using Powertools'
``APIGatewayRestResolver``: API Gateway has already matched one of the function's two
resources (``/{table}``, ``/{table}/{id}``) and says which in the event (``resource`` and
``pathParameters``), so there is nothing left to match, while importing Powertools' event
handler (every resolver it has, AppSync's asyncio included) was about 80 ms of the reader's
cold start, 0.4x ``import boto3`` (docs/SCALE.md, "Cold start"). The answers are the proxy
responses the resolver gave: a compact JSON body for errors, ``multiValueHeaders``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from waituntil.adapters.aws import dynamodb_client_fast, s3_client_fast
from waituntil.adapters.blob_store import S3BlobStore
from waituntil.adapters.cache_store import CacheStore
from waituntil.cache.model import ServingReads
from waituntil.core.errors import (
    DependencyUnavailable,
    ListFilling,
    MethodNotAllowed,
    ReadRefused,
    ResponseTooLarge,
)
from waituntil.core.observability import logger, metrics, tracer
from waituntil.core.settings import ReaderSettings, reader_settings
from waituntil.read.api import read_item, read_page
from waituntil.read.request import ALLOW, READ_METHODS, ReadRequest, base_url
from waituntil.read.response import ReadResponse

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

LIST_RESOURCE = "/{table}"
ITEM_RESOURCE = "/{table}/{id}"
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class ReaderPorts:
    settings: ReaderSettings
    store: ServingReads


def build_ports(
    settings: ReaderSettings, *, dynamodb: DynamoDBClient, s3: S3Client | None = None
) -> ReaderPorts:
    blobs = S3BlobStore(settings.blob_bucket, s3) if settings.blob_bucket and s3 else None
    return ReaderPorts(
        settings=settings, store=CacheStore(settings.table_name, dynamodb, blobs=blobs)
    )


@cache
def default_ports() -> ReaderPorts:
    return build_ports(reader_settings(), dynamodb=dynamodb_client_fast(), s3=s3_client_fast())


def route(event: dict[str, Any], ports: ReaderPorts | None) -> dict[str, Any]:
    """The answer to one API Gateway (REST, proxy) event; errors mapped to statuses here."""
    parameters = event.get("pathParameters") or {}
    resource = event.get("resource")
    if resource not in (LIST_RESOURCE, ITEM_RESOURCE) or "table" not in parameters:
        return _error(HTTPStatus.NOT_FOUND, "no such route; read GET /{table} or GET /{table}/{id}")
    try:
        if str(event.get("httpMethod", "")).upper() not in READ_METHODS:
            raise MethodNotAllowed(ALLOW)
        ports = ports or default_ports()
        if resource == ITEM_RESOURCE:
            return serve_item(event, ports, parameters["table"], parameters.get("id", ""))
        return serve_list(event, ports, parameters["table"])
    except ReadRefused as error:
        logger.info("read refused", extra={"status": int(error.status_code), "reason": str(error)})
        if error.status_code == HTTPStatus.GONE:
            metrics.add_metric(name="StaleCursors", unit=MetricUnit.Count, value=1)
        return _error(error.status_code, str(error), headers=dict(error.headers))
    except ListFilling as error:
        # Not a fault: the first fill of a big table takes minutes. Say so, and when to retry.
        logger.info("list still filling", extra={"reason": str(error)})
        return _error(HTTPStatus.SERVICE_UNAVAILABLE, str(error), headers={"Retry-After": "10"})
    except DependencyUnavailable as error:
        logger.exception("cache read failed")
        metrics.add_metric(name="CacheReadFailures", unit=MetricUnit.Count, value=1)
        return _error(HTTPStatus.SERVICE_UNAVAILABLE, str(error), headers={"Retry-After": "1"})
    except ResponseTooLarge as error:
        # Not the client's fault, and API Gateway would answer an opaque 502 for an oversized
        # reply.
        logger.error("response too large", extra={"reason": str(error)})
        return _error(HTTPStatus.INTERNAL_SERVER_ERROR, str(error))


# capture_response=False on everything that returns rows: X-Ray segments travel over UDP and
# are dropped above 64 KB (a list page is up to ~256 KB), and row data has no place in traces.
@tracer.capture_method(capture_response=False)
def serve_list(event: dict[str, Any], ports: ReaderPorts, table: str) -> dict[str, Any]:
    return _respond(read_page(ports.store, _read_request(event, table), ports.settings))


@tracer.capture_method(capture_response=False)
def serve_item(event: dict[str, Any], ports: ReaderPorts, table: str, key: str) -> dict[str, Any]:
    return _respond(read_item(ports.store, _read_request(event, table, key), ports.settings))


def _read_request(event: dict[str, Any], table: str, key: str | None = None) -> ReadRequest:
    query = event.get("queryStringParameters") or {}
    request_context = event.get("requestContext") or {}
    identity = request_context.get("identity") or {}
    return ReadRequest(
        method=str(event.get("httpMethod", "")).upper(),
        table=table,
        raw_id=key,
        page=query.get("page"),
        cursor=query.get("cursor"),
        if_none_match=_header(event, "if-none-match"),
        if_modified_since=_header(event, "if-modified-since"),
        caller_arn=identity.get("userArn"),
        base_url=base_url(
            request_context.get("domainName") or _header(event, "host"),
            request_context.get("path") or event.get("path"),
            _header(event, "x-forwarded-proto"),
        ),
    )


def _header(event: dict[str, Any], name: str) -> str | None:
    """A request header by name, whatever its case, its repeated lines joined with commas
    (RFC 9110 section 5.3)."""
    multi = event.get("multiValueHeaders") or {}
    values = [value for key, lines in multi.items() if key.lower() == name for value in lines]
    if values:
        return ", ".join(values)
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def _respond(result: ReadResponse) -> dict[str, Any]:
    if result.status == HTTPStatus.NOT_MODIFIED:
        metrics.add_metric(name="NotModified", unit=MetricUnit.Count, value=1)
    # The body is the stored JSON text, passed through untouched (never re-serialized).
    return _answer(result.status, result.body, result.headers)


def _answer(status: int, body: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "statusCode": int(status),
        "body": body,
        "isBase64Encoded": False,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
    }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    body = {"error": HTTPStatus(status).phrase, "message": message}
    values = {**NO_STORE, **(headers or {}), "Content-Type": "application/json"}
    return _answer(status, json.dumps(body, separators=(",", ":")), values)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, ports: ReaderPorts | None = None
) -> dict[str, Any]:
    return route(event, ports)
