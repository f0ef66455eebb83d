"""Prometheus metrics of the Slack integration (served with the rest at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from rollbackbot.metrics import REGISTRY

SLACK_CALLS = Counter(
    "rollbackbot_slack_api_calls_total",
    "Slack Web API calls by method and outcome (ok, rate_limited, transient, error)",
    ["method", "outcome"],
    registry=REGISTRY,
)
SLACK_UNDELIVERED = Counter(
    "rollbackbot_slack_messages_undelivered_total",
    "Messages other than proposals given up on after their retries, by kind",
    ["kind"],
    registry=REGISTRY,
)
SLACK_PROPOSAL_FAILURES = Counter(
    "rollbackbot_slack_proposal_post_failures_total",
    "Failed attempts to post a proposal; each one is retried until posted or decided",
    registry=REGISTRY,
)
SLACK_PROPOSALS_PENDING = Gauge(
    "rollbackbot_slack_proposals_pending",
    "Proposals not yet posted to Slack and being retried",
    registry=REGISTRY,
)
SLACK_ACTIONS = Counter(
    "rollbackbot_slack_actions_total",
    "Approve/Reject clicks by action and outcome (acted, already_decided, not_allowed, unknown_incident, invalid)",
    ["action", "outcome"],
    registry=REGISTRY,
)
