"""Rules over Argo CD Application JSON: is auto-sync on, and has the sync of a revision finished.

The branch moves: Argo CD reports the newest revision it compared against (``status.sync.revision``)
and, with auto-sync, deploys the branch head. So "finished" accepts our rollback commit X **or a
descendant of X in which the app's paths are unchanged since X** (``Relation.descendant``); a
descendant that changed those paths means the rollback was superseded by newer work
(``Relation.superseded``): the incident stops with that outcome instead of waiting for X. The git
facts come in as ``Lineage`` values (computed by the git adapter), one per revision Argo CD reports.

Purely computational: no I/O, no clock reads. Every field is optional because older Argo CD servers
omit many of them (docs/argocd-wire.md §10) and fresh applications lack others; a missing field means "not
known yet", never a KeyError. Wire facts are from docs/argocd-wire.md §0.5, §4 and §6.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum, auto
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel

from rollbackbot.core.model import AppHealth

# "Terminating" counts as failed: it only ends as Failed/"Operation terminated", and an op parked by a
# sync window can sit in Terminating until the window opens (docs/argocd-wire.md §3.4), so waiting is pointless.
_FAILED_PHASES = frozenset({"Failed", "Error", "Terminating"})
_SHORT_SHA = 12
_MAX_DETAILS = 3


def _empty_to_none(value: Any) -> Any:
    return None if value == "" else value


def _assume_utc(value: datetime | None) -> datetime | None:
    # Argo CD writes RFC 3339 with "Z"; a naive time from a proxy or old server would make the
    # reconciledAt >= finishedAt comparison raise TypeError, so read it as UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


Timestamp = Annotated[datetime | None, BeforeValidator(_empty_to_none), AfterValidator(_assume_utc)]


class _Wire(BaseModel):
    """Argo CD's JSON, read by its camelCase names; fields it adds are ignored (pydantic's default)."""

    model_config = ConfigDict(alias_generator=to_camel, frozen=True)


class Automated(_Wire):
    enabled: bool | None = None


class SyncPolicy(_Wire):
    automated: Automated | None = None


class Spec(_Wire):
    sync_policy: SyncPolicy | None = None
    project: str | None = None


class Metadata(_Wire):
    name: str | None = None


class SyncOperation(_Wire):
    revision: str | None = None


class Operation(_Wire):
    sync: SyncOperation | None = None


class SyncResult(_Wire):
    revision: str | None = None


class OperationState(_Wire):
    phase: str | None = None
    message: str | None = None
    sync_result: SyncResult | None = None
    started_at: Timestamp = None
    finished_at: Timestamp = None
    retry_count: int | None = None


class SyncStatus(_Wire):
    status: str | None = None
    revision: str | None = None


class HealthStatus(_Wire):
    status: str | None = None
    message: str | None = None


class ResourceStatus(_Wire):
    kind: str | None = None
    name: str | None = None
    health: HealthStatus | None = None


class Status(_Wire):
    sync: SyncStatus | None = None
    health: HealthStatus | None = None
    operation_state: OperationState | None = None
    reconciled_at: Timestamp = None
    resources: list[ResourceStatus] | None = None


class Application(_Wire):
    """The parts of a ``v1alpha1Application`` rollbackbot reads."""

    metadata: Metadata | None = None
    spec: Spec | None = None
    status: Status | None = None
    operation: Operation | None = None


class Relation(Enum):
    """How a revision Argo CD reports relates to our rollback commit X, for the app's paths.

    Compared by identity only: never stored or sent, so the members carry no wire value.
    """

    same = auto()  # it is X
    descendant = auto()  # X is an ancestor and the app's paths are unchanged since X
    superseded = auto()  # X is an ancestor, but a later commit changed the app's paths
    older = auto()  # an ancestor of X: Argo CD has not seen X yet
    unrelated = auto()  # neither (rewritten history, another branch) or not in our clone


@dataclass(frozen=True)
class Lineage:
    """The git facts about one revision relative to our rollback commit."""

    revision: str
    relation: Relation
    changed_by: str = ""  # superseded: the first commit after X that changed the app's paths
    subject: str = ""  # superseded: that commit's subject line

    @property
    def contains_ours(self) -> bool:
        """The revision deploys exactly what our commit deploys for this app."""
        return self.relation in (Relation.same, Relation.descendant)


LineageLookup = Callable[[str], Awaitable[Lineage]]
"""Computes the Lineage of a revision (blocking git work in a thread); may raise TransientError."""


@dataclass(frozen=True)
class SyncVerdict:
    """Whether the sync of one revision is finished, failed, superseded or still under way, and why."""

    done: bool
    failed: bool
    reason: str
    health: AppHealth
    superseded: Lineage | None = None  # set when newer work replaced our commit: stop, report it


def superseded_reason(lineage: Lineage) -> str:
    """``superseded by <sha> (<subject>)``: the incident's outcome when newer work replaced ours."""
    subject = " ".join(lineage.subject.split())[:120] or "no subject"
    return f"superseded by {short_sha(lineage.changed_by or lineage.revision)} ({subject})"


def branch_problem(head: Lineage, commit: str) -> str | None:
    """Before (re-)syncing: None when the branch head still deploys ``commit`` for the app, else why not.

    A head that changed the app's paths since ``commit`` is newer work; a head that does not contain
    ``commit`` at all means the branch was rewritten. Syncing ``commit`` then would overwrite either.
    """
    if head.contains_ours:
        return None
    if head.relation is Relation.superseded:
        return superseded_reason(head)
    return (
        f"superseded: the deploy branch no longer contains {short_sha(commit)} "
        f"(it is at {short_sha(head.revision)}); not syncing an old revision over it"
    )


def application_problems(app_json: Mapping[str, Any] | Application, app: str, project: str) -> list[str]:
    """Pre-flight: why this Application is not the one the policy means (wrong name or project)."""
    parsed = parse_application(app_json)
    problems: list[str] = []
    name = parsed.metadata.name if parsed.metadata else None
    if name and name != app:
        problems.append(f"Argo CD answered for application {name!r}, not {app!r}")
    actual = parsed.spec.project if parsed.spec else None
    if actual and actual != project:
        problems.append(f"application {app!r} is in Argo CD project {actual!r}, the policy says {project!r}")
    return problems


def reported_revisions(app_json: Mapping[str, Any] | Application) -> tuple[str, ...]:
    """Every revision the Application names: the requested and last synced one, and the compared one."""
    app = parse_application(app_json)
    status = app.status or Status()
    state = status.operation_state
    found = [
        app.operation.sync.revision if app.operation and app.operation.sync else None,
        state.sync_result.revision if state and state.sync_result else None,
        status.sync.revision if status.sync else None,
    ]
    return tuple(dict.fromkeys(r.strip().lower() for r in found if r and r.strip()))


def parse_application(app_json: Mapping[str, Any] | Application) -> Application:
    """Read Application JSON; raises ValueError (pydantic ValidationError) when a field has a wrong type."""
    if isinstance(app_json, Application):
        return app_json
    return Application.model_validate(app_json)


def short_sha(revision: str | None) -> str:
    """The first 12 characters of a revision, for messages."""
    return (revision or "?")[:_SHORT_SHA]


def is_auto_sync(app_json: Mapping[str, Any] | Application) -> bool:
    """Auto-sync is on iff ``spec.syncPolicy.automated`` is present and ``enabled`` is not false."""
    spec = parse_application(app_json).spec
    automated = spec.sync_policy.automated if spec and spec.sync_policy else None
    return automated is not None and automated.enabled is not False


def op_in_progress(app_json: Mapping[str, Any] | Application) -> bool:
    """An operation is requested or running (top-level ``operation`` present); a new sync would get 400."""
    return parse_application(app_json).operation is not None


def op_covers_revision(
    app_json: Mapping[str, Any] | Application, revision: str, lineage: Mapping[str, Lineage] | None = None
) -> bool:
    """The running operation, or the last one when none runs, deploys ``revision`` (or, with ``lineage``,
    a descendant of it with the app's paths unchanged)."""
    app = parse_application(app_json)
    ours = _Ours(revision, lineage or {})
    state = app.status.operation_state if app.status else None
    result_rev = state.sync_result.revision if state and state.sync_result else None
    if app.operation is not None:
        requested = app.operation.sync.revision if app.operation.sync else None
        # operationState may still be absent (not picked up yet); the request carries the resolved SHA.
        return ours.covers(requested) or ours.covers(result_rev)
    return ours.covers(result_rev)


def last_op_succeeded(app_json: Mapping[str, Any] | Application) -> bool:
    """No operation runs and the last one finished with phase Succeeded."""
    app = parse_application(app_json)
    state = app.status.operation_state if app.status else None
    return app.operation is None and state is not None and state.finished_at is not None and state.phase == "Succeeded"


def app_health(app_json: Mapping[str, Any] | Application) -> AppHealth:
    """The application's current sync/health summary, with no judgement about any revision."""
    app = parse_application(app_json)
    status = app.status or Status()
    state = status.operation_state
    health = status.health.status if status.health and status.health.status else "Unknown"
    detail = _health_detail(status) if health != "Healthy" else ""
    return AppHealth(
        app=(app.metadata.name if app.metadata else None) or "",
        sync_status=(status.sync.status if status.sync else None) or "Unknown",
        health_status=health,
        revision=status.sync.revision if status.sync else None,
        operation_phase=state.phase if state else None,
        message=detail or (state.message if state and state.message else ""),
    )


def judge_sync(
    app_json: Mapping[str, Any] | Application, revision: str, lineage: Mapping[str, Lineage] | None = None
) -> SyncVerdict:
    """Apply the "done" rule of docs/argocd-wire.md §0.5 (the `argocd app wait` rule) for ``revision``.

    ``lineage`` holds the git facts of the other revisions the app reports (``reported_revisions``);
    without it only ``revision`` itself counts. A reported revision that superseded ours ends the
    wait (``superseded``); one not looked up yet counts as not ours.
    """
    app = parse_application(app_json)
    health = app_health(app)
    ours = _Ours(revision, lineage or {})
    newer = ours.superseding(reported_revisions(app))
    if newer is not None:
        return SyncVerdict(False, False, superseded_reason(newer), health, superseded=newer)
    failed, reason = _judge(app, ours)
    return SyncVerdict(done=reason is None, failed=failed, reason=reason or _done_reason(ours, health), health=health)


@dataclass(frozen=True)
class _Ours:
    """Our rollback commit and the lineage of other revisions: which of them deploy our content."""

    revision: str
    lineage: Mapping[str, Lineage]

    def facts(self, seen: str | None) -> Lineage | None:
        if not seen:
            return None
        key = seen.strip().lower()
        return self.lineage.get(key) or self.lineage.get(seen)

    def covers(self, seen: str | None) -> bool:
        """``seen`` is our commit, or a descendant with the app's paths unchanged."""
        if _same_revision(seen, self.revision):
            return True
        facts = self.facts(seen)
        return facts is not None and facts.contains_ours

    def superseding(self, revisions: tuple[str, ...]) -> Lineage | None:
        """The first of ``revisions`` in which a later commit changed the app's paths."""
        for seen in revisions:
            facts = self.facts(seen)
            if facts is not None and facts.relation is Relation.superseded:
                return facts
        return None


def _done_reason(ours: _Ours, health: AppHealth) -> str:
    at = health.revision or ours.revision
    if _same_revision(at, ours.revision):
        return f"Synced and Healthy at {short_sha(ours.revision)}"
    return f"Synced and Healthy at {short_sha(at)}, which contains {short_sha(ours.revision)} (app paths unchanged)"


def _judge(app: Application, ours: _Ours) -> tuple[bool, str | None]:
    """(failed, reason why not done); reason None means done."""
    revision = ours.revision
    status = app.status or Status()
    state = status.operation_state
    if app.operation is not None:
        covered = op_covers_revision(app, revision, ours.lineage)
        if covered and state is not None and state.phase in _FAILED_PHASES:
            return True, f"operation {state.phase}: {state.message or 'no message'}"
        return False, _running_reason(app, state, ours)
    if state is None:
        return False, "no sync operation recorded yet"
    op_rev = state.sync_result.revision if state.sync_result else None
    if not ours.covers(op_rev):
        return False, f"last operation deployed {short_sha(op_rev)}, not {short_sha(revision)}"
    if state.phase in _FAILED_PHASES:
        return True, f"operation {state.phase}: {state.message or 'no message'}"
    if state.finished_at is None:
        phase = state.phase or "pending"
        return False, f"operation {phase} but not finished: {state.message or 'no message'}"
    if state.phase != "Succeeded":
        return False, f"operation {state.phase or 'pending'}: {state.message or 'no message'}"
    if status.reconciled_at is None or status.reconciled_at < state.finished_at:
        # Until the post-sync reconcile, status.sync/health are the stale pre-sync values.
        return False, "waiting for reconcile after sync"
    sync = status.sync or SyncStatus()
    if sync.status != "Synced" or not ours.covers(sync.revision):
        return False, f"sync status {sync.status or 'Unknown'} at {short_sha(sync.revision)}"
    health = status.health.status if status.health and status.health.status else "Unknown"
    if health != "Healthy":
        detail = _health_detail(status)
        return False, f"health {health}: {detail}" if detail else f"health {health}"
    return False, None


def _running_reason(app: Application, state: OperationState | None, ours: _Ours) -> str:
    if not op_covers_revision(app, ours.revision, ours.lineage):
        requested = app.operation.sync.revision if app.operation and app.operation.sync else None
        return f"another operation is running (for {short_sha(requested)})"
    if state is None:
        return "sync requested, not started yet"
    message = state.message or "no message"
    if state.finished_at is not None:
        # Running + finishedAt = a failed attempt waiting for its retry (docs/argocd-wire.md §4).
        return f"sync attempt failed, retrying: {message}"
    if "blocked by sync window" in message:
        return "sync blocked by sync window"
    return f"sync running: {message}"


def _health_detail(status: Status) -> str:
    """Why the app is not Healthy: the app's own health message, else its unhealthy resources."""
    if status.health and status.health.message:
        return status.health.message
    app_status = status.health.status if status.health else None
    unhealthy = [r for r in status.resources or [] if r.health and r.health.status not in (None, "Healthy")]
    # Resources in the app's own state explain it best; list them first.
    unhealthy.sort(key=lambda r: r.health is None or r.health.status != app_status)
    parts = [_resource_detail(r, app_status) for r in unhealthy]
    shown = "; ".join(parts[:_MAX_DETAILS])
    return f"{shown} (+{len(parts) - _MAX_DETAILS} more)" if len(parts) > _MAX_DETAILS else shown


def _resource_detail(res: ResourceStatus, app_status: str | None) -> str:
    health = res.health or HealthStatus()
    what = f"{res.kind or '?'}/{res.name or '?'}"
    if health.status != app_status:
        what = f"{what} {health.status}"
    return f"{what}: {health.message}" if health.message else what


def _same_revision(seen: str | None, wanted: str) -> bool:
    # Argo CD stores full 40-hex SHAs; compare case-insensitively, never by prefix.
    if not seen or not wanted.strip():
        return False  # pragma: no mutate (None is as false as False to every caller)
    return seen.strip().lower() == wanted.strip().lower()
