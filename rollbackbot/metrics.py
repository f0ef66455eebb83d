"""Prometheus metrics of the service (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

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
