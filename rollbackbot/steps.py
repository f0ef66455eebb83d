"""The acting half of the service: plan, commit and sync one incident through the ports.

Each method takes the persisted incident and returns the next one; the service saves it.
Blocking git work runs in a thread so the webhook keeps answering in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging

from rollbackbot import forensics
from rollbackbot.clock import Clock
from rollbackbot.core.decide import Action, Decision, Mode, Rules, decide_with_plan
from rollbackbot.core.incidents import Incident, IncidentState
from rollbackbot.core.model import ResolvedTarget, RollbackRequest, plan_from_dict, target_from_dict
from rollbackbot.core.policy import Policy
from rollbackbot.errors import AdapterError, ConflictError, PermanentError, TransientError
from rollbackbot.ports import ArgoCD, EvidenceSink, GitOpsRepo

log = logging.getLogger("rollbackbot.steps")
S = IncidentState

COMMIT_ATTEMPTS = 3
COMMIT_BACKOFF_SECONDS = 1.0


def rules_of(policy: Policy) -> Rules:
    """The decision rules a policy carries."""
    spec = policy.spec
    return Rules(
        mode=Mode(spec.mode.value),
        debounce=spec.debounce,
        cooldown=spec.cooldown,
        budget_max=spec.budget.max,
        budget_per=spec.budget.per,
    )


class Steps:
    def __init__(self, *, git: GitOpsRepo, argocd: ArgoCD, clock: Clock, evidence: EvidenceSink | None) -> None:
        self.git = git
        self.argocd = argocd
        self.clock = clock
        self.evidence = evidence

    async def capture_evidence(self, incident: Incident, policy: Policy) -> Incident:
        """Before anything changes: the forensic bundle, recorded on the incident."""
        if self.evidence is None or incident.evidence_url is not None:
            return incident
        budget = policy.spec.forensics.budget.total_seconds() if policy.spec.forensics else 10.0
        evidence = await forensics.capture(incident, self.argocd, self.evidence, budget)
        detail = f"evidence captured: {evidence.url}"
        if evidence.missing:
            detail += f" (missing: {'; '.join(evidence.missing)})"
        # An empty URL records that capture was attempted, so a resume does not capture again.
        return incident.with_evidence(evidence.url or "").with_event(self.clock.now(), detail)

    async def plan(self, incident: Incident, target: ResolvedTarget, decision: Decision) -> Incident:
        """Find current and target release; move to rolling_back, awaiting_approval or suppressed."""
        try:
            plan = await asyncio.to_thread(self.git.plan, target)
        except AdapterError as exc:
            return incident.with_state(S.failed, self.clock.now(), f"planning failed: {exc}")
        decision = decide_with_plan(decision, plan)
        now = self.clock.now()
        incident = incident.with_plan(plan)
        skipped = "; ".join(f"{s.name}: {s.reason}" for s in plan.skipped)
        if skipped:
            incident = incident.with_event(now, f"skipped {skipped}")
        if decision.action is Action.suppress:
            return incident.with_state(S.suppressed, now, decision.reason)
        current = plan.current.name if plan.current else f"untagged@{plan.head[:12]}"
        assert plan.target is not None
        summary = f"{current} -> {plan.target.name} ({decision.reason})"
        if decision.action is Action.propose:
            return incident.with_state(S.awaiting_approval, now, summary)
        return incident.with_state(S.rolling_back, now, summary)

    async def commit(self, incident: Incident) -> Incident:
        """Write and push the rollback commit, exactly once per incident."""
        target = target_from_dict(incident.target)
        request = RollbackRequest(
            incident_id=incident.id,
            target=target,
            plan=plan_from_dict(incident.plan),
            alert_ref=incident.alert.trailer,
            evidence_url=incident.evidence_url or None,
            approved_by=incident.approved_by,
        )
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                result = await asyncio.to_thread(self.git.commit_rollback, request)
                break
            except ConflictError as exc:
                return incident.with_state(S.failed, self.clock.now(), f"conflict, not overriding a human: {exc}")
            except PermanentError as exc:
                return incident.with_state(S.failed, self.clock.now(), f"rollback commit failed: {exc}")
            except TransientError as exc:
                if attempt == COMMIT_ATTEMPTS:
                    return incident.with_state(
                        S.failed, self.clock.now(), f"rollback commit failed after {attempt} attempts: {exc}"
                    )
                log.warning("rollback commit attempt failed, retrying", extra={"attempt": attempt, "error": str(exc)})
                await asyncio.sleep(COMMIT_BACKOFF_SECONDS * attempt)
        detail = f"commit {result.commit[:12]} pushed to {request.plan.branch}"
        if result.already_done:
            detail = f"commit {result.commit[:12]} was already on {request.plan.branch}; resuming at sync"
        return incident.with_commit(result.commit).with_state(S.syncing, self.clock.now(), detail)

    async def sync(self, incident: Incident, policy: Policy) -> Incident:
        """Refresh and sync every app of the target in order; all must end Synced and Healthy."""
        target = target_from_dict(incident.target)
        revision = incident.rollback_commit
        assert revision is not None
        timeout = policy.spec.sync.timeout.total_seconds()
        started = self.clock.monotonic()
        try:
            for app in target.apps:
                await self.argocd.refresh(app, target.project)
                await self.argocd.sync(app, target.project, revision, policy.spec.sync.prune)
                await self.argocd.wait_synced_healthy(app, target.project, revision, timeout)
        except AdapterError as exc:
            return incident.with_state(S.failed, self.clock.now(), f"Argo CD: {exc}")
        elapsed = self.clock.monotonic() - started
        apps = ", ".join(target.apps)
        return incident.with_state(
            S.rolled_back,
            self.clock.now(),
            f"{apps} Synced and Healthy at {revision[:12]} after {elapsed:.1f}s",
        )
