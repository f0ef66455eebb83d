"""Pull-request mode: the rollback commit as a pull request, merged on approval (docs/pull-request-mode.md).

The flow, each step persisted before the next (so a crash or a re-delivery never opens two pull requests
or merges twice):

1. ``open`` (state ``received``, plan and evidence done): push the rollback commit to
   ``rollbackbot/<app>/<incident-id>`` (kept when already there, else ``--force-with-lease``), record its
   head; then find-or-create the pull request for head → base and move to ``awaiting_approval``.
2. ``poll`` (``awaiting_approval``): read the pull request. Merged by a person → ``approved``; closed
   unmerged → ``rejected``; an approving review of the current head by an allowed approver (autoMerge
   ``afterApproval``) → ``approved``; otherwise look again after ``git.poll`` (a forge webhook on
   ``POST /forge/events`` makes it sooner). A Slack approval goes through ``Service.approve`` as before.
3. ``merge`` (``rolling_back``): already merged → take its merge commit; else merge with the recorded head
   SHA as precondition. 409 (someone pushed to the branch) ends ``failed``; 405 on a conflict with a
   moved base rebuilds the branch on the new base and merges that; 405 otherwise is retried. Then the
   incident syncs Argo CD to the merge commit like a direct rollback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from rollbackbot.clock import Clock
from rollbackbot.core.incidents import Incident, IncidentState
from rollbackbot.core.model import RollbackRequest, plan_from_dict, target_from_dict
from rollbackbot.core.policy import AutoMerge, GitDelivery, OnTimeout, Policy
from rollbackbot.core.pull_requests import (
    LABELS,
    Judgement,
    Progress,
    PullRequest,
    branch_name,
    github_signature_valid,
    gitlab_token_valid,
    incident_of_branch,
    judge,
    pull_request_text,
)
from rollbackbot.errors import AdapterError, ConflictError, HeadMoved, NotMergeable, PermanentError
from rollbackbot.failpoints import checkpoint
from rollbackbot.ports import Forge, IncidentStore, PullRequestBranches, StaleIncident

log = logging.getLogger("rollbackbot.prmode")
S = IncidentState
MAX_REBUILDS = 3  # rebuilding the branch on a moved base; past it a human looks


ForgeFor = Callable[[GitDelivery], Forge]  # the forge client for a policy's git block


class PullRequestMode:
    """Drives incidents whose policy says ``git.mode: pull-request``."""

    def __init__(self, *, git: PullRequestBranches, forges: ForgeFor, clock: Clock) -> None:
        self.git = git
        self.forges = forges
        self.clock = clock

    # ---- 1. open -------------------------------------------------------------------------------------

    async def open(self, incident: Incident, policy: Policy, summary: str) -> Incident:
        """Push the branch (first step), then find-or-create the pull request and wait for approval."""
        delivery, now = policy.spec.git, self.clock.now()
        if not incident.pull_request.get("head_sha"):
            return await self._push_branch(incident, delivery)
        pr = incident.pull_request
        forge = self.forges(delivery)
        pull = await forge.find_pull_request(pr["branch"], pr["base"])
        created = pull is None
        if pull is None:
            plan = plan_from_dict(incident.plan)
            title, body = pull_request_text(
                incident_id=incident.id,
                app=incident.app,
                policy=incident.policy,
                alert=incident.alert.trailer,
                plan=plan,
                evidence_url=incident.evidence_url or None,
            )
            pull = await forge.open_pull_request(pr["branch"], pr["base"], title, body)
        checkpoint("after_pull_request")
        notes = await self._decorate(forge, pull, delivery) if created else []
        verb = "opened" if created else "found (opened before)"
        detail = f"pull request #{pull.number} {verb}: {pull.url}; {summary}" + "".join(f"; {n}" for n in notes)
        deadline = now + policy.spec.approval.timeout if policy.spec.approval else None
        waiting = incident.with_pull_request(
            number=pull.number, url=pull.url, deadline=deadline.isoformat() if deadline else None
        )
        return waiting.with_state(S.awaiting_approval, now, detail).with_not_before(self._next_look(waiting, policy))

    async def _push_branch(self, incident: Incident, delivery: GitDelivery) -> Incident:
        plan = plan_from_dict(incident.plan)
        branch = branch_name(incident.app, incident.id)
        result = await asyncio.to_thread(self.git.push_rollback_branch, _request(incident), branch)
        checkpoint("after_branch_push")
        verb = "was already on" if result.already_done else "pushed to"
        recorded = incident.with_pull_request(
            forge=delivery.forge.value if delivery.forge else None,
            repository=delivery.repository,
            branch=branch,
            base=plan.branch,
            head_sha=result.commit,
        )
        if result.replanned is not None:
            recorded = recorded.with_plan(result.replanned)
        return recorded.with_event(self.clock.now(), f"rollback commit {result.commit[:12]} {verb} {branch}")

    async def _decorate(self, forge: Forge, pull: PullRequest, delivery: GitDelivery) -> list[str]:
        """Labels and, for ``autoMerge: platform``, the forge's own auto-merge; neither blocks the rollback."""
        notes: list[str] = []
        try:
            await forge.add_labels(pull.number, LABELS)
        except AdapterError as exc:
            notes.append(f"labels not set: {exc}")
        if delivery.auto_merge is AutoMerge.platform:
            try:
                enabled = await forge.enable_auto_merge(pull, delivery.merge_method.value)
            except AdapterError as exc:
                enabled, notes = False, [*notes, f"auto-merge: {exc}"]
            notes.append("forge auto-merge enabled" if enabled else "forge refused auto-merge; waiting for a merge")
        return notes

    # ---- 2. poll -------------------------------------------------------------------------------------

    async def poll(self, incident: Incident, policy: Policy) -> Incident:
        """Look at the pull request: merged, closed, approved in review, or look again later."""
        delivery, now, pr = policy.spec.git, self.clock.now(), incident.pull_request
        pull = await self.forges(delivery).pull_request(int(pr["number"]))
        judgement = judge(
            pull, approvers=delivery.approvers, auto_merge=delivery.auto_merge, forge=pr.get("forge") or "forge"
        )
        if judgement.progress is Progress.approved and pull.head_sha != pr["head_sha"]:
            judgement = Judgement(
                Progress.waiting,
                f"head moved to {pull.head_sha[:12]} (not rollbackbot's {str(pr['head_sha'])[:12]}); not merging it",
            )
        if judgement.progress in (Progress.merged, Progress.approved):
            merged = {"merge_commit": pull.merge_commit} if pull.merged else {}
            approved = incident.with_pull_request(**merged).with_approver(judgement.approver or "forge")
            return approved.with_state(S.approved, now, judgement.detail)
        if judgement.progress is Progress.closed:
            return incident.with_state(S.rejected, now, judgement.detail)
        deadline = _deadline(incident)
        if deadline is not None and now >= deadline:
            return _timed_out(incident, policy, now)
        looked = incident.with_not_before(self._next_look(incident, policy))
        if pr.get("status") != judgement.detail:  # an event when something changed, not on every look
            return looked.with_pull_request(status=judgement.detail).with_event(now, judgement.detail)
        return looked

    def _next_look(self, incident: Incident, policy: Policy) -> datetime:
        look = self.clock.now() + policy.spec.git.poll
        deadline = _deadline(incident)
        return min(look, deadline) if deadline else look

    # ---- 3. merge ------------------------------------------------------------------------------------

    async def merge(self, incident: Incident, policy: Policy) -> Incident:
        """Merge with the head SHA as precondition (exactly once), then sync like a direct rollback."""
        delivery, pr = policy.spec.git, incident.pull_request
        forge = self.forges(delivery)
        number = int(pr["number"])
        pull = await forge.pull_request(number)
        if pull.merged and pull.merge_commit:
            return self._merged(
                incident, pull.merge_commit, f"pull request #{number} merged as {pull.merge_commit[:12]}"
            )
        if pull.state != "open":
            return incident.with_state(S.failed, self.clock.now(), f"pull request #{number} was closed without merge")
        try:
            commit = await forge.merge(number, str(pr["head_sha"]), delivery.merge_method.value)
        except HeadMoved as exc:
            return incident.with_state(S.failed, self.clock.now(), f"not merged: {exc}")
        except NotMergeable:
            if pull.mergeable is False:  # a conflict: the base moved under our paths or the quarantine file
                return await self._rebuild(incident)
            raise  # checks running, reviews missing, mergeability still computing: retried with backoff
        checkpoint("after_merge")
        return self._merged(incident, commit, f"pull request #{number} merged by rollbackbot as {commit[:12]}")

    def _merged(self, incident: Incident, commit: str, detail: str) -> Incident:
        done = incident.with_pull_request(merge_commit=commit).with_commit(commit)
        return done.with_state(S.syncing, self.clock.now(), detail)

    async def _rebuild(self, incident: Incident) -> Incident:
        """The pull request conflicts with a moved base: the same rollback, rebuilt on the new base."""
        rebuilds = int(incident.pull_request.get("rebuilds", 0)) + 1
        now = self.clock.now()
        if rebuilds > MAX_REBUILDS:
            return incident.with_state(S.failed, now, f"pull request still conflicts after {MAX_REBUILDS} rebuilds")
        branch = str(incident.pull_request["branch"])
        try:
            result = await asyncio.to_thread(self.git.push_rollback_branch, _request(incident), branch)
        except ConflictError as exc:
            return incident.with_state(S.failed, now, f"conflict, not overriding a human: {exc}")
        except PermanentError as exc:
            return incident.with_state(S.failed, now, f"rebuilding the pull request failed: {exc}")
        rebuilt = incident.with_pull_request(head_sha=result.commit, rebuilds=rebuilds)
        if result.replanned is not None:
            rebuilt = rebuilt.with_plan(result.replanned)
        return rebuilt.with_event(now, f"base moved and conflicted: {branch} rebuilt as {result.commit[:12]}")


def _request(incident: Incident) -> RollbackRequest:
    return RollbackRequest(
        incident_id=incident.id,
        target=target_from_dict(incident.target),
        plan=plan_from_dict(incident.plan),
        alert_ref=incident.alert.trailer,
        evidence_url=incident.evidence_url or None,
        approved_by=None,  # the pull request is written before anyone approved; the merge records who did
    )


def _deadline(incident: Incident) -> datetime | None:
    text = incident.pull_request.get("deadline")
    return datetime.fromisoformat(text) if text else None


def _timed_out(incident: Incident, policy: Policy, now: datetime) -> Incident:
    on_timeout = policy.spec.approval.on_timeout if policy.spec.approval else OnTimeout.expire
    if on_timeout is OnTimeout.rollback:
        approved = incident.with_approver("timeout (no decision)")
        return approved.with_state(S.approved, now, "approval timed out: merging as the policy says")
    return incident.with_state(S.expired, now, "approval timed out: nobody decided; the pull request stays open")


# ---- POST /forge/events ------------------------------------------------------------------------------


class Nudge(Protocol):
    def __call__(self, incident_id: str) -> None: ...


class ForgeEvents:
    """Verifies a forge webhook and makes the incident its pull request belongs to look again now.

    The event's content is never trusted for a decision: the poll reads the pull request from the API,
    so a forged, replayed or re-delivered event can at most cause one extra read.
    """

    def __init__(self, *, secret: str, store: IncidentStore, clock: Clock, nudge: Nudge) -> None:
        self._secret = secret
        self.store = store
        self.clock = clock
        self.nudge = nudge

    def receive(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer) for one delivery; headers with lower-case names."""
        if "x-hub-signature-256" in headers:
            valid = github_signature_valid(self._secret, body, headers.get("x-hub-signature-256"))
        else:
            valid = gitlab_token_valid(self._secret, headers.get("x-gitlab-token"))
        if not valid:
            return 401, {"detail": "webhook signature or token does not verify"}
        try:
            event = json.loads(body)
        except ValueError:
            return 400, {"detail": "body is not JSON"}
        branch = _event_branch(event)
        incident_id = incident_of_branch(branch) if branch else None
        if incident_id is None:
            return 202, {"incident": None, "detail": "not a rollbackbot pull request"}
        return 202, {"incident": incident_id, "detail": self._look_now(incident_id)}

    def _look_now(self, incident_id: str) -> str:
        for _ in range(5):
            incident = self.store.get(incident_id)
            if incident is None:
                return "no such incident"
            if incident.state not in (S.awaiting_approval, S.rolling_back, S.approved):
                return f"incident is {incident.state.value}; nothing to do"
            if incident.state is S.awaiting_approval:
                try:
                    self.store.save(incident.with_not_before(self.clock.now()), S.awaiting_approval)
                except StaleIncident:
                    continue
            self.nudge(incident_id)
            return "looking at the pull request now"
        return "incident busy; the next poll looks"


def _event_branch(event: Any) -> str | None:
    if not isinstance(event, dict):
        return None
    github = event.get("pull_request")
    if isinstance(github, dict) and isinstance(github.get("head"), dict):
        return str(github["head"].get("ref") or "") or None
    gitlab = event.get("object_attributes")
    if isinstance(gitlab, dict) and gitlab.get("source_branch"):
        return str(gitlab["source_branch"])
    return None
