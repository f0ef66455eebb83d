"""The narrow interfaces between the service and the outside world.

Each external system sits behind one of these; tests replace one with a fake, never the network.
"""

from __future__ import annotations

from typing import Any, Protocol

from rollbackbot.core.model import AppHealth, ResolvedTarget, RollbackPlan, RollbackRequest, RollbackResult


class GitOpsRepo(Protocol):
    """The GitOps repository: release tags, the deploy branch, rollback commits (blocking calls)."""

    def plan(self, target: ResolvedTarget) -> RollbackPlan:
        """Fetch, then compute current and target release for the target's paths."""
        ...

    def find_rollback(self, incident_id: str) -> str | None:
        """The commit on the deploy branch carrying ``Rollback-Incident: <id>``, if any."""
        ...

    def commit_rollback(self, request: RollbackRequest) -> RollbackResult:
        """Write and push the rollback commit; exactly once per incident, never forced."""
        ...


class ArgoCD(Protocol):
    """The Argo CD API server."""

    async def refresh(self, app: str, project: str) -> AppHealth:
        """Ask Argo CD to look at the repository again (GET ?refresh=normal)."""
        ...

    async def sync(self, app: str, project: str, revision: str, prune: bool) -> None:
        """Start a sync that will deploy ``revision``; waits out an operation already running."""
        ...

    async def wait_synced_healthy(self, app: str, project: str, revision: str, timeout: float) -> AppHealth:
        """Poll until the sync for ``revision`` finished, reconciled, Synced and Healthy.

        Raises PermanentError with a readable reason when it fails, degrades or times out.
        """
        ...

    async def get_application(self, app: str, project: str) -> dict[str, Any]:
        """The raw Application object, for evidence."""
        ...

    async def get_resource_tree(self, app: str, project: str) -> dict[str, Any]:
        """The raw resource tree, for evidence."""
        ...
