"""Shared test set-up: unit tests never touch the network.

A tripwire makes every outgoing socket connection fail loudly, except in tests marked ``e2e`` or
``network`` (real processes on loopback). Fakes are injected through the ports and
``httpx.MockTransport`` / ``httpx.ASGITransport``, which open no sockets.
"""

from __future__ import annotations

import socket
from collections import defaultdict
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


FIELDS = ("inputs", "faults", "restarts", "rollbacks", "duplicates")
OUTCOMES = ("incidents", "stuck", "transient_faults", "lost_rollbacks")


class AbuseReport:
    """Counts what the fault and abuse tests threw at the service, printed once per family."""

    def __init__(self) -> None:
        self.families: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIELDS, 0))
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)

    def settled(self, *, incidents: int, stuck: int, transient_faults: int = 0, lost_rollbacks: int = 0) -> None:
        """Record incidents checked after faults: how many were left non-terminal, rollbacks lost to a transient."""
        for key, value in (
            ("incidents", incidents),
            ("stuck", stuck),
            ("transient_faults", transient_faults),
            ("lost_rollbacks", lost_rollbacks),
        ):
            self.outcomes[key] += value

    def add(self, family: str, **counts: int) -> None:
        for key, value in counts.items():
            if key not in FIELDS:
                raise KeyError(key)
            self.families[family][key] += value


_REPORT_KEY = pytest.StashKey[AbuseReport]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_REPORT_KEY] = AbuseReport()


@pytest.fixture
def abuse_report(request: pytest.FixtureRequest) -> AbuseReport:
    """Record inputs tried, faults injected, restarts survived, rollbacks and duplicates."""
    return request.config.stash[_REPORT_KEY]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    report = config.stash.get(_REPORT_KEY, None)
    if not report or not (report.families or report.outcomes["incidents"]):
        return
    terminalreporter.section("fault-and-abuse report")
    for family, counts in sorted(report.families.items()):
        terminalreporter.write_line(f"{family}: " + " ".join(f"{k}={counts[k]}" for k in FIELDS))
    if report.outcomes["incidents"]:
        seen = report.outcomes
        terminalreporter.write_line(f"stuck: {seen['stuck']} (of {seen['incidents']} incidents checked after faults)")
        terminalreporter.write_line(
            f"lost rollbacks after transient faults: {seen['lost_rollbacks']} "
            f"({seen['transient_faults']} transient faults injected)"
        )
