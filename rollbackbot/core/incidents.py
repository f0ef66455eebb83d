"""Incidents: one per (app, alert fingerprint, startsAt), with named states and their events.

Purely computational: records are immutable and updated through ``with_*`` methods that return
new records, so the service can persist each step before acting on the next.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from rollbackbot.core.model import RollbackPlan, plan_to_dict
from rollbackbot.core.policy import Policy


class IncidentState(StrEnum):
    """The states of docs/incidents.md; API, metrics and messages use these words."""

    received = "received"
    suppressed = "suppressed"
    awaiting_approval = "awaiting_approval"
    approved = "approved"
    rejected = "rejected"
    expired = "expired"
    rolling_back = "rolling_back"
    syncing = "syncing"
    rolled_back = "rolled_back"
    failed = "failed"
    notified = "notified"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        IncidentState.suppressed,
        IncidentState.rejected,
        IncidentState.expired,
        IncidentState.rolled_back,
        IncidentState.failed,
        IncidentState.notified,
    }
)

S = IncidentState
ALLOWED_TRANSITIONS: dict[IncidentState, frozenset[IncidentState]] = {
    S.received: frozenset({S.suppressed, S.awaiting_approval, S.rolling_back, S.notified, S.failed}),
    S.awaiting_approval: frozenset({S.approved, S.rejected, S.expired, S.failed}),
    S.approved: frozenset({S.rolling_back, S.failed}),
    S.rolling_back: frozenset({S.syncing, S.failed, S.awaiting_approval}),  # awaiting: a held canary rollback
    S.syncing: frozenset({S.rolled_back, S.failed}),
}


class InvalidTransition(ValueError):
    """A state change the state machine does not allow."""


@dataclass(frozen=True)
class Event:
    """One step in an incident's life."""

    at: datetime
    state: IncidentState
    detail: str = ""
    # Noted from outside the incident's own steps (a resolution, a duplicate alert, a click): the store
    # keeps these in an insert-only table, so a step's save can never overwrite one.
    appended: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class AlertRef:
    """The alert that opened the incident."""

    name: str
    fingerprint: str
    starts_at: datetime
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    generator_url: str = ""

    @property
    def trailer(self) -> str:
        """``alertname/fingerprint`` as written in the Rollback-Alert trailer."""
        return f"{self.name}/{self.fingerprint}"


@dataclass(frozen=True)
class TagRef:
    tag: str | None = None
    revision: str | None = None


@dataclass(frozen=True)
class Incident:
    """Everything known about one incident; the store persists it whole."""

    id: str
    app: str
    policy: str
    mode: str
    state: IncidentState
    alert: AlertRef
    created_at: datetime
    target: dict[str, Any] = field(default_factory=dict)  # ResolvedTarget fields, for resuming
    from_ref: TagRef = TagRef()
    to_ref: TagRef = TagRef()
    rollback_commit: str | None = None
    evidence_url: str | None = None
    approved_by: str | None = None
    reason: str = ""
    not_before: datetime | None = None  # next look: end of debounce, or the approval deadline
    resolved_at: datetime | None = None  # when Alertmanager said the alert resolved
    plan: dict[str, Any] = field(default_factory=dict)  # the RollbackPlan acted on (plan_to_dict)
    evidence_missing: tuple[str, ...] = ()  # what the forensic capture could not gather
    trigger: dict[str, Any] = field(default_factory=dict)  # top flagged payload (core.trigger.top_payload)
    verify_by: datetime | None = None  # after rolled_back: the alert must resolve before this time
    verification: str = ""  # "", "cleared", "still firing"
    events: tuple[Event, ...] = ()
    # The store's row version when this was read: saving compares it (not part of the record).
    version: int = field(default=0, compare=False)
    # The policy document as it was when the incident opened (with_policy()): the workflow acts on
    # this, so reloading, editing or removing the policy file never changes or fails an incident in flight.
    policy_document: dict[str, Any] = field(default_factory=dict)
    # Pull-request mode: forge, repository, branch, number, url, head_sha, base, deadline (ISO), merge_commit.
    pull_request: dict[str, Any] = field(default_factory=dict)

    def with_state(self, state: IncidentState, at: datetime, detail: str = "") -> Incident:
        """Move to ``state`` (checked against the state machine) and record the event."""
        if state not in ALLOWED_TRANSITIONS.get(self.state, frozenset()):
            raise InvalidTransition(f"{self.id}: {self.state} -> {state} is not allowed")
        reason = detail if state.terminal else self.reason
        return replace(self, state=state, reason=reason, events=(*self.events, Event(at, state, detail)))

    def with_event(self, at: datetime, detail: str) -> Incident:
        """Record something that happened without changing state."""
        return replace(self, events=(*self.events, Event(at, self.state, detail)))

    def with_plan(self, plan: RollbackPlan) -> Incident:
        """Record the plan: from (current tag, head) and to (target tag, its commit)."""
        from_ref = TagRef(plan.current.name if plan.current else None, plan.head)
        to_ref = TagRef(plan.target.name, plan.target.commit) if plan.target else TagRef()
        return replace(self, from_ref=from_ref, to_ref=to_ref, plan=plan_to_dict(plan))

    def with_verification(self, verify_by: datetime | None, verification: str) -> Incident:
        return replace(self, verify_by=verify_by, verification=verification)

    def with_resolved(self, at: datetime) -> Incident:
        return replace(self, resolved_at=at, events=(*self.events, Event(at, self.state, "alert resolved")))

    def with_commit(self, commit: str) -> Incident:
        return replace(self, rollback_commit=commit)

    def with_evidence(self, url: str, missing: tuple[str, ...] = (), trigger: dict[str, Any] | None = None) -> Incident:
        """Record the bundle ("" when none could be written), what it lacks and the payload that triggered it."""
        return replace(self, evidence_url=url, evidence_missing=missing, trigger=dict(trigger or {}))

    def with_pull_request(self, **fields: Any) -> Incident:
        """Record (or update) what is known about the incident's pull request."""
        return replace(self, pull_request={**self.pull_request, **fields})

    def with_approver(self, approved_by: str) -> Incident:
        return replace(self, approved_by=approved_by)

    def with_not_before(self, at: datetime | None) -> Incident:
        return replace(self, not_before=at)

    def with_policy(self, policy: Policy) -> Incident:
        """Store the policy the incident acts on, whatever later happens to its file (``incident_policy``)."""
        return replace(self, policy=policy.name, policy_document=policy_to_document(policy))


def incident_id(app: str, fingerprint: str, starts_at: datetime) -> str:
    """Deterministic id, so a re-delivered alert maps to the same incident on every replica."""
    key = f"{app}\x00{fingerprint}\x00{starts_at.isoformat()}"
    return "inc-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def new_incident(
    *, app: str, policy: str, mode: str, alert: AlertRef, target: dict[str, Any], now: datetime
) -> Incident:
    """A freshly received incident with its first event."""
    return Incident(
        id=incident_id(app, alert.fingerprint, alert.starts_at),
        app=app,
        policy=policy,
        mode=mode,
        state=IncidentState.received,
        alert=alert,
        created_at=now,
        target=target,
        events=(Event(now, IncidentState.received, f"alert {alert.name} fired at {alert.starts_at:%H:%M:%S}Z"),),
    )


def policy_to_document(policy: Policy) -> dict[str, Any]:
    """The policy as plain JSON (the YAML keys), to be stored with an incident."""
    document: dict[str, Any] = policy.model_dump(mode="json")  # by alias: the policy models serialise so
    return document


def incident_policy(incident: Incident, loaded: Mapping[str, Policy]) -> Policy | None:
    """The policy the incident acts on: the one stored with it, else (older records) the loaded one by name."""
    if incident.policy_document:
        canonical = json.dumps(
            incident.policy_document,
            sort_keys=True,  # pragma: no mutate (the cache key only: any key order validates to the same policy)
        )
        stored = _stored_policy(canonical)
        if stored is not None:
            return stored
    return loaded.get(incident.policy)


@functools.lru_cache(maxsize=256)  # validated once per distinct document: every step asks for it
def _stored_policy(canonical: str) -> Policy | None:
    try:
        return Policy.from_document(json.loads(canonical), source="(stored with the incident)")
    except ValidationError:
        # Written by a version with other policy fields: fall back to the loaded policy of that name.
        return None
