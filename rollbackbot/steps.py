"""The acting half of the workflow: plan, capture evidence, commit and sync through the ports.

Each method takes the persisted incident and returns the next version; the service saves it.
Blocking git work runs in a thread so the webhook keeps answering in milliseconds.

Argo CD in a moving world:

* Planning also reads each target Application once (``GET ?project=``): a rejected token (401/403),
  a missing application or a project mismatch fails the incident before anything is committed.
  An Argo CD that does not answer at all does not block the rollback (the commit still deploys
  with auto-sync); the plan event says the pre-check was skipped.
* Before every (re-)sync, also after a restart in ``syncing``, the deploy branch must still contain
  the rollback commit with the app's paths unchanged since; otherwise nothing is synced.
* Synced and Healthy at the rollback commit or at a descendant with the app's paths unchanged is
  success. When a later commit changed those paths, the incident ends ``failed`` with the reason
  ``superseded by <sha> (<subject>)``: ``rolled_back`` is never claimed for someone else's change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

from rollbackbot import forensics
from rollbackbot.adapters.http_fetch import fetch_capped
from rollbackbot.canary import CanaryRollout
from rollbackbot.clock import Clock
from rollbackbot.core.argo_status import Lineage, LineageLookup, application_problems, branch_problem, short_sha
from rollbackbot.core.incidents import Incident, IncidentState
from rollbackbot.core.model import AppHealth, ResolvedTarget, RollbackRequest, plan_from_dict, target_from_dict
from rollbackbot.core.policy import Policy
from rollbackbot.errors import AdapterError, ConflictError, PermanentError, Superseded, TransientError
from rollbackbot.failpoints import checkpoint
from rollbackbot.metrics import observe_call
from rollbackbot.ports import ArgoCD, EvidenceSink, GitOpsRepo

log = logging.getLogger("rollbackbot.steps")
T = TypeVar("T")
S = IncidentState

COMMIT_ATTEMPTS = 3
COMMIT_BACKOFF_SECONDS = 1.0
PRECHECK_TIMEOUT_SECONDS = 10.0  # an Argo CD that does not answer must not delay the rollback commit long


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
        canary: CanaryRollout | None = None,
    ) -> None:
        self.fetch = fetch
        self.canary = canary
        self.git = git
        self.argocd = argocd
        self.clock = clock
        self.evidence = evidence

    async def plan(self, incident: Incident, target: ResolvedTarget) -> Incident:
        """Find current and target release and record the plan (the state does not change).

        The Argo CD pre-check runs while git plans: neither needs the other.
        """
        precheck = asyncio.ensure_future(self._argocd_precheck(target))
        try:
            plan = await _timed("plan", asyncio.to_thread(self.git.plan, target))
        except BaseException as exc:
            precheck.cancel()
            if isinstance(exc, PermanentError):  # a TransientError goes up: the service retries it within the budget
                return incident.with_state(S.failed, self.clock.now(), f"planning failed: {exc}")
            raise
        problem, skipped = await precheck
        now = self.clock.now()
        incident = incident.with_plan(plan)
        current = plan.current.name if plan.current else f"untagged@{plan.head[:12]}"
        target_name = plan.target.name if plan.target else "none"
        detail = f"plan: current {current}, target {target_name}"
        if plan.skipped:
            detail += "; skipped " + "; ".join(f"{s.name}: {s.reason}" for s in plan.skipped)
        if skipped:
            detail += f"; Argo CD pre-check skipped: {skipped}"
        incident = incident.with_event(now, detail)
        if problem:
            return incident.with_state(
                S.failed, self.clock.now(), f"Argo CD pre-check failed, nothing committed: {problem}"
            )
        return incident

    async def plan_gathering(
        self, incident: Incident, target: ResolvedTarget, policy: Policy
    ) -> tuple[Incident, forensics.Gathered | None]:
        """``plan``, while the evidence is gathered from Argo CD and the model server (issue: reaction time).

        Evidence reads nothing git writes, so it need not wait for the plan; the bundle is written
        (with the plan in it) only by ``record_evidence``, once the caller knows the rollback goes on.
        """
        if self.evidence is None or incident.evidence_url is not None:
            return await self.plan(incident, target), None
        gathering = asyncio.ensure_future(forensics.gather_bundle(incident, policy, self.argocd, self.fetch))
        try:
            planned = await self.plan(incident, target)
        except BaseException:
            gathering.cancel()
            raise
        if planned.state is S.failed:
            gathering.cancel()
            return planned, None
        return planned, await gathering

    async def record_evidence(self, incident: Incident, gathered: forensics.Gathered) -> Incident:
        """Write a bundle gathered while planning (``plan_gathering``) and record it on the incident."""
        assert self.evidence is not None  # gathered only with a sink
        return self._recorded(incident, await forensics.write_bundle(gathered, incident, self.evidence))

    async def _argocd_precheck(self, target: ResolvedTarget) -> tuple[str | None, str | None]:
        """One GET per target app: (why it cannot be synced, or None; why a check was skipped, or None).

        401/403/404 and a wrong project are final; an Argo CD that does not answer only skips the check.
        """
        skipped: list[str] = []
        for app in target.apps:
            try:
                data = await asyncio.wait_for(
                    self.argocd.get_application(app, target.project), timeout=PRECHECK_TIMEOUT_SECONDS
                )
                problems = application_problems(data, app, target.project)
            except PermanentError as exc:
                return f"{app}: {exc}", None
            except (TransientError, TimeoutError, ValueError) as exc:
                reason = str(exc) or f"no answer within {PRECHECK_TIMEOUT_SECONDS:g}s"
                log.warning("Argo CD pre-check skipped", extra={"app": app, "error": reason})
                skipped.append(f"{app}: {reason}")
                continue
            if problems:
                return f"{app}: {'; '.join(problems)}", None
        return None, "; ".join(skipped) or None

    async def capture_evidence(self, incident: Incident, policy: Policy) -> Incident:
        """Before anything changes: the forensic bundle, recorded on the incident."""
        now = self.clock.now()
        if self.evidence is None:
            return incident.with_evidence("", ("no evidence sink configured",)).with_event(now, "evidence: none")
        return self._recorded(
            incident, await forensics.capture(incident, policy, self.argocd, self.evidence, self.fetch)
        )

    def _recorded(self, incident: Incident, evidence: forensics.Evidence) -> Incident:
        detail = f"evidence captured: {evidence.url}" if evidence.url else "evidence NOT captured"
        if evidence.missing:
            detail += f" (missing: {'; '.join(evidence.missing)})"
        # An empty URL records that capture was attempted, so a resume does not capture again.
        recorded = incident.with_evidence(evidence.url or "", tuple(evidence.missing), evidence.trigger)
        return recorded.with_event(self.clock.now(), detail)

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
        if result.replanned is not None:  # another rollback changed our paths since the plan: record what was written
            incident = incident.with_plan(result.replanned)
            detail += f" (re-planned on {result.replanned.head[:12]} after another rollback)"
        if result.already_done:
            detail = f"commit {result.commit[:12]} was already on {request.plan.branch}; resuming at sync"
        return incident.with_commit(result.commit).with_state(S.syncing, self.clock.now(), detail)

    async def sync(self, incident: Incident, policy: Policy) -> Incident:
        """Refresh and sync every app of the target in order; all must end Synced and Healthy.

        First, also when resuming after downtime, the branch must still hold our commit with the app's
        paths unchanged; a later change to them ends the incident as superseded, never synced over.
        """
        target = target_from_dict(incident.target)
        revision = incident.rollback_commit
        assert revision is not None
        problem = await self._branch_problem(revision, target.paths)
        if problem:
            return incident.with_state(S.failed, self.clock.now(), problem)
        lineage = self._lineage_lookup(revision, target.paths)
        timeout = policy.spec.sync.timeout.total_seconds()
        started = self.clock.monotonic()
        healths: list[AppHealth] = []
        try:
            for app in target.apps:
                await self.argocd.refresh(app, target.project)
                await self.argocd.sync(app, target.project, revision, policy.spec.sync.prune, lineage=lineage)
                checkpoint("during_sync")
                health = await self.argocd.wait_synced_healthy(app, target.project, revision, timeout, lineage=lineage)
                healths.append(health)
        except Superseded as exc:
            return incident.with_state(S.failed, self.clock.now(), str(exc))
        except PermanentError as exc:  # a TransientError goes up: the service retries it within the budget
            return incident.with_state(S.failed, self.clock.now(), f"Argo CD: {exc}")
        elapsed = self.clock.monotonic() - started
        apps = ", ".join(target.apps)
        detail = f"{apps} Synced and Healthy at {revision[:12]} after {elapsed:.1f}s"
        later = sorted({h.revision for h in healths if h.revision and h.revision.lower() != revision.lower()})
        if later:
            detail += f" (Argo CD now at {', '.join(short_sha(r) for r in later)}, which keeps the app's paths)"
        return incident.with_state(S.rolled_back, self.clock.now(), detail)

    async def _branch_problem(self, revision: str, paths: tuple[str, ...]) -> str | None:
        """Why syncing ``revision`` now would be wrong (superseded, branch rewritten), or None."""
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                head = await _timed("lineage", asyncio.to_thread(self.git.lineage, revision, paths))
                return branch_problem(head, revision)
            except PermanentError as exc:
                return f"cannot confirm the deploy branch still holds {revision[:12]}: {exc}"
            except TransientError as exc:
                if attempt == COMMIT_ATTEMPTS:
                    return f"cannot confirm the deploy branch still holds {revision[:12]}; not syncing: {exc}"
                log.warning("branch check failed, retrying", extra={"attempt": attempt, "error": str(exc)})
                await asyncio.sleep(COMMIT_BACKOFF_SECONDS * attempt)
        return None  # unreachable: the last attempt returns

    def _lineage_lookup(self, revision: str, paths: tuple[str, ...]) -> LineageLookup:
        async def lookup(seen: str) -> Lineage:
            return await _timed("lineage", asyncio.to_thread(self.git.lineage, revision, paths, seen))

        return lookup
