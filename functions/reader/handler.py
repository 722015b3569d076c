"""GET /{table} and GET /{table}/{id}: serve the DynamoDB cache over HTTP.

The routes, headers and errors are described in ``waituntil.read.api``; this module only turns
API Gateway events into read requests and read responses back into proxy responses.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
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

app = APIGatewayRestResolver()
OTHER_METHODS = ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
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


# capture_response=False on everything that returns rows: X-Ray segments travel over UDP and
# are dropped above 64 KB (a list page is up to ~256 KB), and row data has no place in traces.
@app.route("/<table>", method=list(READ_METHODS))
@tracer.capture_method(capture_response=False)
def serve_list(table: str) -> Response[str]:
    ports = _ports()
    return _respond(read_page(ports.store, _read_request(table), ports.settings))


@app.route("/<table>/<key>", method=list(READ_METHODS))
@tracer.capture_method(capture_response=False)
def serve_item(table: str, key: str) -> Response[str]:
    ports = _ports()
    return _respond(read_item(ports.store, _read_request(table, key), ports.settings))


@app.route("/<table>", method=OTHER_METHODS)
@app.route("/<table>/<key>", method=OTHER_METHODS)
def wrong_method(**_: str) -> Response[str]:
    raise MethodNotAllowed(ALLOW)


@app.not_found
def not_found(_: Exception) -> Response[Any]:
    # API Gateway routed the request to one of our resources, but the router's path pattern
    # did not match (an id with characters it does not expect) or the method is unusual.
    event = app.current_event
    parameters = event.path_parameters or {}
    if event.resource in (LIST_RESOURCE, ITEM_RESOURCE) and "table" in parameters:
        if event.http_method not in READ_METHODS:
            raise MethodNotAllowed(ALLOW)
        if event.resource == ITEM_RESOURCE:
            return serve_item(parameters["table"], parameters.get("id", ""))
        return serve_list(parameters["table"])
    return _error(HTTPStatus.NOT_FOUND, "no such route; read GET /{table} or GET /{table}/{id}")


@app.exception_handler(ReadRefused)
def read_refused(error: ReadRefused) -> Response[Any]:
    logger.info("read refused", extra={"status": int(error.status_code), "reason": str(error)})
    if error.status_code == HTTPStatus.GONE:
        metrics.add_metric(name="StaleCursors", unit=MetricUnit.Count, value=1)
    return _error(error.status_code, str(error), headers=dict(error.headers))


@app.exception_handler(ListFilling)
def list_filling(error: ListFilling) -> Response[Any]:
    # Not a fault: the first fill of a big table takes minutes. Say so, and when to retry.
    logger.info("list still filling", extra={"reason": str(error)})
    return _error(HTTPStatus.SERVICE_UNAVAILABLE, str(error), headers={"Retry-After": "10"})


@app.exception_handler(DependencyUnavailable)
def dependency_unavailable(error: DependencyUnavailable) -> Response[Any]:
    logger.exception("cache read failed")
    metrics.add_metric(name="CacheReadFailures", unit=MetricUnit.Count, value=1)
    return _error(HTTPStatus.SERVICE_UNAVAILABLE, str(error), headers={"Retry-After": "1"})


@app.exception_handler(ResponseTooLarge)
def response_too_large(error: ResponseTooLarge) -> Response[Any]:
    # Not the client's fault, and API Gateway would answer an opaque 502 for an oversized reply.
    logger.error("response too large", extra={"reason": str(error)})
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, str(error))


def _ports() -> ReaderPorts:
    ports: ReaderPorts | None = app.context.get("ports")
    return ports or default_ports()


def _read_request(table: str, key: str | None = None) -> ReadRequest:
    event = app.current_event
    query = event.query_string_parameters or {}
    request_context = event.raw_event.get("requestContext") or {}
    identity = request_context.get("identity") or {}
    return ReadRequest(
        method=event.http_method,
        table=table,
        raw_id=key,
        page=query.get("page"),
        cursor=query.get("cursor"),
        if_none_match=_header("if-none-match"),
        if_modified_since=_header("if-modified-since"),
        caller_arn=identity.get("userArn"),
        base_url=base_url(
            request_context.get("domainName") or _header("host"),
            request_context.get("path") or event.path,
            _header("x-forwarded-proto"),
        ),
    )


def _header(name: str) -> str | None:
    """A request header, its repeated lines joined with commas (RFC 9110 section 5.3)."""
    event = app.current_event
    multi = event.multi_value_headers or {}
    values = [value for key, lines in multi.items() if key.lower() == name for value in lines]
    if values:
        return ", ".join(values)
    value: str | None = event.headers.get(name)
    return value


def _respond(result: ReadResponse) -> Response[str]:
    if result.status == HTTPStatus.NOT_MODIFIED:
        metrics.add_metric(name="NotModified", unit=MetricUnit.Count, value=1)
    # The body is the stored JSON text, passed through untouched (a str is never re-serialized).
    return Response(status_code=result.status, body=result.body, headers=result.headers)


def _error(
    status: int, message: str, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"error": HTTPStatus(status).phrase, "message": message},
        headers={**NO_STORE, **(headers or {})},
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, ports: ReaderPorts | None = None
) -> dict[str, Any]:
    app.append_context(ports=ports)
    return app.resolve(event, context)
