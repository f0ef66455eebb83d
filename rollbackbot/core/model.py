"""Value types that cross the boundary between core and the adapters.

Purely data: frozen dataclasses, no behaviour that touches the outside world.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ResolvedTarget:
    """A policy's ``spec.target`` after ``${labels.NAME}`` substitution for one alert."""

    apps: tuple[str, ...]  # Argo CD applications, synced in this order
    project: str
    paths: tuple[str, ...]  # repository paths restored together in one commit
    tag_pattern: str  # glob over tag names, e.g. "fraud-llm/v*"
    require_trailers: tuple[str, ...] = ("Model-Digest", "Data-Version")
    allow_delete: bool = False  # policy target.allowDelete: a path absent at the target may be deleted

    @property
    def app(self) -> str:
        """The primary application: incidents, cooldowns and commit subjects use it."""
        return self.apps[0]


@dataclass(frozen=True)
class ReleaseTag:
    """An annotated release tag in the GitOps repository."""

    name: str  # e.g. "fraud-llm/v2.1.0"
    commit: str  # the commit the tag points to (peeled), 40 hex
    trailers: Mapping[str, str] = field(default_factory=dict)  # parsed from the tag message

    @property
    def model_digest(self) -> str | None:
        return self.trailers.get("Model-Digest")

    @property
    def data_version(self) -> str | None:
        return self.trailers.get("Data-Version")


@dataclass(frozen=True)
class SkippedTag:
    """A candidate release that was not chosen as target, and why."""

    name: str
    reason: str  # e.g. "signature does not verify", "missing trailer Data-Version"


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback would do, computed against one branch head."""

    app: str
    branch: str
    head: str  # deploy branch head the plan was computed on, 40 hex
    current: ReleaseTag | None  # None: the head is an untagged change
    target: ReleaseTag | None  # None: no verified older release
    skipped: tuple[SkippedTag, ...] = ()
    diff_stat: str = ""  # `git diff --stat head target -- paths`
    changed_paths: tuple[str, ...] = ()  # files the rollback would add, modify or delete
    no_target_reason: str | None = None
    head_is_rollback: bool = False  # the head commit is itself a rollbackbot rollback


@dataclass(frozen=True)
class RollbackRequest:
    """Everything needed to write the rollback commit for one incident."""

    incident_id: str
    target: ResolvedTarget
    plan: RollbackPlan
    alert_ref: str  # "<alertname>/<fingerprint>" for the Rollback-Alert trailer
    evidence_url: str | None = None
    approved_by: str | None = None  # "<name> <slack user id>" when a person approved


@dataclass(frozen=True)
class RollbackResult:
    """The rollback commit on the deploy branch."""

    commit: str  # 40 hex
    already_done: bool  # True when a commit with this incident's trailer was already on the branch
    push_attempts: int = 1
    replanned: RollbackPlan | None = None  # the plan actually written, when the commit step had to re-plan


@dataclass(frozen=True)
class AppHealth:
    """The state of one Argo CD application as rollbackbot judges it."""

    app: str
    sync_status: str  # Synced | OutOfSync | Unknown
    health_status: str  # Healthy | Progressing | Degraded | Suspended | Missing | Unknown
    revision: str | None  # status.sync.revision
    operation_phase: str | None  # status.operationState.phase
    message: str = ""


def target_to_dict(target: ResolvedTarget) -> dict[str, Any]:
    """JSON-ready form, stored with the incident so a restart can resume."""
    return asdict(target)


def target_from_dict(data: Mapping[str, Any]) -> ResolvedTarget:
    return ResolvedTarget(
        apps=tuple(data["apps"]),
        project=data["project"],
        paths=tuple(data["paths"]),
        tag_pattern=data["tag_pattern"],
        require_trailers=tuple(data.get("require_trailers", ())),
        allow_delete=bool(data.get("allow_delete", False)),
    )


def _tag_to_dict(tag: ReleaseTag | None) -> dict[str, Any] | None:
    return {"name": tag.name, "commit": tag.commit, "trailers": dict(tag.trailers)} if tag else None


def _tag_from_dict(data: Mapping[str, Any] | None) -> ReleaseTag | None:
    return ReleaseTag(data["name"], data["commit"], dict(data["trailers"])) if data else None


def plan_to_dict(plan: RollbackPlan) -> dict[str, Any]:
    """JSON-ready form of a plan."""
    return {
        "app": plan.app,
        "branch": plan.branch,
        "head": plan.head,
        "current": _tag_to_dict(plan.current),
        "target": _tag_to_dict(plan.target),
        "skipped": [{"name": s.name, "reason": s.reason} for s in plan.skipped],
        "diff_stat": plan.diff_stat,
        "changed_paths": list(plan.changed_paths),
        "no_target_reason": plan.no_target_reason,
        "head_is_rollback": plan.head_is_rollback,
    }


def plan_from_dict(data: Mapping[str, Any]) -> RollbackPlan:
    return RollbackPlan(
        app=data["app"],
        branch=data["branch"],
        head=data["head"],
        current=_tag_from_dict(data.get("current")),
        target=_tag_from_dict(data.get("target")),
        skipped=tuple(SkippedTag(s["name"], s["reason"]) for s in data.get("skipped", ())),
        diff_stat=data.get("diff_stat", ""),
        changed_paths=tuple(data.get("changed_paths", ())),
        no_target_reason=data.get("no_target_reason"),
        head_is_rollback=bool(data.get("head_is_rollback", False)),
    )
