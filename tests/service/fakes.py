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
    """Pretends to be the GitOps repo; records rollback commits per incident."""

    head: str = "a" * 40
    target_tag: str | None = "docsum-llm/v1.1.0"
    commits: dict[str, str] = field(default_factory=dict)  # incident id -> commit
    fail_commit: list[Exception] = field(default_factory=list)
    plans: int = 0
    paths: frozenset[str] | None = None  # head_paths(): None = not fetched yet, nothing refused

    def plan(self, target: ResolvedTarget) -> RollbackPlan:
        self.plans += 1
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
        return self.commits.get(incident_id)

    def commit_rollback(self, request: RollbackRequest) -> RollbackResult:
        if request.incident_id in self.commits:
            return RollbackResult(self.commits[request.incident_id], already_done=True)
        if self.fail_commit:
            raise self.fail_commit.pop(0)
        commit = f"{len(self.commits) + 1:040x}"
        self.commits[request.incident_id] = commit
        self.head = commit
        return RollbackResult(commit, already_done=False)

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
