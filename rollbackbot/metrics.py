"""Prometheus metrics of the service (served at /metrics)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from rollbackbot.dependencies import DEPENDENCIES, error_in_flight

REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOK_REQUESTS = Counter(
    "rollbackbot_webhook_requests_total",
    "Alertmanager webhook requests by outcome",
    ["outcome"],
    registry=REGISTRY,
)
ALERTS_RECEIVED = Counter(
    "rollbackbot_alerts_total",
    "Alerts received by what became of them (new, duplicate, unmatched, resolved)",
    ["result"],
    registry=REGISTRY,
)
INCIDENT_TRANSITIONS = Counter(
    "rollbackbot_incident_transitions_total",
    "Incident state transitions by app and new state",
    ["app", "state"],
    registry=REGISTRY,
)
REACTION_SECONDS = Histogram(
    "rollbackbot_alert_to_rollback_seconds",
    "Time from alert received to the rollback commit pushed, and to healthy",
    ["stage"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
EXTERNAL_CALL_SECONDS = Histogram(
    "rollbackbot_external_call_seconds",
    "Latency of calls to git, Argo CD and Slack",
    ["system", "operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
EXTERNAL_CALL_ERRORS = Counter(
    "rollbackbot_external_call_errors_total",
    "Failed calls to git, Argo CD and Slack",
    ["system", "operation"],
    registry=REGISTRY,
)


def observe_call(system: str, operation: str, seconds: float, ok: bool) -> None:
    """Record one external call (also its outcome on the dependency board behind ``/status``)."""
    EXTERNAL_CALL_SECONDS.labels(system, operation).observe(seconds)
    if not ok:
        EXTERNAL_CALL_ERRORS.labels(system, operation).inc()
        DEPENDENCIES.failed(system, error_in_flight(operation))
    else:
        DEPENDENCIES.succeeded(system)


class IncidentGauge:
    """``rollbackbot_incidents{app,state}``: counted from the store at scrape time, so it survives restarts."""

    def __init__(self) -> None:
        self.count: Callable[[], dict[tuple[str, str], int]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("rollbackbot_incidents", "Incidents by app and state", labels=["app", "state"])
        if self.count is not None:
            for (app, state), value in sorted(self.count().items()):
                family.add_metric([app, state], value)
        yield family


INCIDENTS = IncidentGauge()
REGISTRY.register(INCIDENTS)
REGISTRY.register(DEPENDENCIES)
