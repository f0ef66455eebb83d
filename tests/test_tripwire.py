"""Guard the guard: the network tripwire of tests/conftest.py is armed in unit tests."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import NetworkTripwire


def test_connection_attempt_in_a_unit_test_raises() -> None:
    with socket.socket() as sock, pytest.raises(NetworkTripwire):
        sock.connect(("127.0.0.1", 9))


@pytest.mark.network
def test_network_marker_lifts_it() -> None:
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", 9)) != 0  # refused, not tripped
