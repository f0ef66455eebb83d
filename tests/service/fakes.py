"""In-memory stand-ins for the ports, for service tests (the adapters have their own tests)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from rollbackbot.core.argo_status import Lineage, Relation
from rollbackbot.core.model import (
    AppHealth,
    ReleaseTag,
    ResolvedTarget,
    RollbackPlan,
    RollbackRequest,
    RollbackResult,
    SkippedTag,
)
from rollbackbot.errors import ConflictError, PermanentError, TransientError


@dataclass
class FakeGit:
    """Pretends to be the GitOps repo; records EVERY call, so a double commit cannot hide.

    ``calls`` lists ``("plan", app)``, ``("find_rollback", incident)`` and
    ``("commit_rollback", incident)`` in call order, including calls that then fail or find the
    commit already done; ``commits`` maps each incident to the commit the branch holds for it.
    """

    head: str = "a" * 40
    target_tag: str | None = "docsum-llm/v1.1.0"
    commits: dict[str, str] = field(default_factory=dict)  # incident id -> commit on the branch
    fail_commit: list[Exception] = field(default_factory=list)
    paths: frozenset[str] | None = None  # head_paths(): None = not fetched yet, nothing refused
    replan_when_moved: bool = False  # commit_rollback re-plans (as the real adapter does) when the head moved
    calls: list[tuple[str, str]] = field(default_factory=list)

    @property
    def plans(self) -> int:
        """How many times a plan was computed."""
        return sum(1 for name, _ in self.calls if name == "plan")

    def commit_calls(self, incident_id: str | None = None) -> list[tuple[str, str]]:
        """Every ``commit_rollback`` call (for one incident, when given)."""
        return [c for c in self.calls if c[0] == "commit_rollback" and incident_id in (None, c[1])]

    def plan(self, target: ResolvedTarget) -> RollbackPlan:
        self.calls.append(("plan", target.app))
        tag = ReleaseTag(self.target_tag, "b" * 40, {"Model-Digest": "sha256:" + "1" * 64}) if self.target_tag else None
        return RollbackPlan(
            app=target.app,
            branch="main",
            head=self.head,
            current=ReleaseTag("docsum-llm/v1.3.0", self.head, {}),
            target=tag,
            skipped=(SkippedTag("docsum-llm/v1.2.0", "not signed"),),
            no_target_reason=None if tag else "no older verified release",
        )

    def find_rollback(self, incident_id: str) -> str | None:
        self.calls.append(("find_rollback", incident_id))
        return self.commits.get(incident_id)

    def commit_rollback(self, request: RollbackRequest) -> RollbackResult:
        self.calls.append(("commit_rollback", request.incident_id))
        if request.incident_id in self.commits:
            return RollbackResult(self.commits[request.incident_id], already_done=True)
        if self.fail_commit:
            raise self.fail_commit.pop(0)
        commit = f"{len(self.commits) + 1:040x}"
        self.commits[request.incident_id] = commit
        moved = self.head != request.plan.head  # another rollback landed since the plan: re-plan on it
        replanned = replace(request.plan, head=self.head) if moved and self.replan_when_moved else None
        self.head = commit
        return RollbackResult(commit, already_done=False, replanned=replanned)

    def head_paths(self) -> frozenset[str] | None:
        return self.paths

    def lineage(self, commit: str, paths: object, revision: str | None = None) -> Lineage:
        """The branch never moves here: the head is the last commit."""
        seen = revision or self.head
        return Lineage(seen, Relation.same if seen == commit else Relation.descendant)


@dataclass
class FakeArgo:
    calls: list[tuple[str, ...]] = field(default_factory=list)
    unhealthy: str | None = None

    async def refresh(self, app: str, project: str) -> AppHealth:
        self.calls.append(("refresh", app))
        return AppHealth(app, "OutOfSync", "Healthy", None, None)

    async def sync(self, app: str, project: str, revision: str, prune: bool, lineage: object = None) -> None:
        self.calls.append(("sync", app, revision))

    async def wait_synced_healthy(
        self, app: str, project: str, revision: str, timeout: float, lineage: object = None
    ) -> AppHealth:
        self.calls.append(("wait", app, revision))
        if self.unhealthy:
            raise PermanentError(self.unhealthy)
        return AppHealth(app, "Synced", "Healthy", revision, "Succeeded")

    async def get_application(self, app: str, project: str) -> dict[str, Any]:
        return {"metadata": {"name": app}}

    async def get_resource_tree(self, app: str, project: str) -> dict[str, Any]:
        raise TransientError("resource tree unavailable")

    async def pod_logs(
        self,
        app: str,
        project: str,
        pod_name: str,
        namespace: str,
        *,
        container: str | None = None,
        tail_lines: int = 200,
    ) -> str:
        return f"{pod_name}: GET /v1/summarize 200\n"


__all__ = ["ConflictError", "FakeArgo", "FakeGit", "TransientError", "replace"]
