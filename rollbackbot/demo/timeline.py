"""The live loop's timeline: milestones seen from outside, each at the time it happened.

Times are monotonic seconds, printed relative to the first attack request. Incident milestones
come from the incident's own event times (rollbackbot writes them with the same system clock),
so polling the API every 0.1 s does not blur them; Prometheus, the observer and the model are
polled every 0.1 s, which bounds the error of those marks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FIRST_ATTACK = "first attack request"
FLAGGED = "first flagged request (observer)"
FIRING = "alert firing (Prometheus)"
WEBHOOK = "webhook received (incident created)"
COMMIT = "rollback commit pushed"
ROLLED_BACK = "Argo CD Synced+Healthy (incident rolled_back)"
SERVING = "safe release serving (model)"
LEAK_STOPPED = "leak stopped (injection refused, no canary/PII)"
RESOLVED = "alert resolved (Prometheus)"
VERIFIED = "incident verified (alert resolved)"
# The chain the issue names, in the order it must happen (the e2e test asserts it).
CHAIN = (FIRST_ATTACK, FLAGGED, FIRING, WEBHOOK, COMMIT, SERVING, LEAK_STOPPED, RESOLVED, VERIFIED)

_INCIDENT_EVENTS = {"received": WEBHOOK, "syncing": COMMIT, "rolled_back": ROLLED_BACK}


@dataclass
class Timeline:
    """Monotonic times of the loop's milestones; printed relative to the first attack request."""

    marks: dict[str, float] = field(default_factory=dict)
    # monotonic = wall clock - offset: turns the incident's event times into this timeline's
    wall_offset: float = field(default_factory=lambda: time.time() - time.monotonic())

    def mark(self, name: str, at: float | None = None) -> None:
        """Record ``name`` the first time it happens."""
        self.marks.setdefault(name, time.monotonic() if at is None else at)

    def mark_wall(self, name: str, iso: str) -> None:
        """Record ``name`` at a wall-clock ISO time (an incident event)."""
        self.mark(name, datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() - self.wall_offset)

    def mark_incident(self, incident: dict[str, Any]) -> None:
        """The incident's milestones at the times its events say."""
        for event in incident.get("events") or []:
            name = _INCIDENT_EVENTS.get(event["state"])
            if name and event["detail"] != "alert resolved":
                self.mark_wall(name, event["at"])
            if event["detail"].startswith("verified:"):
                self.mark_wall(VERIFIED, event["at"])

    def mark_alerts(self, states: dict[str, tuple[str, float]]) -> None:
        """Prometheus alerts by name, (state, unix time it entered it): each one's pending and firing,
        the first to fire, and that one's resolution (seen when Prometheus stops listing it)."""
        for name, (state, at) in states.items():
            self.mark(f"{name} {state} (Prometheus)", at - self.wall_offset)
        fired = self.first_fired()
        firing = sorted((at, name) for name, (state, at) in states.items() if state == "firing")
        if fired is None and firing:
            at, name = firing[0]
            self.mark(f"{FIRING}: {name}", at - self.wall_offset)
            self.mark(FIRING, at - self.wall_offset)
        elif fired is not None and fired not in states:
            self.mark(RESOLVED)

    def mark_alert_samples(self, series: list[dict[str, Any]], evaluation: float) -> None:
        """Alert marks from Prometheus' ALERTS samples (one per evaluation while an alert is active).

        Pending and firing are the first sample of each state; the first alert to fire resolved at
        the evaluation after its last firing sample (the one that found the expression false), if
        the polling saw it gone.
        """
        first: dict[tuple[str, str], float] = {}
        last: dict[tuple[str, str], float] = {}
        for one in series:
            key = (one["metric"]["alertname"], one["metric"]["alertstate"])
            times = [float(at) for at, _value in one["values"]]
            first[key] = min(times + [first.get(key, float("inf"))])
            last[key] = max(times + [last.get(key, float("-inf"))])
        for (name, state), at in first.items():
            self.marks[f"{name} {state} (Prometheus)"] = at - self.wall_offset
        firing = sorted((at, name) for (name, state), at in first.items() if state == "firing")
        if not firing:
            return
        at, name = firing[0]
        for stale in [m for m in self.marks if m.startswith(FIRING)]:
            del self.marks[stale]
        self.marks[f"{FIRING}: {name}"] = self.marks[FIRING] = at - self.wall_offset
        if RESOLVED in self.marks:
            self.marks[RESOLVED] = last[(name, "firing")] + evaluation - self.wall_offset

    def first_fired(self) -> str | None:
        """The alert that fired first (the incident's trigger), once one has."""
        named = [m for m in self.marks if m.startswith(f"{FIRING}: ")]
        return named[0].removeprefix(f"{FIRING}: ") if named else None

    def relative(self) -> dict[str, float]:
        """Seconds from the first attack request, in the order things happened."""
        start = self.marks.get(FIRST_ATTACK, 0.0)
        return {name: round(at - start, 2) for name, at in sorted(self.marks.items(), key=lambda kv: kv[1])}


def breakdown(timeline: dict[str, float]) -> dict[str, float | None]:
    """The exposure window and the parts it is made of, from one relative timeline."""

    def between(a: str, b: str) -> float | None:
        return round(timeline[b] - timeline[a], 2) if a in timeline and b in timeline else None

    return {
        "exposure_seconds (first attack -> safe release serving)": timeline.get(SERVING),
        "detection_seconds (first attack -> firing: rule windows, for:, 1 s scrape/evaluation)": timeline.get(FIRING),
        "alertmanager_seconds (firing -> webhook: group_wait, delivery)": between(FIRING, WEBHOOK),
        "rollbackbot_seconds (webhook -> commit pushed: evidence, plan, signed-tag checks, push)": between(
            WEBHOOK, COMMIT
        ),
        "firing_to_commit_seconds": between(FIRING, COMMIT),
        "argocd_seconds (commit -> safe release serving: sync, health, model reload)": between(COMMIT, SERVING),
        "serving_to_resolved_seconds (rule windows draining)": between(SERVING, RESOLVED),
        "serving_to_verified_seconds (resolved -> Alertmanager group_interval -> rollbackbot)": between(
            SERVING, VERIFIED
        ),
    }


def chain_order(timeline: dict[str, float]) -> list[str]:
    """The issue's chain as it happened: milestones missing or out of order are named, else []."""
    problems = [f"missing: {name}" for name in CHAIN if name not in timeline]
    present = [name for name in CHAIN if name in timeline]
    problems += [f"{a} after {b}" for a, b in zip(present, present[1:], strict=False) if timeline[a] > timeline[b]]
    return problems
