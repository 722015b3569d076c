"""Unit tests: pure logic on fakes. No network and no moto: a test that needs either belongs
in ``tests/integration`` (handlers under moto, the local Supabase over HTTP) or
``tests/e2e`` (the local stack). Both are enforced here, for every unit test: connecting a
socket, binding one (a server) or starting moto's mock raises.

(moto is imported all the same: ``tests/conftest.py`` defines the integration tests' ``aws``
fixture. Spawning a process over pipes is allowed: ``test_local_plumbing.py`` runs a local
Lambda container that way.)
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from moto.core.models import MockAWS


class NetworkInUnitTest(AssertionError):
    """A unit test reached for the network or for moto."""


@pytest.fixture(autouse=True)
def _no_network_no_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse_socket(_socket: socket.socket, address: Any, *_: Any) -> None:
        raise NetworkInUnitTest(
            f"a unit test opened a socket to {address!r}: move it to tests/integration"
        )

    def refuse_moto(*_: Any, **__: Any) -> None:
        raise NetworkInUnitTest("a unit test started moto: move it to tests/integration")

    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, refuse_socket)
    monkeypatch.setattr(MockAWS, "start", refuse_moto)
