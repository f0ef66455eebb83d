"""Rollback readiness: would a rollback of this app work right now, and if not, why and what to do.

Purely computational. ``rollbackbot.readiness`` gathers the facts (the same plan a rollback makes,
Argo CD's answers, the approvers, an evidence probe) and these rules turn them into blockers. Each
blocker is one of a fixed set of reasons, so it can be a metric label, with a remedy a human can act on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from rollbackbot.core.model import RollbackPlan, SkippedTag
from rollbackbot.core.policy import SAFE_VALUE, TEMPLATE


class Blocker(StrEnum):
    """Why an app cannot be rolled back; bounded, so each is a value of a metric label."""

    no_verified_target = "no_verified_target"
    unsigned = "unsigned"
    missing_trailers = "missing_trailers"
    image_not_pinned = "image_not_pinned"
    quarantined = "quarantined"
    path_missing_at_target = "path_missing_at_target"
    argocd_forbidden = "argocd_forbidden"
    argocd_app_missing = "argocd_app_missing"
    approvers_empty = "approvers_empty"
    evidence_not_writable = "evidence_not_writable"
    check_failed = "check_failed"  # git or Argo CD could not be asked: readiness is unknown, so not ready


REMEDIES: dict[Blocker, str] = {
    Blocker.no_verified_target: "cut (or re-sign) an older release tag that passes every check below",
    Blocker.unsigned: "sign the release tag with a key in the allowed-signers file (git tag -s)",
    Blocker.missing_trailers: "re-tag the release with the policy's requireTrailers in the tag message",
    Blocker.image_not_pinned: "pin every image at the release by digest (image@sha256:...) and re-tag",
    Blocker.quarantined: "release a new verified version; a quarantined tag or model is never a target",
    Blocker.path_missing_at_target: "tag a release that has every policy path, or set target.allowDelete",
    Blocker.argocd_forbidden: "grant the bot's Argo CD token get and sync on the application (RBAC)",
    Blocker.argocd_app_missing: "create the Argo CD application, or fix argocdApps/project in the policy",
    Blocker.approvers_empty: "list approvers who exist (user ids or non-empty user groups) and set Slack up",
    Blocker.evidence_not_writable: "give rollbackbot write access to ROLLBACKBOT_EVIDENCE_URL",
    Blocker.check_failed: "look at the detail: git or Argo CD did not answer; the next run checks again",
}

# Reasons release selection (core/releases.py) gives for a skipped tag, most specific first.
_SKIP_REASONS: tuple[tuple[str, Blocker], ...] = (
    ("signature does not verify", Blocker.unsigned),
    ("lightweight tag", Blocker.unsigned),
    ("does not match the signed tag name", Blocker.unsigned),
    ("missing trailer", Blocker.missing_trailers),
    ("trailer Model-Digest is not", Blocker.missing_trailers),
    ("quarantined", Blocker.quarantined),
    ("refusing to delete it", Blocker.path_missing_at_target),
    ("no manifests under", Blocker.path_missing_at_target),
    ("image ", Blocker.image_not_pinned),
)


@dataclass(frozen=True)
class Finding:
    """One blocker of one app, with what was found."""

    blocker: Blocker
    detail: str

    @property
    def remedy(self) -> str:
        """What a human can do about it."""
        return REMEDIES[self.blocker]


@dataclass(frozen=True)
class AppReadiness:
    """The readiness of one guarded app at one moment."""

    app: str
    policy: str
    checked_at: datetime
    current: str | None = None  # release tag deployed now; None: an untagged head (or unknown)
    target: str | None = None  # the tag a rollback would go to now
    head: str = ""
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()  # worth knowing, not blocking (e.g. a newer tag skipped for a reason)

    @property
    def ready(self) -> bool:
        """A rollback would find a verified target and could be committed, synced and recorded."""
        return not self.findings

    @property
    def blockers(self) -> tuple[Blocker, ...]:
        """The distinct reasons, in a stable order."""
        return tuple(b for b in Blocker if any(f.blocker is b for f in self.findings))


def skip_blockers(skipped: SkippedTag) -> list[Blocker]:
    """The blockers a skipped tag's reason names (several when its reasons are joined with '; ')."""
    found: list[Blocker] = []
    for part in skipped.reason.split("; "):
        blocker = next((b for text, b in _SKIP_REASONS if text in part), None)
        if blocker is not None and blocker not in found:
            found.append(blocker)
    return found


def plan_findings(plan: RollbackPlan) -> tuple[list[Finding], list[str]]:
    """Blockers of a plan without a target (and why each older tag failed); notes for a plan with one."""
    if plan.target is not None:
        notes = [f"{s.name} skipped: {s.reason}" for s in plan.skipped if skip_blockers(s)]
        return [], notes
    findings = [Finding(Blocker.no_verified_target, plan.no_target_reason or "no verified release tag")]
    for skipped in plan.skipped:
        findings += [Finding(b, f"{skipped.name}: {skipped.reason}") for b in skip_blockers(skipped)]
    return _distinct(findings), []


def argocd_read_findings(app: str, status: int | None, problems: Sequence[str], error: str | None) -> list[Finding]:
    """The application read: 401/403 is the token, 404 or a wrong project is the application."""
    if status in (401, 403):
        return [Finding(Blocker.argocd_forbidden, f"{app}: {error}")]
    if status == 404:
        return [Finding(Blocker.argocd_app_missing, f"{app}: {error}")]
    if error is not None:
        return [Finding(Blocker.check_failed, f"Argo CD {app}: {error}")]
    return [Finding(Blocker.argocd_app_missing, f"{app}: {problem}") for problem in problems]


def sync_permission_findings(app: str, project: str, can_sync: bool | None, error: str | None) -> list[Finding]:
    """``can-i applications sync <project>/<app>``: "no" blocks; an unanswered question is a check failure."""
    if can_sync is False:
        return [Finding(Blocker.argocd_forbidden, f"the token may not sync {project}/{app} (can-i answered no)")]
    if can_sync is None and error is not None:
        return [Finding(Blocker.check_failed, f"Argo CD can-i sync {project}/{app}: {error}")]
    return []


def approver_findings(
    policy: str, approvers: Sequence[str], resolved: Iterable[str], error: str | None
) -> list[Finding]:
    """A propose policy needs at least one person who can press Approve."""
    if error is not None:
        return [Finding(Blocker.approvers_empty, f"policy {policy}: {error}")]
    if not approvers:
        return [Finding(Blocker.approvers_empty, f"policy {policy} proposes but lists no approvers")]
    if not list(resolved):
        listed = ", ".join(approvers)
        return [Finding(Blocker.approvers_empty, f"policy {policy}: approvers {listed} resolve to nobody")]
    return []


def evidence_findings(error: str | None) -> list[Finding]:
    """The evidence probe: a rollback still runs without evidence, but the forensic record would be lost."""
    return [Finding(Blocker.evidence_not_writable, error)] if error is not None else []


def template_labels(path_template: str, paths: Iterable[str]) -> list[dict[str, str]]:
    """Label values that turn ``path_template`` (``apps/${labels.app}``) into a path that exists, sorted.

    A value must pass the same check as an alert's label (``SAFE_VALUE``, no ``..``).
    """
    pattern, seen, position = "", set(), 0
    for found in TEMPLATE.finditer(path_template):
        pattern += re.escape(path_template[position : found.start()])
        name = found.group(1)
        pattern += f"(?P={name})" if name in seen else f"(?P<{name}>{SAFE_VALUE.pattern})"
        seen.add(name)
        position = found.end()
    regex = re.compile(pattern + re.escape(path_template[position:]))
    values = {
        tuple(sorted(match.groupdict().items()))
        for path in paths
        if (match := regex.fullmatch(path)) and not any(".." in v for v in match.groupdict().values())
    }
    return [dict(items) for items in sorted(values)]


def _distinct(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[Blocker, str]] = set()
    kept: list[Finding] = []
    for finding in findings:
        key = (finding.blocker, finding.detail)
        if key not in seen:
            seen.add(key)
            kept.append(finding)
    return kept


@dataclass(frozen=True)
class ReadinessReport:
    """Every guarded app's readiness from one run."""

    apps: tuple[AppReadiness, ...]
    checked_at: datetime
    errors: tuple[str, ...] = field(default_factory=tuple)  # apps that could not even be listed

    @property
    def ready(self) -> bool:
        """Every guarded app is ready (and there was one to check)."""
        return bool(self.apps) and all(a.ready for a in self.apps) and not self.errors


def app_to_json(item: AppReadiness) -> dict[str, Any]:
    """JSON form of one app's readiness (CLI --json, GET /api/readiness)."""
    return {
        "app": item.app,
        "policy": item.policy,
        "ready": item.ready,
        "current": item.current,
        "target": item.target,
        "head": item.head,
        "checked_at": item.checked_at.isoformat(),
        "blockers": [{"reason": f.blocker.value, "detail": f.detail, "remedy": f.remedy} for f in item.findings],
        "notes": list(item.notes),
    }


def report_to_json(report: ReadinessReport) -> dict[str, Any]:
    """JSON form of a whole run."""
    return {
        "ready": report.ready,
        "checked_at": report.checked_at.isoformat(),
        "apps": [app_to_json(a) for a in report.apps],
        "errors": list(report.errors),
    }


def render_table(report: ReadinessReport) -> str:
    """The ``rollbackbot readiness`` table: app, policy, current -> target, blockers (with details below)."""
    rows = [("APP", "POLICY", "CURRENT -> TARGET", "READY", "BLOCKERS")]
    for item in report.apps:
        move = f"{item.current or 'untagged'} -> {item.target or 'none'}"
        blockers = ",".join(b.value for b in item.blockers) or "-"
        rows.append((item.app, item.policy, move, "yes" if item.ready else "NO", blockers))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4] for row in rows]
    for item in report.apps:
        for finding in item.findings:
            lines.append(f"{item.app}: {finding.blocker.value}: {finding.detail}")
            lines.append(f"{' ' * len(item.app)}  fix: {finding.remedy}")
    lines += [f"note: {error}" for error in report.errors]
    ready = sum(1 for item in report.apps if item.ready)
    lines.append(f"{ready} of {len(report.apps)} guarded apps ready")
    return "\n".join(lines)
