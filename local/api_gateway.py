"""API Gateway (REST API, Lambda proxy integration) in front of the template's functions.

Routes come from the template: every ``AWS::Serverless::Function`` event of ``Type: Api``
(``Path`` with ``{param}`` or ``{greedy+}``, ``Method`` or ``ANY``) becomes a route, so a
function added to the template is served without any change here. A request becomes the
event API Gateway would send (the shape of ``events/receiver/*.json``: headers and
multiValueHeaders, query strings, pathParameters, requestContext with a fresh requestId and
the template's stage), the function's container is invoked, and its proxy response becomes the
HTTP response.

Served at the root (``http://127.0.0.1:3000/revalidate``), as ``sam local start-api`` does,
and also under the stage, as deployed (``http://127.0.0.1:3000/v1/revalidate``). Either way
the event's ``requestContext.path`` has the stage in front, as on an ``execute-api`` domain,
and ``X-Forwarded-Proto`` says ``http``: the reader's absolute ``Link`` targets
(``http://127.0.0.1:3000/v1/articles?cursor=...``) therefore work here too.

What API Gateway does that is reproduced, because clients can observe it:
- a path or method no route has: 403 ``{"message": "Missing Authentication Token"}``, the REST
  API's answer (an HTTP API would answer 404 ``{"message": "Not Found"}``). ``ANY`` covers
  API Gateway's seven methods (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS), so TRACE, QUERY
  or any other token gets this 403 too, never http.server's 501 HTML page; a request line or
  header block that cannot be parsed gets a JSON ``{"message": ...}`` error as well;
- a function error, timeout or malformed proxy response: 502 ``{"message": "Internal server
  error"}``;
- a request body over 10 MB: 413; responses gzip-compressed from the Api's
  ``MinimumCompressionSize`` when the client accepts gzip; ``x-amzn-RequestId``.
Local-only: ``GET /openapi.yaml`` serves ``docs/openapi.yaml``, the API's description (the
deployed API has no such route; there ``/openapi.yaml`` would be the read route of a table).
Not reproduced: throttling (``MethodSettings``), AWS WAF (the webhook's gate, ``WebhookGate``:
a webhook needs no ``X-Webhook-Gate`` header here), the 29 s integration timeout (every
function times out sooner), authorizers and API keys (the template uses none), and
``BinaryMediaTypes`` on responses (an ``isBase64Encoded`` response is always decoded here).
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.http_server import ConnectionTrackingServer, HttpResponse, RequestHandler, base_url
from local.lambda_runtime import Invocation
from local.template import Resolver, resources_of_type

log = logging.getLogger("local.api_gateway")

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Ranking of a path segment when several routes match (API Gateway prefers literal segments,
# then {param}, then {greedy+}).
_LITERAL, _PARAM, _GREEDY = 0, 1, 2
_PROTO = "x-forwarded-proto"
# The methods a REST API routes; ANY stands for these, and no route has any other.
API_GATEWAY_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
DESCRIPTION_PATH = "/openapi.yaml"
DESCRIPTION_FILE = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"

Invoke = Callable[[str, dict[str, Any]], Invocation]


@dataclass(frozen=True)
class ApiRoute:
    function_id: str
    path: str  # as in the template: /revalidate, /{table}/{id}, /{proxy+}
    method: str  # upper case, or ANY
    segments: tuple[tuple[int, str], ...]  # (kind, literal text or parameter name)

    @property
    def rank(self) -> tuple[int, ...]:
        return tuple(kind for kind, _ in self.segments)


@dataclass(frozen=True)
class ApiSettings:
    """What the template's ``AWS::Serverless::Api`` says about requests and responses."""

    stage: str = "Prod"  # SAM's implicit API uses the stage "Prod"
    minimum_compression_size: int | None = None
    binary_media_types: tuple[str, ...] = ()
    api_id: str = "local"
    account_id: str = "123456789012"


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str  # path and query string, as on the request line
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


# ----- routes from the template -------------------------------------------------------------


def api_routes(resolver: Resolver) -> list[ApiRoute]:
    """Every ``Type: Api`` event of every function, most specific first."""
    routes: list[ApiRoute] = []
    for function_id, resource in resources_of_type(
        resolver.template, "AWS::Serverless::Function"
    ).items():
        for event in (resource["Properties"].get("Events") or {}).values():
            if event["Type"] != "Api":
                continue
            properties = resolver.resolve(_without_api_id(event["Properties"]))
            path = str(properties["Path"])
            routes.append(
                ApiRoute(
                    function_id=function_id,
                    path=path,
                    method=str(properties.get("Method", "ANY")).upper(),
                    segments=_parse_path(path),
                )
            )
    return sorted(routes, key=lambda route: route.rank)


def api_settings(resolver: Resolver) -> ApiSettings:
    """Stage, compression and binary types of the (single) API the events attach to."""
    apis = resources_of_type(resolver.template, "AWS::Serverless::Api")
    if len(apis) > 1:
        raise NotImplementedError("the local stack serves one AWS::Serverless::Api")
    account = resolver.pseudo["AWS::AccountId"]
    if not apis:
        return ApiSettings(account_id=account)
    ((_, api),) = apis.items()
    properties = api["Properties"]
    minimum = properties.get("MinimumCompressionSize")
    return ApiSettings(
        stage=str(resolver.resolve(properties["StageName"])),
        minimum_compression_size=None if minimum is None else int(resolver.resolve(minimum)),
        binary_media_types=tuple(
            str(item) for item in resolver.resolve(properties.get("BinaryMediaTypes", []))
        ),
        account_id=account,
    )


def _without_api_id(properties: dict[str, Any]) -> dict[str, Any]:
    # RestApiId is a Ref to the Api resource, which has no physical id locally.
    return {name: value for name, value in properties.items() if name != "RestApiId"}


def _parse_path(path: str) -> tuple[tuple[int, str], ...]:
    segments: list[tuple[int, str]] = []
    for part in path.strip("/").split("/"):
        if not part:
            continue
        if part.startswith("{") and part.endswith("+}"):
            segments.append((_GREEDY, part[1:-2]))
        elif part.startswith("{") and part.endswith("}"):
            segments.append((_PARAM, part[1:-1]))
        else:
            segments.append((_LITERAL, part))
    return tuple(segments)


def match_route(
    routes: list[ApiRoute], method: str, path: str
) -> tuple[ApiRoute, dict[str, str]] | None:
    """The route API Gateway would pick, with its path parameters; None: 403 for REST APIs.

    The most specific resource matching the path wins; then its exact method, else its ANY.
    A resource that matches the path but not the method does not fall back to another one.
    """
    if method not in API_GATEWAY_METHODS:
        return None
    parts = [unquote(part) for part in path.strip("/").split("/") if part]
    for route in routes:  # most specific first
        parameters = _match_segments(route.segments, parts)
        if parameters is None:
            continue
        same_resource = [other for other in routes if other.path == route.path]
        for candidate in sorted(same_resource, key=lambda other: other.method == "ANY"):
            if candidate.method in (method, "ANY"):
                return candidate, parameters
        return None
    return None


def _match_segments(
    segments: tuple[tuple[int, str], ...], parts: list[str]
) -> dict[str, str] | None:
    parameters: dict[str, str] = {}
    for index, (kind, text) in enumerate(segments):
        if kind == _GREEDY:
            rest = parts[index:]
            if not rest:
                return None
            parameters[text] = "/".join(rest)
            return parameters
        if index >= len(parts):
            return None
        if kind == _LITERAL and parts[index] != text:
            return None
        if kind == _PARAM:
            parameters[text] = parts[index]
    return parameters if len(parts) == len(segments) else None


# ----- request -> event ---------------------------------------------------------------------


def build_event(
    request: HttpRequest,
    route: ApiRoute,
    path_parameters: dict[str, str],
    settings: ApiSettings,
    request_id: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The Lambda proxy event of a REST API (payload format 1.0)."""
    now = now or datetime.now(UTC)
    url = urlsplit(request.target)
    path = unquote(url.path) or "/"
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    # API Gateway sets X-Forwarded-Proto itself (https there, http here): a client's is dropped.
    forwarded = [(name, value) for name, value in request.headers if name.lower() != _PROTO]
    for name, value in [*forwarded, ("X-Forwarded-Proto", "http")]:
        headers[name] = value  # the last value wins, as in API Gateway's "headers"
        multi_headers.setdefault(name, []).append(value)
    query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(url.query, keep_blank_values=True):
        query[name] = value
        multi_query.setdefault(name, []).append(value)
    body, is_base64 = _event_body(request, settings)
    host = _header(request.headers, "host") or "localhost"
    user_agent = _header(request.headers, "user-agent")
    epoch_ms = int(now.timestamp() * 1000)
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": request.method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": route.path,
            "httpMethod": request.method,
            "extendedRequestId": request_id,
            "requestTime": _request_time(now),
            "path": f"/{settings.stage}{path}",
            "accountId": settings.account_id,
            "protocol": request.protocol,
            "stage": settings.stage,
            "domainPrefix": host.split(".")[0],
            "requestTimeEpoch": epoch_ms,
            "requestId": request_id,
            "identity": {
                "sourceIp": request.source_ip,
                "userAgent": user_agent,
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "user": None,
                "userArn": None,
                "cognitoIdentityPoolId": None,
                "cognitoIdentityId": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
            },
            "domainName": host,
            "apiId": settings.api_id,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def _event_body(request: HttpRequest, settings: ApiSettings) -> tuple[str | None, bool]:
    if not request.body:
        return None, False
    content_type = (_header(request.headers, "content-type") or "").split(";")[0].strip()
    if any(_media_type_matches(pattern, content_type) for pattern in settings.binary_media_types):
        return base64.b64encode(request.body).decode("ascii"), True
    # Without a matching binary media type a REST API passes the body on as text.
    return request.body.decode("utf-8", errors="replace"), False


def _media_type_matches(pattern: str, content_type: str) -> bool:
    regex = re.escape(pattern.replace("~1", "/")).replace(r"\*", ".*")
    return re.fullmatch(regex, content_type) is not None


def _request_time(now: datetime) -> str:
    # API Gateway's format, with English month names whatever the locale.
    return f"{now:%d}/{_MONTHS[now.month - 1]}/{now:%Y:%H:%M:%S} +0000"


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    found = None
    for key, value in headers:
        if key.lower() == name:
            found = value
    return found


# ----- proxy response -> HTTP ---------------------------------------------------------------


def gateway_error(status: int, message: str, error_type: str, request_id: str) -> HttpResponse:
    body = json.dumps({"message": message}).encode()
    return HttpResponse(
        status=status,
        headers=[
            ("Content-Type", "application/json"),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-ErrorType", error_type),
        ],
        body=body,
    )


def description_response(request_id: str) -> HttpResponse:
    """docs/openapi.yaml, read at each request so that edits show without a restart."""
    return HttpResponse(
        status=200,
        headers=[
            ("Content-Type", "application/yaml; charset=utf-8"),
            ("Cache-Control", "no-cache"),
            ("x-amzn-RequestId", request_id),
        ],
        body=DESCRIPTION_FILE.read_bytes(),
    )


def proxy_response(
    invocation: Invocation, request: HttpRequest, settings: ApiSettings, request_id: str
) -> HttpResponse:
    """The HTTP response API Gateway makes of a function's proxy response."""
    if not invocation.ok:
        return gateway_error(
            502, "Internal server error", "InternalServerErrorException", request_id
        )
    try:
        status, headers, body = _parse_proxy_response(invocation.response)
    except (TypeError, ValueError, KeyError) as error:
        log.error("malformed Lambda proxy response: %s", error)
        return gateway_error(
            502, "Internal server error", "InternalServerErrorException", request_id
        )
    names = {name.lower() for name, _ in headers}
    if "content-type" not in names:
        headers.append(("Content-Type", "application/json"))
    headers.append(("x-amzn-RequestId", request_id))
    if _should_compress(request, settings, names, body):
        body = gzip.compress(body)
        headers.append(("Content-Encoding", "gzip"))
    return HttpResponse(status=status, headers=headers, body=body)


def _parse_proxy_response(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    if not isinstance(response, dict):
        raise TypeError("the response is not an object")
    status = response["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int | str):
        raise TypeError("statusCode is not a number")
    headers: list[tuple[str, str]] = []
    multi = response.get("multiValueHeaders") or {}
    single = response.get("headers") or {}
    if not isinstance(multi, dict) or not isinstance(single, dict):
        raise TypeError("headers are not objects")
    for name, values in multi.items():
        headers.extend((str(name), str(value)) for value in values)
    # "If the same key-value pair is specified in both, only the values from
    # multiValueHeaders will appear in the merged list."
    multi_names = {str(name).lower() for name in multi}
    headers.extend(
        (str(name), str(value)) for name, value in single.items() if name.lower() not in multi_names
    )
    body = response.get("body")
    if body is None:
        raw = b""
    elif not isinstance(body, str):
        raise TypeError("body is not a string")
    elif response.get("isBase64Encoded"):
        raw = base64.b64decode(body)
    else:
        raw = body.encode("utf-8")
    return int(status), headers, raw


def _should_compress(
    request: HttpRequest, settings: ApiSettings, header_names: set[str], body: bytes
) -> bool:
    if settings.minimum_compression_size is None or "content-encoding" in header_names:
        return False
    accepted = (_header(request.headers, "accept-encoding") or "").lower()
    return "gzip" in accepted and len(body) >= settings.minimum_compression_size


# ----- the HTTP server ----------------------------------------------------------------------


class ApiGateway:
    """An HTTP server bound at construction (the URL is known before the stack is wired);
    requests are answered once ``serve`` has the routes and the way to invoke functions."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), self)
        self._thread: threading.Thread | None = None
        self._routes: list[ApiRoute] = []
        self._settings = ApiSettings()
        self._invoke: Invoke | None = None
        bound_host, bound_port = self._server.server_address[:2]
        self.url = base_url(str(bound_host), int(bound_port))

    @property
    def routes(self) -> list[ApiRoute]:
        return list(self._routes)

    def serve(self, routes: list[ApiRoute], settings: ApiSettings, invoke: Invoke) -> None:
        self._routes = routes
        self._settings = settings
        self._invoke = invoke
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="api-gateway",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, drop idle keep-alive connections, wait for requests in flight."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.close_connections()
        self._server.server_close()

    def handle(self, request: HttpRequest) -> HttpResponse:
        request_id = str(uuid.uuid4())
        request = self._without_stage(request)
        path = urlsplit(request.target).path
        if path == DESCRIPTION_PATH and request.method in ("GET", "HEAD"):
            return description_response(request_id)
        match = match_route(self._routes, request.method, path)
        if match is None or self._invoke is None:
            return gateway_error(
                403,
                "Missing Authentication Token",
                "MissingAuthenticationTokenException",
                request_id,
            )
        route, parameters = match
        event = build_event(request, route, parameters, self._settings, request_id)
        invocation = self._invoke(route.function_id, event)
        if not invocation.ok:
            error = invocation.error or {}
            log.error(
                "%s failed: %s: %s",
                route.function_id,
                error.get("errorType"),
                error.get("errorMessage"),
            )
        return proxy_response(invocation, request, self._settings, request_id)

    def _without_stage(self, request: HttpRequest) -> HttpRequest:
        """``/v1/articles`` as ``/articles``: the deployed URLs (and Link targets) work here."""
        prefix = f"/{self._settings.stage}/"
        if not request.target.startswith(prefix):
            return request
        return dataclasses.replace(request, target=request.target[len(prefix) - 1 :])


class _Server(ConnectionTrackingServer):
    """Remembers open connections, so stop() can end idle keep-alive ones."""

    daemon_threads = False  # server_close() joins the handler threads: none is left behind
    block_on_close = True

    def __init__(self, address: tuple[str, int], gateway: ApiGateway) -> None:
        self.gateway = gateway
        super().__init__(address, _Handler)


class _Handler(RequestHandler):
    server: _Server
    server_version = "local-api-gateway"
    timeout = 60  # idle keep-alive connections
    max_body_bytes = MAX_REQUEST_BYTES

    def respond(self, body: bytes) -> HttpResponse:
        request = HttpRequest(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
        )
        try:
            return self.server.gateway.handle(request)
        except Exception:  # a bug here must not kill the connection silently
            log.exception("the local API gateway failed on %s %s", self.command, self.path)
            return gateway_error(
                500, "Internal server error", "InternalServerErrorException", str(uuid.uuid4())
            )

    def error_response(self, status: int, message: str) -> HttpResponse:
        return gateway_error(status, message, "BadRequestException", str(uuid.uuid4()))

    def refuse_body(self, too_large: bool) -> HttpResponse:
        request_id = str(uuid.uuid4())
        if too_large:
            return gateway_error(413, "Request Too Long", "RequestTooLarge", request_id)
        return gateway_error(400, "Bad Request", "BadRequestException", request_id)

    def responded(self, response: HttpResponse, elapsed_s: float) -> None:
        log.info(
            "%s %s -> %d (%.0f ms)",
            self.command,
            urlsplit(self.path).path,
            response.status,
            elapsed_s * 1000,
        )

    def handle_expect_100(self) -> bool:
        """A client that sent ``Expect: 100-continue`` waits before sending its body: an
        oversized one is refused at once, and the body is never sent."""
        if self.declared_length() > MAX_REQUEST_BYTES:
            self.close_connection = True
            self.send(self.refuse_body(too_large=True))
            return False
        return super().handle_expect_100()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: ``responded`` logs one line per request through ``logging`` instead."""
