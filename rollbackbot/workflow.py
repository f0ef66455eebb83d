"""Which step an incident takes next, by state: the flow of docs/architecture.md read top to bottom.

received → (debounce) → plan → evidence → rolling_back | awaiting_approval | suppressed | notified
awaiting_approval → approved | rejected (a human) | expired / approved (at the deadline)
approved → rolling_back → syncing → rolled_back (→ verification window, → shadow removal) | failed
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from rollbackbot.canary import canary_step, end_shadow_step
from rollbackbot.clock import Clock
from rollbackbot.core.decide import (
    Action,
    Decision,
    blocking_incident,
    clock_skew_seconds,
    decide,
    decide_with_plan,
    effective_start,
    rules_of,
)
from rollbackbot.core.incidents import Incident, IncidentState, incident_policy
from rollbackbot.core.model import plan_from_dict, target_from_dict
from rollbackbot.core.neighbours import Neighbour, acting_neighbour, look_again_at, waiting_reason
from rollbackbot.core.policy import OnTimeout, Policy
from rollbackbot.core.shadow import shadow_off_due
from rollbackbot.failpoints import checkpoint
from rollbackbot.ports import IncidentStore
from rollbackbot.prmode import PullRequestMode
from rollbackbot.steps import Steps

S = IncidentState
_ACTING = frozenset({S.approved, S.rolling_back, S.syncing})  # about to move, or moving, the deploy branch
DEFAULT_APPROVAL_TIMEOUT_SECONDS = 30 * 60


T = TypeVar("T")
StoreCall = Callable[..., Awaitable[Any]]


async def _on_the_loop(call: Callable[..., T], *args: Any) -> T:
    return call(*args)


class Workflow:
    def __init__(
        self,
        *,
        store: IncidentStore,
        steps: Steps,
        policies: Mapping[str, Policy],
        clock: Clock,
        pull_requests: PullRequestMode | None = None,
    ) -> None:
        self.pull_requests = pull_requests
        self.store = store
        self.steps = steps
        self.policies = policies
        self.clock = clock
        self.noted: Callable[[str, str], None] | None = None  # (incident id, detail) of a long step, as it happens
        self.store_call: StoreCall = _on_the_loop  # the service's: off the loop while webhooks arrive

    def wait_until(self, incident: Incident) -> datetime | None:
        """When the incident next needs a step; None when only a human (or nothing) can move it."""
        state = incident.state
        if state is S.rolled_back:
            due = [d for d in (self._verification_due(incident), self._shadow_due(incident)) if d is not None]
            return min(due, default=None)
        if state.terminal:
            return None
        if state in (S.received, S.awaiting_approval) and incident.not_before:
            return incident.not_before
        if state is S.awaiting_approval:
            return None
        return self.clock.now()

    async def step(self, incident: Incident) -> Incident:
        """One step; returns the next version of the incident for the service to save."""
        now = self.clock.now()
        policy = incident_policy(incident, self.policies)  # the one stored with it, so a reload cannot change it
        if policy is None:
            if incident.state.terminal:
                return incident
            return incident.with_state(S.failed, now, f"policy {incident.policy!r} is no longer loaded")
        if policy.spec.git.pull_request and not incident.state.terminal:
            if self.pull_requests is None:
                why = "policy says git.mode pull-request but no forge is configured (ROLLBACKBOT_FORGE_API_URL)"
                return incident.with_state(S.failed, now, why)
            if incident.state is S.awaiting_approval and incident.pull_request.get("number"):
                return await self.pull_requests.poll(incident, policy)
            if incident.state is S.rolling_back:
                return await self.pull_requests.merge(incident, policy)
        match incident.state:
            case S.received:
                return await self._received(incident, policy)
            case S.awaiting_approval:
                return self._approval_deadline(incident, policy)
            case S.approved:
                return incident.with_state(S.rolling_back, now, f"rolling back, approved by {incident.approved_by}")
            case S.rolling_back:
                if incident.evidence_url is None and incident.rollback_commit is None:
                    return await self.steps.capture_evidence(incident, policy)
                if policy.spec.traffic_router is not None and self.steps.canary is not None:
                    progress = self._progress(incident.id)
                    return await canary_step(self.steps.canary, incident, policy, self.clock, progress)
                return await self.steps.commit(incident)
            case S.syncing:
                done = await self.steps.sync(incident, policy)
                if done.state is S.rolled_back:
                    done = done.with_verification(now + policy.spec.verify.within, "")
                return done
            case S.rolled_back:
                shadow_due = self._shadow_due(incident)
                if shadow_due is not None and shadow_due <= now and self.steps.canary is not None:
                    progress = self._progress(incident.id)
                    return await end_shadow_step(self.steps.canary, incident, policy, self.clock, progress)
                if self._verification_due(incident) is None:
                    return incident
                return self._verify(incident)
        return incident

    def _progress(self, incident_id: str) -> Callable[[datetime, str], None]:
        """Persist an event of a long step (a canary) as it happens; the step's result saves them all again."""

        def progress(at: datetime, detail: str) -> None:
            append_event(self.store, incident_id, at, detail)
            if self.noted is not None:
                self.noted(incident_id, detail)

        return progress

    def _verification_due(self, incident: Incident) -> datetime | None:
        if not incident.verify_by or incident.verification:
            return None
        return self.clock.now() if incident.resolved_at else incident.verify_by

    def _shadow_due(self, incident: Incident) -> datetime | None:
        """When a live shadow of the incident must be removed (its ttl, or a person's request)."""
        policy = incident_policy(incident, self.policies)
        if policy is None or policy.spec.shadow is None:
            return None
        return shadow_off_due(incident.events, policy.spec.shadow.ttl)

    async def _received(self, incident: Incident, policy: Policy) -> Incident:
        now = self.clock.now()
        rules = rules_of(policy)
        skew = clock_skew_seconds(incident.alert.starts_at, incident.created_at)
        if skew is not None and not any(e.detail.startswith("clock skew:") for e in incident.events):
            # Recorded before deciding, so the record says why debounce counts from arrival.
            return incident.with_event(now, f"clock skew: startsAt is {skew:.0f}s in the future")
        history = await self.store_call(self.store.app_history, incident, now - rules.budget_per)
        decision = decide(
            rules,
            alert_firing=incident.resolved_at is None,
            alert_started=effective_start(incident.alert.starts_at, incident.created_at),
            now=now,
            history=history,
        )
        if decision.action is Action.wait:
            return incident.with_not_before(decision.not_before).with_event(now, decision.reason)
        if decision.action is Action.notify:
            return incident.with_state(S.notified, now, decision.reason)
        if decision.action is Action.suppress:
            active = blocking_incident(history, now)
            if active and decision.reason.startswith("duplicate"):
                self._attach(active, incident)
            elif history.last_rollback_incident and decision.reason.startswith("cooldown"):
                self._attach(history.last_rollback_incident, incident)
            return incident.with_state(S.suppressed, now, decision.reason)
        if not incident.plan:
            if (waiting := self._wait_for_neighbour(incident)) is not None:
                return waiting
            return await self._plan(incident, policy, decision)
        decision = decide_with_plan(decision, plan_from_dict(incident.plan))
        if decision.action is Action.suppress:
            return incident.with_state(S.suppressed, now, decision.reason)
        if incident.evidence_url is None:
            return await self.steps.capture_evidence(incident, policy)
        if decision.action is Action.rollback and incident.evidence_missing and policy.spec.forensics.required:
            decision = Decision(Action.propose, "evidence capture incomplete and the policy requires it")
        summary = f"{_from_tag(incident)} -> {incident.to_ref.tag} ({decision.reason})"
        if policy.spec.git.pull_request and self.pull_requests is not None:
            return await self.pull_requests.open(incident, policy, summary)
        if decision.action is Action.propose:
            timeout = policy.spec.approval.timeout.total_seconds() if policy.spec.approval else None
            deadline = now.timestamp() + (timeout or DEFAULT_APPROVAL_TIMEOUT_SECONDS)
            proposed = incident.with_state(S.awaiting_approval, now, summary)
            return proposed.with_not_before(datetime.fromtimestamp(deadline, now.tzinfo))
        return incident.with_state(S.rolling_back, now, summary)

    async def _plan(self, incident: Incident, policy: Policy, decision: Decision) -> Incident:
        """The plan, and the evidence gathered meanwhile: written in the same step when the rollback goes on."""
        target = target_from_dict(incident.target)
        if decision.action not in (Action.rollback, Action.propose):
            return await self.steps.plan(incident, target)
        planned, gathered = await self.steps.plan_gathering(incident, target, policy)
        if gathered is None:
            return planned
        if planned.state.terminal or decide_with_plan(decision, plan_from_dict(planned.plan)).action is Action.suppress:
            gathered.discard()  # nothing will be rolled back: no bundle
            return planned
        return await self.steps.record_evidence(planned, gathered)

    def _wait_for_neighbour(self, incident: Incident) -> Incident | None:
        """Defer planning while another app's incident rolls back paths this one shares (core/neighbours.py)."""
        others = (
            Neighbour(other.id, other.app, tuple(other.target.get("paths", ())), other.state in _ACTING)
            for other in self.store.unfinished()
            if other.id != incident.id
        )
        found = acting_neighbour(incident.app, target_from_dict(incident.target).paths, others)
        if found is None:
            return None
        now, reason = self.clock.now(), waiting_reason(*found)
        waiting = incident.with_not_before(look_again_at(now))
        if incident.events and incident.events[-1].detail == reason:
            return waiting  # still waiting for the same neighbour: one event says so, not one per look
        return waiting.with_event(now, reason)

    def _approval_deadline(self, incident: Incident, policy: Policy) -> Incident:
        now = self.clock.now()
        on_timeout = policy.spec.approval.on_timeout if policy.spec.approval else OnTimeout.expire
        if on_timeout is OnTimeout.rollback:
            approved = incident.with_approver("timeout (no decision)")
            return approved.with_state(S.approved, now, "approval timed out: rolling back as the policy says")
        return incident.with_state(S.expired, now, "approval timed out: nobody decided")

    def _verify(self, incident: Incident) -> Incident:
        now = self.clock.now()
        if incident.resolved_at is not None:
            return incident.with_verification(None, "cleared").with_event(now, "verified: the alert resolved")
        detail = "verification failed: the alert is still firing; the rollback did not remove the anomaly"
        return incident.with_verification(None, "still firing").with_event(now, detail)

    def _attach(self, active_id: str, duplicate: Incident) -> None:
        """One active incident per app: a further alert becomes an event on it."""
        detail = f"also fired: {duplicate.alert.name} ({duplicate.alert.fingerprint}), recorded as {duplicate.id}"
        append_event(self.store, active_id, self.clock.now(), detail)

    def saved(self, before: Incident, after: Incident) -> None:
        """Crash-test checkpoints, right after a step is persisted."""
        if after.plan and not before.plan:
            checkpoint("after_decision")
        if after.evidence_url is not None and before.evidence_url is None:
            checkpoint("after_evidence")


def append_event(store: IncidentStore, incident_id: str, at: datetime, detail: str) -> None:
    """Add an event without changing state: insert only, so it never races (or is lost to) a step's save."""
    store.append_event(incident_id, at, detail)


def _from_tag(incident: Incident) -> str:
    head = incident.from_ref.revision or ""
    return incident.from_ref.tag or f"untagged@{head[:12]}"
