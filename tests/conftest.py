"""Shared test set-up: unit tests never touch the network.

A tripwire makes every outgoing socket connection fail loudly, except in tests marked ``e2e`` or
``network`` (real processes on loopback). Fakes are injected through the ports and
``httpx.MockTransport`` / ``httpx.ASGITransport``, which open no sockets.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest


class NetworkTripwire(AssertionError):
    """A unit test tried to open a network connection."""


@pytest.fixture(autouse=True)
def _network_tripwire(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.node.get_closest_marker("e2e") or request.node.get_closest_marker("network"):
        yield
        return
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guard(sock: socket.socket, address: Any, real: Any) -> Any:
        if sock.family == socket.AF_UNIX:
            return real(sock, address)
        raise NetworkTripwire(f"unit test tried to connect to {address!r}; mark it e2e/network or use a fake")

    monkeypatch.setattr(socket.socket, "connect", lambda s, a: guard(s, a, real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda s, a: guard(s, a, real_connect_ex))
    yield
