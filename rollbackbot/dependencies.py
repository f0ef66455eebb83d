"""What the service last saw of each outside system (git remote, Argo CD), for ``GET /status`` and metrics.

Nothing here calls anything: the board is fed by the calls the service makes anyway
(``metrics.observe_call``), so asking "is git reachable?" never costs a git process. Readiness
deliberately ignores this board: a git outage must not take the only pod out of the Service, or
Alertmanager could not deliver at all.

Metric: ``rollbackbot_dependency_up{dependency}`` is 1 when the last call succeeded, 0 when it
failed (absent until the first call).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from rollbackbot.clock import Clock, SystemClock
from rollbackbot.redact import redact_urls

MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class DependencyHealth:
    """The last outcome of calls to one system; errors already stripped of credentials."""

    ok: bool
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None

    def to_api(self) -> dict[str, Any]:
        """The JSON shape of ``/status``."""
        return {
            "status": "ok" if self.ok else "error",
            "last_success": _iso(self.last_success),
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
        }


class DependencyBoard:
    """Thread-safe record of the last success and last error per system."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._health: dict[str, DependencyHealth] = {}

    def succeeded(self, system: str) -> None:
        """A call to ``system`` worked."""
        with self._lock:
            before = self._health.get(system, DependencyHealth(ok=True))
            self._health[system] = DependencyHealth(True, self.clock.now(), before.last_error, before.last_error_at)

    def failed(self, system: str, error: str) -> None:
        """A call to ``system`` failed with ``error`` (URLs in it are redacted here)."""
        shown = redact_urls(" ".join(error.split()))[:MAX_ERROR_CHARS]
        with self._lock:
            before = self._health.get(system, DependencyHealth(ok=False))
            self._health[system] = DependencyHealth(False, before.last_success, shown, self.clock.now())

    def snapshot(self) -> dict[str, DependencyHealth]:
        """Every system seen so far."""
        with self._lock:
            return dict(self._health)

    def clear(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._health.clear()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """``rollbackbot_dependency_up{dependency}`` for the Prometheus registry."""
        family = GaugeMetricFamily(
            "rollbackbot_dependency_up",
            "1 when the last call to the dependency succeeded, else 0",
            labels=["dependency"],
        )
        for system, health in sorted(self.snapshot().items()):
            family.add_metric([system], 1.0 if health.ok else 0.0)
        yield family


def error_in_flight(operation: str) -> str:
    """A readable error for a failed call: the exception being raised right now, if any."""
    exc = sys.exc_info()[1]
    if exc is None:
        return f"{operation} failed"
    return f"{operation}: {type(exc).__name__}: {exc}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


DEPENDENCIES = DependencyBoard()
