"""Prometheus metrics of the service (served at /metrics).

Self-monitoring (manifests/monitoring/rollbackbot-rules.yml alerts on these):

- ``rollbackbot_incidents_overdue{state}``: non-terminal incidents past their deadline (see
  ``rollbackbot.core.overdue``), computed from the store at scrape time with an indexed query over
  non-terminal incidents only. Every non-terminal state is always reported, 0 when none is late.
- ``rollbackbot_dependency_up{dependency}``: 1 when the latest call to ``git`` or ``argocd``
  reached it, 0 when it did not (transport error, timeout, 5xx, or refused credentials). The bot
  only calls them while handling an incident, so the value is reported for
  ``DEPENDENCY_FRESH_SECONDS`` after the latest call and then disappears (unknown) instead of
  holding a stale verdict for ever.
- ``rollbackbot_webhook_responses_total{code}``: answers of the Alertmanager webhook by HTTP status
  code, including 500s from unexpected errors (``rollbackbot_webhook_requests_total{outcome}``
  counts only the answers the handler chose).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from rollbackbot.core.incidents import IncidentState
from rollbackbot.dependencies import DEPENDENCIES, error_in_flight

log = logging.getLogger("rollbackbot.metrics")

REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOK_REQUESTS = Counter(
    "rollbackbot_webhook_requests_total",
    "Alertmanager webhook requests by outcome",
    ["outcome"],
    registry=REGISTRY,
)
ALERTS_RECEIVED = Counter(
    "rollbackbot_alerts_total",
    "Alerts received by what became of them (new, duplicate, unmatched, resolved, unknown_app)",
    ["result"],
    registry=REGISTRY,
)
INCIDENT_TRANSITIONS = Counter(
    "rollbackbot_incident_transitions_total",
    "Incident state transitions by app and new state",
    ["app", "state"],
    registry=REGISTRY,
)
CANARY_WEIGHT = Gauge(
    "rollbackbot_canary_weight",
    "Percent of traffic a canary rollback has committed to each backend of the route (as flagger_canary_weight)",
    ["app", "backend"],
    registry=REGISTRY,
)
CANARY_ANALYSIS = Counter(
    "rollbackbot_canary_analysis_total",
    "Canary analysis runs by verdict (passed, failed, inconclusive: an empty result is never a pass)",
    ["app", "verdict"],
    registry=REGISTRY,
)
CANARY_HELD = Gauge(
    "rollbackbot_canary_held",
    "1 while a canary rollback of the app is held (traffic split, waiting for a person), else 0",
    ["app"],
    registry=REGISTRY,
)
CANARY_SHADOW = Gauge(
    "rollbackbot_canary_shadow",
    "1 while a sandbox of the app's compromised release receives mirrored traffic (shadow on), else 0",
    ["app"],
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
INCIDENTS_STALLED = Gauge(
    "rollbackbot_incidents_stalled",
    "Unfinished incidents that were due but had no worker at the last watchdog pass, "
    "plus those whose worker waits for the incident store to come back",
    registry=REGISTRY,
)
LEASE_RENEWALS = Counter(
    "rollbackbot_lease_renewals_total",
    "Incident leases this replica renewed (heartbeat)",
    registry=REGISTRY,
)
LEASE_TAKEOVERS = Counter(
    "rollbackbot_lease_takeovers_total",
    "Incidents this replica took over after another replica's lease expired",
    registry=REGISTRY,
)
LEASES_LOST = Counter(
    "rollbackbot_leases_lost_total",
    "Incident leases this replica lost (expired and taken, or a write refused by the fence)",
    registry=REGISTRY,
)

POLICY_RELOADS = Counter(
    "rollbackbot_policy_reload_total",
    "Policy reloads (SIGHUP or a changed policy directory) by result: success, or failure (old set kept)",
    ["result"],
    registry=REGISTRY,
)
POLICY_LAST_RELOAD_SUCCESS = Gauge(
    "rollbackbot_policy_last_reload_success_timestamp_seconds",
    "When the active policy set was loaded (at start or by the last successful reload), Unix time",
    registry=REGISTRY,
)


WEBHOOK_RESPONSES = Counter(
    "rollbackbot_webhook_responses_total",
    "Alertmanager webhook answers by HTTP status code (5xx: alerts not taken; 401: a wrong token)",
    ["code"],
    registry=REGISTRY,
)
WEBHOOK_PATH = "/webhook/alertmanager"
for _code in ("202", "401", "413", "422", "500"):
    WEBHOOK_RESPONSES.labels(_code)  # exported at 0 from the start, so the first error is an increase


_FROM_OUTCOME: Any = object()  # reachable not given: an ok call got through, a failed one did not


def observe_call(system: str, operation: str, seconds: float, ok: bool, reachable: bool | None = _FROM_OUTCOME) -> None:
    """Record one external call and its outcome on the dependency board (``/status``, ``rollbackbot_dependency_up``).

    ``reachable`` says whether the call got through to the system (a 404 did; a refused connection, a
    5xx or a refused token did not); ``None`` when the outcome says nothing about the system (an
    unexpected local error), which leaves the board as it was; omitted, it is ``ok``.
    """
    EXTERNAL_CALL_SECONDS.labels(system, operation).observe(seconds)
    if not ok:
        EXTERNAL_CALL_ERRORS.labels(system, operation).inc()
    if reachable is _FROM_OUTCOME:
        reachable = ok
    if reachable is True:
        DEPENDENCIES.succeeded(system)
    elif reachable is False:
        DEPENDENCIES.failed(system, error_in_flight(operation))


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


class OverdueGauge:
    """``rollbackbot_incidents_overdue{state}``: non-terminal incidents past their deadline, at scrape time."""

    def __init__(self) -> None:
        self.count: Callable[[], dict[str, int]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "rollbackbot_incidents_overdue",
            "Non-terminal incidents past their deadline (stuck), by state",
            labels=["state"],
        )
        if self.count is not None:
            try:
                counted = self.count()
            except Exception:  # the store is down: say nothing rather than fail the whole scrape
                log.warning("overdue incidents could not be counted", exc_info=True)
                yield family
                return
            for state in IncidentState:
                if not state.terminal:
                    family.add_metric([state.value], counted.get(state.value, 0))
        yield family


INCIDENTS_OVERDUE = OverdueGauge()
REGISTRY.register(INCIDENTS_OVERDUE)

REGISTRY.register(DEPENDENCIES)

INBOX_DRAINED = Counter(
    "rollbackbot_inbox_drained_total",
    "Inbox rows (accepted webhooks) decided into incidents and deleted",
    registry=REGISTRY,
)
INBOX_DRAIN_ERRORS = Counter(
    "rollbackbot_inbox_drain_errors_total",
    "Inbox drainer errors by kind: store (outage, retried), pass (other, retried), "
    "row (one row failed to decide), poison (a row kept aside after its last attempt)",
    ["kind"],
    registry=REGISTRY,
)
for _kind in ("store", "pass", "row", "poison"):
    INBOX_DRAIN_ERRORS.labels(_kind)
INBOX_GROUP_ROWS = Histogram(
    "rollbackbot_inbox_group_commit_rows",
    "Webhooks committed together by one inbox transaction (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)


class InboxGauge:
    """``rollbackbot_inbox_rows``, ``_oldest_age_seconds``, ``_poisoned_rows``: from the store at scrape time."""

    def __init__(self) -> None:
        self.depth: Callable[[], tuple[int, float, int]] | None = None  # (pending, oldest age s, poisoned)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = [
            GaugeMetricFamily("rollbackbot_inbox_rows", "Accepted webhooks not decided yet"),
            GaugeMetricFamily(
                "rollbackbot_inbox_oldest_age_seconds", "Age of the oldest accepted webhook not decided yet"
            ),
            GaugeMetricFamily("rollbackbot_inbox_poisoned_rows", "Inbox rows kept aside after failing every attempt"),
        ]
        if self.depth is not None:
            try:
                values = self.depth()
            except Exception:  # the store is down: say nothing rather than fail the whole scrape
                log.warning("inbox depth could not be read", exc_info=True)
                values = None
            for family, value in zip(families, values or (), strict=False):
                family.add_metric([], value)
        yield from families


INBOX = InboxGauge()
REGISTRY.register(INBOX)


class WebhookResponseMetrics:
    """ASGI middleware counting the webhook's answers by status code, a crash as 500."""

    def __init__(self, app: Any, path: str = WEBHOOK_PATH) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        answered: list[int] = []

        async def send_counting(message: Any) -> None:
            if message.get("type") == "http.response.start":
                answered.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        except Exception:
            if not answered:
                WEBHOOK_RESPONSES.labels("500").inc()
            raise
        if answered:
            WEBHOOK_RESPONSES.labels(str(answered[0])).inc()
