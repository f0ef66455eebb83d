"""The narrow interfaces between the service and the outside world.

Each external system sits behind one of these; tests replace one with a fake, never the network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from rollbackbot.core.argo_status import Lineage, LineageLookup
from rollbackbot.core.decide import AppHistory
from rollbackbot.core.incidents import Incident, IncidentState
from rollbackbot.core.model import AppHealth, ResolvedTarget, RollbackPlan, RollbackRequest, RollbackResult
from rollbackbot.core.policy import Policy
from rollbackbot.core.pull_requests import AutoMergeAnswer, PullRequest


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

    def head_paths(self) -> frozenset[str] | None:
        """Every path at the deploy branch head as of the last fetch (None before one); from memory."""
        ...

    def lineage(self, commit: str, paths: Sequence[str], revision: str | None = None) -> Lineage:
        """How ``revision`` (default: the deploy branch head, fetched now) relates to ``commit`` for ``paths``."""
        ...


class PullRequestBranches(Protocol):
    """A GitOps repository that can also push a rollback to a pull request's head branch."""

    def push_rollback_branch(self, request: RollbackRequest, branch: str) -> RollbackResult:
        """The rollback commit on the deploy branch tip, on ``branch``; kept when already there."""
        ...


class ArgoCD(Protocol):
    """The Argo CD API server."""

    async def refresh(self, app: str, project: str) -> AppHealth:
        """Ask Argo CD to look at the repository again (GET ?refresh=normal)."""
        ...

    async def sync(
        self, app: str, project: str, revision: str, prune: bool, lineage: LineageLookup | None = None
    ) -> None:
        """Start a sync that will deploy ``revision``; waits out an operation already running.

        With ``lineage``, a running operation for a descendant that keeps the app's paths is adopted,
        and one for a revision that changed them raises Superseded instead of syncing over it.
        """
        ...

    async def wait_synced_healthy(
        self, app: str, project: str, revision: str, timeout: float, lineage: LineageLookup | None = None
    ) -> AppHealth:
        """Poll until the sync for ``revision`` finished, reconciled, Synced and Healthy.

        With ``lineage``, Synced and Healthy at a descendant of ``revision`` with the app's paths unchanged
        counts too. Raises Superseded when a later commit changed the app's paths, PermanentError with a
        readable reason when it fails, degrades or times out.
        """
        ...

    async def get_application(self, app: str, project: str) -> dict[str, Any]:
        """The raw Application object, for evidence."""
        ...

    async def get_resource_tree(self, app: str, project: str) -> dict[str, Any]:
        """The raw resource tree, for evidence."""
        ...

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
        """Recent container logs of one pod of the app, for evidence."""
        ...


class StaleIncident(Exception):
    """A compare-and-set save lost: someone else moved the incident first."""


class LeaseLost(StaleIncident):
    """The save carried a lease that expired or another replica took over (a higher fence): refused."""


@dataclass(frozen=True)
class Lease:
    """The right to drive one incident: held by ``owner`` until the database's clock passes its expiry.

    ``fence`` grows with every claim, so a write from a replica that lost the lease is told apart.
    ``previous_owner`` is who held it before this claim (a takeover when it is another replica).
    """

    incident_id: str
    owner: str
    fence: int
    previous_owner: str | None = None


@dataclass(frozen=True)
class IncidentPage:
    """One page of incidents, newest first, and where the next one starts (None: this was the last)."""

    incidents: list[Incident]
    next_after: tuple[datetime, str] | None


class IncidentStore(Protocol):
    """Durable incidents; every state change is a compare-and-set on the previous state."""

    def create(self, incident: Incident) -> bool:
        """Insert; False (and nothing written) when an incident with that id exists."""
        ...

    def get(self, incident_id: str) -> Incident | None: ...

    def save(self, incident: Incident, expected_state: IncidentState, lease: Lease | None = None) -> None:
        """Persist ``incident`` only if the stored state is still ``expected_state`` and its version the one
        read, else StaleIncident; with ``lease``, also only while that lease holds (else LeaseLost)."""
        ...

    def append_event(self, incident_id: str, at: datetime, detail: str) -> bool:
        """Note something on the incident (insert only, never races a save); False if there is no such incident."""
        ...

    def claim(self, incident_ids: Sequence[str], owner: str, seconds: float, dead: Sequence[str] = ()) -> list[Lease]:
        """Take the lease of each incident nobody holds (its lease expired, or its owner is in ``dead``)."""
        ...

    def renew(self, owner: str, incident_ids: Sequence[str], seconds: float) -> set[str]:
        """Extend ``owner``'s leases on these incidents; the ids still held."""
        ...

    def release(self, lease: Lease) -> None:
        """Give the lease back (the incident waits on a timer or a human, or is finished)."""
        ...

    def expired_leases(self) -> list[str]:
        """Unfinished incidents whose owner let the lease run out (a replica died or stalled)."""
        ...

    def owners(self) -> dict[str, str]:
        """Incident id → the replica holding a live lease on it."""
        ...

    def recent(self, limit: int = 100) -> list[Incident]:
        """Newest first."""
        ...

    def unfinished(self) -> list[Incident]:
        """Incidents not in a terminal state, oldest first (resumed at start)."""
        ...

    def find_by_alert(self, fingerprint: str, starts_at: datetime) -> list[Incident]: ...

    def mark_resolved(self, incident_id: str, at: datetime) -> bool:
        """Record the alert's resolution once, without racing a step's save."""
        ...

    def create_many(self, new: list[Incident]) -> set[str]:
        """Insert those not stored yet, in one transaction; the ids inserted."""
        ...

    def app_history(self, incident: Incident, budget_since: datetime) -> AppHistory:
        """The app's active incident opened before ``incident``, last rollback, rollbacks since ``budget_since``."""
        ...

    def ping(self) -> None:
        """Raise if the store cannot be reached."""
        ...

    def page(
        self,
        limit: int,
        after: tuple[datetime, str] | None = None,
        *,
        app: str | None = None,
        state: str | None = None,
        since: datetime | None = None,
    ) -> IncidentPage:
        """Newest first by (created, id), starting after ``after``; filters are exact matches."""
        ...

    def count_active(self) -> int:
        """Incidents not in a terminal state."""
        ...

    def prune(self, created_before: datetime, batch: int = 500) -> int:
        """Delete terminal incidents opened before ``created_before``; how many went."""
        ...


class EvidenceSink(Protocol):
    """Where forensic bundles go (file:// or s3://)."""

    def write(self, incident_id: str, files: Mapping[str, bytes | Path]) -> str:
        """Store the bundle write-once and return its URL (a Path: a file holding the content)."""
        ...


class Chat(Protocol):
    """Where humans hear about incidents (Slack). Best effort: never blocks or fails a rollback."""

    async def incident_changed(self, incident: Incident, previous: IncidentState | None) -> None:
        """The incident moved to a new state or recorded something a human must know."""
        ...

    async def incident_noted(self, incident: Incident, detail: str) -> None:
        """A long step recorded ``detail`` (a canary step, the shadow): a reply in the thread if worth one."""
        ...


@dataclass(frozen=True)
class Verdict:
    """The outcome of an approval or rejection click."""

    acted: bool
    incident: Incident | None
    message: str


class Decisions(Protocol):
    """What a chat front end needs from the service to turn a click into a decision."""

    @property
    def store(self) -> IncidentStore:
        """Where incidents are read."""

    @property
    def policies(self) -> Sequence[Policy]:
        """The active policies (for the approvers of an incident's policy)."""

    def approve(self, incident_id: str, approver: str) -> Verdict:
        """awaiting_approval → approved, exactly once."""

    def reject(self, incident_id: str, approver: str) -> Verdict:
        """awaiting_approval → rejected, exactly once."""

    def end_shadow(self, incident_id: str, requested_by: str) -> Verdict:
        """Ask for the incident's shadow to be removed now, once per shadow."""

    def record_event(self, incident_id: str, detail: str) -> None:
        """Note something on the incident without changing its state."""


class Forge(Protocol):
    """A forge's pull-request API for one repository (GitHub, GitLab): pull-request mode."""

    async def find_pull_request(self, branch: str, base: str) -> PullRequest | None:
        """The pull request (open, merged or closed) from ``branch`` into ``base``, newest first; None if none."""
        ...

    async def open_pull_request(self, branch: str, base: str, title: str, body: str) -> PullRequest:
        """Create it; when the forge says one already exists, return that one (never two)."""
        ...

    async def pull_request(self, number: int) -> PullRequest:
        """The pull request now, with its reviews."""
        ...

    async def merge(self, number: int, sha: str, method: str) -> str:
        """Merge only if the head is ``sha``; the merge commit. HeadMoved (409), NotMergeable (405)."""
        ...

    async def add_labels(self, number: int, labels: Sequence[str]) -> None:
        """Label the pull request (best effort for the caller)."""
        ...

    async def enable_auto_merge(self, pull: PullRequest, method: str) -> AutoMergeAnswer:
        """Turn on the forge's native auto-merge: enabled, merged at once, or why it refused (clean, pending…)."""
        ...


@dataclass(frozen=True)
class InboxRow:
    """One accepted webhook as the inbox stores it."""

    seq: int
    accepted_at: datetime
    body: bytes
    answer: list[str]  # the incident ids the webhook answered
    attempts: int  # failed attempts to decide it so far


class InboxRows(Protocol):
    """The durable inbox table (``adapters/store/inbox.py``); a claim is whatever ``claim`` returns."""

    def append(self, rows: list[tuple[datetime, bytes, list[str]]], replica: str | None = None) -> int:
        """Insert ``(accepted_at, body, answer)`` rows accepted by ``replica`` in one transaction; the highest seq."""
        ...

    def claim(
        self, limit: int, replica: str | None = None, backlog: int = 0, adopt_before: datetime | None = None
    ) -> Any:
        """The oldest pending rows nobody else is deciding, as an object with ``rows``; finish() or release() it.

        With several replicas: those ``replica`` accepted, those up to seq ``backlog``, and those accepted
        before ``adopt_before`` (another replica's that waited).
        """
        ...

    def finish(self, claim: Any, done: list[int], failed: dict[int, str | None]) -> None:
        """Delete ``done``; count a failed attempt on each of ``failed`` (with a text: kept aside as poison)."""
        ...

    def release(self, claim: Any) -> None:
        """Give the claimed rows back untouched."""
        ...

    def oldest_pending(self) -> int | None:
        """The seq of the oldest row not decided yet, by anyone; None when there is none."""
        ...

    def newest(self) -> int:
        """The highest seq in the table (0 when empty)."""
        ...

    def checkpoint(self) -> None:
        """Housekeeping between passes (SQLite: copy the write-ahead logs back); cheap when nothing is due."""
        ...
