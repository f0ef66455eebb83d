"""What the service last saw of each outside system (git remote, Argo CD), for ``GET /status`` and metrics.

Nothing here calls anything: the board is fed by the calls the service makes anyway
(``metrics.observe_call``), so asking "is git reachable?" never costs a git process. Readiness
deliberately ignores this board: a git outage must not take the only pod out of the Service, or
Alertmanager could not deliver at all.

Metric: ``rollbackbot_dependency_up{dependency}`` is 1 when the last call got through, 0 when it
did not (absent until the first call, and again once no call was made for ``FRESH_SECONDS``, so an
idle bot does not report a dependency as down for ever).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from rollbackbot.clock import Clock, SystemClock
from rollbackbot.redact import redact_urls

MAX_ERROR_CHARS = 300
FRESH_SECONDS = 15 * 60


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

    def __init__(self, clock: Clock | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.clock: Clock = clock or SystemClock()
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._health: dict[str, DependencyHealth] = {}
        self._seen_at: dict[str, float] = {}

    def succeeded(self, system: str) -> None:
        """A call to ``system`` worked."""
        with self._lock:
            before = self._health.get(system, DependencyHealth(ok=True))
            self._health[system] = DependencyHealth(True, self.clock.now(), before.last_error, before.last_error_at)
            self._seen_at[system] = self._monotonic()

    def failed(self, system: str, error: str) -> None:
        """A call to ``system`` failed with ``error`` (URLs in it are redacted here)."""
        shown = redact_urls(" ".join(error.split()))[:MAX_ERROR_CHARS]
        with self._lock:
            before = self._health.get(system, DependencyHealth(ok=False))
            self._health[system] = DependencyHealth(False, before.last_success, shown, self.clock.now())
            self._seen_at[system] = self._monotonic()

    def record(self, system: str, reachable: bool, error: str | None = None) -> None:
        """One call's outcome: it got through to ``system`` or it did not."""
        if reachable:
            self.succeeded(system)
        else:
            self.failed(system, error or "not reachable")

    def snapshot(self) -> dict[str, DependencyHealth]:
        """Every system seen so far."""
        with self._lock:
            return dict(self._health)

    def clear(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._health.clear()
            self._seen_at.clear()

    forget = clear

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """``rollbackbot_dependency_up{dependency}`` for the Prometheus registry."""
        family = GaugeMetricFamily(
            "rollbackbot_dependency_up",
            f"1 if the latest call reached the dependency, 0 if not; absent {FRESH_SECONDS}s after it",
            labels=["dependency"],
        )
        now = self._monotonic()
        with self._lock:
            fresh = {s: h for s, h in self._health.items() if now - self._seen_at.get(s, now) <= FRESH_SECONDS}
        for system, health in sorted(fresh.items()):
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
