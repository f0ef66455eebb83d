"""Rollback readiness, gathered: for every guarded app, would a rollback work now? (docs/readiness.md)

The rules live in ``rollbackbot.core.readiness``; this module asks the outside world, read-only:

- git: the same plan a rollback makes (fetch, current release, newest verified target, skipped tags);
- Argo CD: a read of each application (``GET ?project=``) and ``can-i applications sync <project>/<app>``;
- Slack: the approvers of a ``propose`` policy resolve to at least one person;
- the evidence sink: a small probe object is written and removed.

Nothing is committed, synced or posted. Templated policies (``${labels.NAME}``) guard the apps found
under their paths at the deploy branch head that Argo CD also knows, at most ``max_templated_apps`` each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.core import GaugeMetricFamily

from rollbackbot.clock import Clock
from rollbackbot.core.argo_status import application_problems
from rollbackbot.core.model import ResolvedTarget, RollbackPlan
from rollbackbot.core.policy import Policy, PolicyMode
from rollbackbot.core.policy_select import resolve_target
from rollbackbot.core.readiness import (
    AppReadiness,
    Blocker,
    Finding,
    ReadinessReport,
    approver_findings,
    argocd_read_findings,
    evidence_findings,
    plan_findings,
    sync_permission_findings,
    template_labels,
)
from rollbackbot.errors import AdapterError, AlertRefused, describe
from rollbackbot.metrics import REGISTRY

log = logging.getLogger("rollbackbot.readiness")

MAX_TEMPLATED_APPS = 50
CALL_TIMEOUT_SECONDS = 20.0  # one Argo CD or Slack question; a stalled one makes the app "check_failed"


class ReadinessGit(Protocol):
    """What readiness needs from the git adapter (blocking calls, run in a thread)."""

    def ensure_clone(self) -> None: ...

    def plan(self, target: ResolvedTarget) -> RollbackPlan: ...

    def head_paths(self) -> frozenset[str] | None: ...


class ReadinessArgo(Protocol):
    """What readiness asks Argo CD."""

    async def get_application(self, app: str, project: str) -> dict[str, Any]: ...

    async def can_i(self, resource: str, action: str, subresource: str) -> bool: ...


class EvidenceProbe(Protocol):
    """An evidence sink that can prove it takes writes (``probe`` raises AdapterError if not)."""

    def probe(self) -> None: ...


GroupMembers = Callable[[str], Awaitable[frozenset[str]]]  # Slack user group id -> user ids
Pause = Callable[[], Awaitable[None]]  # awaited between apps: the schedule yields to incidents there


@dataclass(frozen=True)
class GuardedApp:
    """One app a policy protects, with the policy's target resolved for it."""

    policy: Policy
    target: ResolvedTarget
    templated: bool = False

    @property
    def app(self) -> str:
        """The primary application."""
        return self.target.app


def guarded_apps(
    policies: Sequence[Policy], head_paths: frozenset[str] | None, limit: int = MAX_TEMPLATED_APPS
) -> tuple[list[GuardedApp], list[str]]:
    """Apps named by policies, then those templated policies find under their paths; first policy wins."""
    found: dict[str, GuardedApp] = {}
    notes: list[str] = []
    for policy in sorted(policies, key=lambda p: (p.source, p.index)):
        for guarded in _apps_of(policy, head_paths or frozenset(), limit, notes):
            found.setdefault(guarded.app, guarded)
    return list(found.values()), notes


def _apps_of(policy: Policy, head_paths: frozenset[str], limit: int, notes: list[str]) -> Iterator[GuardedApp]:
    target = policy.spec.target
    templates = [*target.argocd_apps, *target.paths, target.tags]
    if not any("${labels." in text for text in templates):
        yield GuardedApp(policy, resolve_target(policy, {}))
        return
    candidates = template_labels(target.paths[0], head_paths)
    if len(candidates) > limit:
        notes.append(
            f"policy {policy.name}: {len(candidates)} apps under {target.paths[0]}, checking the first {limit}"
        )
    for labels in candidates[:limit]:
        if not all(m.matches(labels) for m in policy.spec.matchers if m.name in labels):
            continue
        try:
            yield GuardedApp(policy, resolve_target(policy, labels), templated=True)
        except AlertRefused as exc:  # a label the path does not give (e.g. only in tags): not checkable
            notes.append(f"policy {policy.name}: {describe(exc)}")


@dataclass
class ReadinessChecker:
    """Runs the read-only checks; one ``check`` call is one readiness run."""

    git: ReadinessGit
    argocd: ReadinessArgo
    clock: Clock
    evidence: EvidenceProbe | None = None
    group_members: GroupMembers | None = None  # None: Slack is not configured
    max_templated_apps: int = MAX_TEMPLATED_APPS
    call_timeout: float = CALL_TIMEOUT_SECONDS
    _approvers: dict[str, tuple[list[Finding], list[str]]] = field(default_factory=dict)

    async def check(
        self, policies: Sequence[Policy], app: str | None = None, pause: Pause | None = None
    ) -> ReadinessReport:
        """Every guarded app (or only ``app``), each with its blockers."""
        started = self.clock.now()
        self._approvers = {}
        apps, notes = guarded_apps(policies, await self._head_paths(policies), self.max_templated_apps)
        if app is not None:
            apps = [g for g in apps if app in g.target.apps]
            if not apps:
                return ReadinessReport((), started, (f"no policy guards app {app!r}",))
        evidence = await self._probe_evidence()
        results: list[AppReadiness] = []
        for guarded in apps:
            if pause is not None:
                await pause()
            checked = await self.check_app(guarded, evidence)
            if checked is not None:
                results.append(checked)
        return ReadinessReport(tuple(results), started, tuple(notes))

    async def _head_paths(self, policies: Sequence[Policy]) -> frozenset[str] | None:
        """The deploy branch's paths after a fetch, when a templated policy needs them to find its apps."""
        if not any("${labels." in path for p in policies for path in p.spec.target.paths):
            return None
        try:
            await asyncio.to_thread(self.git.ensure_clone)
        except AdapterError as exc:  # the plans below fail too and say so per app
            log.warning("readiness: fetch failed", extra={"error": describe(exc)})
        return self.git.head_paths()

    async def _probe_evidence(self) -> list[Finding]:
        if self.evidence is None:
            return []
        try:
            await asyncio.wait_for(asyncio.to_thread(self.evidence.probe), self.call_timeout)
        except (AdapterError, TimeoutError) as exc:
            return evidence_findings(describe(exc))
        return []

    async def check_app(self, guarded: GuardedApp, shared: Iterable[Finding] = ()) -> AppReadiness | None:
        """One app's readiness; None for a templated candidate Argo CD does not know (not guarded)."""
        target = guarded.target
        findings: list[Finding] = []
        notes: list[str] = []
        plan: RollbackPlan | None = None
        try:
            plan = await asyncio.to_thread(self.git.plan, target)
            blocking, notes = plan_findings(plan)
            findings += blocking
        except AdapterError as exc:
            findings.append(Finding(Blocker.check_failed, f"git: {describe(exc)}"))
        for app in target.apps:
            status, problems, error = await self._read_application(app, target.project)
            if guarded.templated and status == 404:
                return None
            findings += argocd_read_findings(app, status, problems, error)
            if status is None and error is None:
                findings += await self._sync_permission(app, target.project, notes)
        if guarded.policy.spec.mode is PolicyMode.propose:
            findings += await self._approver_findings(guarded.policy, notes)
        findings += shared
        return AppReadiness(
            app=guarded.app,
            policy=guarded.policy.name,
            checked_at=self.clock.now(),
            current=plan.current.name if plan and plan.current else None,
            target=plan.target.name if plan and plan.target else None,
            head=plan.head if plan else "",
            findings=tuple(findings),
            notes=tuple(notes),
        )

    async def _read_application(self, app: str, project: str) -> tuple[int | None, list[str], str | None]:
        """(HTTP status of a refusal, problems of the Application read, error text)."""
        try:
            data = await asyncio.wait_for(self.argocd.get_application(app, project), self.call_timeout)
            return None, application_problems(data, app, project), None
        except AdapterError as exc:
            return getattr(exc, "status", None), [], describe(exc)
        except (TimeoutError, ValueError) as exc:
            return None, [], describe(exc) if str(exc) else f"no answer within {self.call_timeout:g}s"

    async def _sync_permission(self, app: str, project: str, notes: list[str]) -> list[Finding]:
        try:
            allowed = await asyncio.wait_for(
                self.argocd.can_i("applications", "sync", f"{project}/{app}"), self.call_timeout
            )
        except AdapterError as exc:
            if getattr(exc, "status", None) == 404:
                # A gateway that splits the encoded slash has no such route: the read above is all we know.
                notes.append(f"Argo CD can-i is not available ({describe(exc)}); sync permission not checked")
                return []
            return sync_permission_findings(app, project, None, describe(exc))
        except TimeoutError:
            return sync_permission_findings(app, project, None, f"no answer within {self.call_timeout:g}s")
        return sync_permission_findings(app, project, allowed, None)

    async def _approver_findings(self, policy: Policy, notes: list[str]) -> list[Finding]:
        """Approvers of a propose policy: user ids count as they are, user groups by their members now."""
        if policy.name not in self._approvers:
            self._approvers[policy.name] = await self._resolve_approvers(policy)
        findings, group_notes = self._approvers[policy.name]
        notes.extend(group_notes)
        return findings

    async def _resolve_approvers(self, policy: Policy) -> tuple[list[Finding], list[str]]:
        approval = policy.spec.approval
        approvers = list(approval.approvers) if approval else []
        if self.group_members is None:
            error = "proposes in Slack, but Slack is not configured (ROLLBACKBOT_SLACK_BOT_TOKEN)"
            return approver_findings(policy.name, approvers, (), error), []
        resolved: set[str] = {a for a in approvers if not a.startswith("S")}
        failed: list[str] = []
        for group in (a for a in approvers if a.startswith("S")):
            try:
                resolved |= await asyncio.wait_for(self.group_members(group), self.call_timeout)
            except (AdapterError, TimeoutError) as exc:
                failed.append(f"user group {group} could not be resolved: {describe(exc)}")
        # A group that cannot be resolved denies its members (see adapters/slack/approvers.py); it only
        # blocks when nobody else is left to approve.
        blocking = "; ".join(failed) if failed and not resolved else None
        return approver_findings(policy.name, approvers, resolved, blocking), failed if resolved else []


class ReadinessMetrics:
    """``rollbackbot_rollback_ready{app,policy}`` and ``rollbackbot_rollback_blockers{app,reason}``, from the last run.

    A collector, not gauges: an app that is no longer guarded disappears with the next run.
    """

    def __init__(self) -> None:
        self.report: ReadinessReport | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ready = GaugeMetricFamily(
            "rollbackbot_rollback_ready",
            "1 when a rollback of the app would work now (last readiness run)",
            labels=["app", "policy"],
        )
        blockers = GaugeMetricFamily(
            "rollbackbot_rollback_blockers",
            "Blockers of the app's rollback by reason (last readiness run)",
            labels=["app", "reason"],
        )
        last = GaugeMetricFamily(
            "rollbackbot_readiness_last_run_timestamp_seconds", "When the last readiness run started (Unix time)"
        )
        report = self.report
        if report is not None:
            last.add_metric([], report.checked_at.timestamp())
            for item in report.apps:
                ready.add_metric([item.app, item.policy], 1.0 if item.ready else 0.0)
                for reason in Blocker:
                    count = sum(1 for f in item.findings if f.blocker is reason)
                    blockers.add_metric([item.app, reason.value], float(count))
        yield ready
        yield blockers
        yield last


READINESS_METRICS = ReadinessMetrics()
REGISTRY.register(READINESS_METRICS)
