"""The acting half of the workflow: plan, capture evidence, commit and sync through the ports.

Each method takes the persisted incident and returns the next version; the service saves it.
Blocking git work runs in a thread so the webhook keeps answering in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

from rollbackbot import forensics
from rollbackbot.adapters.http_fetch import fetch_capped
from rollbackbot.clock import Clock
from rollbackbot.core.incidents import Incident, IncidentState
from rollbackbot.core.model import ResolvedTarget, RollbackRequest, plan_from_dict, target_from_dict
from rollbackbot.core.policy import Policy
from rollbackbot.errors import AdapterError, ConflictError, PermanentError, TransientError
from rollbackbot.failpoints import checkpoint
from rollbackbot.metrics import observe_call
from rollbackbot.ports import ArgoCD, EvidenceSink, GitOpsRepo

log = logging.getLogger("rollbackbot.steps")
T = TypeVar("T")
S = IncidentState

COMMIT_ATTEMPTS = 3
COMMIT_BACKOFF_SECONDS = 1.0


async def _timed(operation: str, call: Awaitable[T]) -> T:
    started = time.monotonic()
    ok = False
    reachable: bool | None = None  # unknown after an unexpected error: it says nothing about the remote
    try:
        result = await call
        ok = reachable = True
        return result
    except AdapterError as exc:
        reachable = not isinstance(exc, TransientError)  # the git adapter raises TransientError for the network
        raise
    finally:
        observe_call("git", operation, time.monotonic() - started, ok, reachable=reachable)


class Steps:
    def __init__(
        self,
        *,
        git: GitOpsRepo,
        argocd: ArgoCD,
        clock: Clock,
        evidence: EvidenceSink | None,
        fetch: forensics.Fetch = fetch_capped,
    ) -> None:
        self.fetch = fetch
        self.git = git
        self.argocd = argocd
        self.clock = clock
        self.evidence = evidence

    async def plan(self, incident: Incident, target: ResolvedTarget) -> Incident:
        """Find current and target release and record the plan (the state does not change)."""
        try:
            plan = await _timed("plan", asyncio.to_thread(self.git.plan, target))
        except PermanentError as exc:  # a TransientError goes up: the service retries it within the budget
            return incident.with_state(S.failed, self.clock.now(), f"planning failed: {exc}")
        now = self.clock.now()
        incident = incident.with_plan(plan)
        current = plan.current.name if plan.current else f"untagged@{plan.head[:12]}"
        target_name = plan.target.name if plan.target else "none"
        detail = f"plan: current {current}, target {target_name}"
        if plan.skipped:
            detail += "; skipped " + "; ".join(f"{s.name}: {s.reason}" for s in plan.skipped)
        return incident.with_event(now, detail)

    async def capture_evidence(self, incident: Incident, policy: Policy) -> Incident:
        """Before anything changes: the forensic bundle, recorded on the incident."""
        now = self.clock.now()
        if self.evidence is None:
            return incident.with_evidence("", ("no evidence sink configured",)).with_event(now, "evidence: none")
        evidence = await forensics.capture(incident, policy, self.argocd, self.evidence, self.fetch)
        detail = f"evidence captured: {evidence.url}" if evidence.url else "evidence NOT captured"
        if evidence.missing:
            detail += f" (missing: {'; '.join(evidence.missing)})"
        # An empty URL records that capture was attempted, so a resume does not capture again.
        return incident.with_evidence(evidence.url or "", tuple(evidence.missing)).with_event(self.clock.now(), detail)

    async def commit(self, incident: Incident) -> Incident:
        """Write and push the rollback commit, exactly once per incident."""
        request = RollbackRequest(
            incident_id=incident.id,
            target=target_from_dict(incident.target),
            plan=plan_from_dict(incident.plan),
            alert_ref=incident.alert.trailer,
            evidence_url=incident.evidence_url or None,
            approved_by=incident.approved_by,
        )
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                result = await _timed("commit_rollback", asyncio.to_thread(self.git.commit_rollback, request))
                break
            except ConflictError as exc:
                return incident.with_state(S.failed, self.clock.now(), f"conflict, not overriding a human: {exc}")
            except PermanentError as exc:
                return incident.with_state(S.failed, self.clock.now(), f"rollback commit failed: {exc}")
            except TransientError as exc:
                if attempt == COMMIT_ATTEMPTS:
                    raise  # the service retries it within the incident's retry budget
                log.warning("rollback commit failed, retrying", extra={"attempt": attempt, "error": str(exc)})
                await asyncio.sleep(COMMIT_BACKOFF_SECONDS * attempt)
        checkpoint("after_push")
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
                checkpoint("during_sync")
                await self.argocd.wait_synced_healthy(app, target.project, revision, timeout)
        except PermanentError as exc:  # a TransientError goes up: the service retries it within the budget
            return incident.with_state(S.failed, self.clock.now(), f"Argo CD: {exc}")
        elapsed = self.clock.monotonic() - started
        apps = ", ".join(target.apps)
        detail = f"{apps} Synced and Healthy at {revision[:12]} after {elapsed:.1f}s"
        return incident.with_state(S.rolled_back, self.clock.now(), detail)
