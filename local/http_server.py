"""The HTTP server and request handler both local servers (API Gateway, Supabase) run on.

``ConnectionTrackingServer`` is a threading server that can end idle keep-alive connections
when it stops. ``RequestHandler`` reads one request's body (``Content-Length`` or chunked, up
to a limit), asks the subclass for the ``HttpResponse`` (``respond``) and writes it; each
server says only what differs: its name, idle timeout, body limit and refusals.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar


@dataclass
class HttpResponse:
    """What a server writes back."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    # Close the connection instead of answering (a fault: the client's read fails mid-request).
    dropped: bool = False

    def header(self, name: str) -> str | None:
        """A response header's value (first match, case-insensitive)."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class BodyTooLarge(Exception):
    """The request body is over the handler's ``max_body_bytes``."""


def base_url(host: str, port: int) -> str:
    """The URL a client uses for a server bound to ``host:port`` (a wildcard address becomes
    loopback; an IPv6 address is bracketed)."""
    url_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in url_host:
        url_host = f"[{url_host}]" if url_host != "::" else "[::1]"
    return f"http://{url_host}:{port}"


class ConnectionTrackingServer(ThreadingHTTPServer):
    """Remembers open connections, so stopping can end idle keep-alive ones at once."""

    allow_reuse_address = True
    # socketserver listens with a backlog of 5: a burst of webhooks (pg_net sends up to 200 at
    # once) overflows it while the accepting thread waits for the GIL, and Linux then drops the
    # connection attempt, which the client retries only after 1 s, then 3 s: past pg_net's
    # timeout. API Gateway, or PostgREST, never turns a connection away like that.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut every kept-alive connection so no handler thread outlives the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class RequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: every method is read, answered by ``respond`` and written."""

    protocol_version = "HTTP/1.1"
    sys_version = ""
    # Headers and body are two writes: without TCP_NODELAY a keep-alive client waits ~40 ms
    # for a delayed ACK (Nagle) on every request.
    disable_nagle_algorithm = True
    max_body_bytes: ClassVar[int | None] = None  # None: any size
    # An oversized body is read and discarded up to this much before the refusal (see
    # _discard); past it the connection is closed unread.
    discard_limit_bytes: ClassVar[int] = 64 * 1024 * 1024
    # Responses sent without a Content-Length header (PostgREST's 204 and 304 have none).
    no_length_statuses: ClassVar[frozenset[int]] = frozenset()

    def respond(self, body: bytes) -> HttpResponse:
        """The response to the request in ``self.command``, ``self.path``, ``self.headers``."""
        raise NotImplementedError

    def refuse_body(self, too_large: bool) -> HttpResponse:
        """The response to a body over ``max_body_bytes`` or unreadable (bad chunking)."""
        raise NotImplementedError

    def responded(self, response: HttpResponse, elapsed_s: float) -> None:
        """Called once a response to ``respond`` is written (e.g. to log it)."""

    def version_string(self) -> str:
        return self.server_version

    def __getattr__(self, name: str) -> Any:
        # http.server answers a method without a do_<METHOD> (TRACE, QUERY, any token) with 501
        # and an HTML page; here every method is read and answered by ``respond``, which says
        # what this server does with it.
        if name.startswith("do_"):
            return self.answer
        raise AttributeError(name)

    def error_response(self, status: int, message: str) -> HttpResponse:
        """The answer to a request http.server cannot parse (request line, headers): JSON."""
        body = json.dumps({"message": message}).encode()
        return HttpResponse(status, [("Content-Type", "application/json")], body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own error page is HTML; this server's errors are ``error_response``."""
        self.close_connection = True
        # A request line that could not be parsed leaves http.server's default version,
        # HTTP/0.9, under which no status line or header is written: answer in HTTP/1.1.
        if self.request_version == "HTTP/0.9":
            self.request_version = self.protocol_version
        self.send(self.error_response(code, HTTPStatus(code).phrase))

    def answer(self) -> None:
        """Read the body, ask ``respond`` (or ``refuse_body``), write the response."""
        started = time.monotonic()
        try:
            body = self._read_body()
        except BodyTooLarge:
            self.close_connection = True
            self.send(self.refuse_body(too_large=True))
            return
        except (ValueError, OSError):
            self.close_connection = True
            self.send(self.refuse_body(too_large=False))
            return
        response = self.respond(body)
        self.send(response)
        self.responded(response, time.monotonic() - started)

    # http.server calls do_<METHOD>: every method is answered alike (see __getattr__).
    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = answer  # noqa: N815

    def declared_length(self) -> int:
        """The ``Content-Length`` the client declared (0 if none or malformed)."""
        try:
            return int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return 0  # _read_body refuses it

    def _read_body(self) -> bytes:
        limit = self.max_body_bytes
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            total = 0
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                total += size
                if limit is not None and total > limit:
                    # Read the rest of the chunks (and their CRLFs), keeping none of them.
                    while size and total <= self.discard_limit_bytes:
                        self._discard(size + 2)
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        total += size
                    raise BodyTooLarge
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if limit is not None and length > limit:
            self._discard(length)
            raise BodyTooLarge
        return self.rfile.read(length) if length > 0 else b""

    def _discard(self, length: int) -> None:
        """Read ``length`` bytes of body and drop them, so the refusal reaches the client.

        A client writes its whole body before reading the answer; closing a socket with unread
        bytes makes the kernel reset the connection, and the client sees ECONNRESET or a broken
        pipe instead of the refusal.
        """
        remaining = min(length, self.discard_limit_bytes)
        while remaining > 0:
            read = len(self.rfile.read(min(remaining, 1 << 16)))
            if not read:
                return
            remaining -= read

    def send(self, response: HttpResponse) -> None:
        """Write ``response``; a client that has gone away only ends the connection."""
        if response.dropped:
            self.close_connection = True
            return
        try:
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            if response.status not in self.no_length_statuses:
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD" and response.body:
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the client gave up (e.g. its own timeout)
