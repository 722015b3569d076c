"""The local servers (API Gateway, PostgREST) take a burst of connections as the real ones do."""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler

from local.http_server import ConnectionTrackingServer

BURST = 100


def test_a_burst_of_connections_is_queued_not_dropped_while_the_server_is_busy() -> None:
    # Given a local server whose accepting thread is busy (not accepting for now)
    server = ConnectionTrackingServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    clients: list[socket.socket] = []
    try:
        # When a burst of clients connects at once, as pg_net's batch of webhooks does
        connected = 0
        for _ in range(BURST):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.settimeout(0.5)
            clients.append(client)
            try:
                client.connect(server.server_address)
                connected += 1
            except TimeoutError:
                pass
        # Then every connection is queued for the server to accept (with socketserver's
        # backlog of 5 the rest were dropped, and a client retries only after a second)
        assert connected == BURST
    finally:
        for client in clients:
            client.close()
        server.server_close()
