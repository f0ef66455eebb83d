"""Rules over Argo CD Application JSON: is auto-sync on, and has the sync of a revision finished.

Purely computational: no I/O, no clock reads. Every field is optional because older Argo CD servers
omit many of them (docs/argocd-wire.md §10) and fresh applications lack others; a missing field means "not
known yet", never a KeyError. Wire facts are from docs/argocd-wire.md §0.5, §4 and §6.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
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
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class Automated(_Wire):
    enabled: bool | None = None


class SyncPolicy(_Wire):
    automated: Automated | None = None


class Spec(_Wire):
    sync_policy: SyncPolicy | None = None


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


@dataclass(frozen=True)
class SyncVerdict:
    """Whether the sync of one revision is finished, failed, or still under way, and why."""

    done: bool
    failed: bool
    reason: str
    health: AppHealth


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


def op_covers_revision(app_json: Mapping[str, Any] | Application, revision: str) -> bool:
    """The running operation, or the last one when none runs, deploys ``revision``."""
    app = parse_application(app_json)
    state = app.status.operation_state if app.status else None
    result_rev = state.sync_result.revision if state and state.sync_result else None
    if app.operation is not None:
        requested = app.operation.sync.revision if app.operation.sync else None
        # operationState may still be absent (not picked up yet); the request carries the resolved SHA.
        return _same_revision(requested, revision) or _same_revision(result_rev, revision)
    return _same_revision(result_rev, revision)


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


def judge_sync(app_json: Mapping[str, Any] | Application, revision: str) -> SyncVerdict:
    """Apply the "done" rule of docs/argocd-wire.md §0.5 (the `argocd app wait` rule) for ``revision``."""
    app = parse_application(app_json)
    health = app_health(app)
    failed, reason = _judge(app, revision)
    return SyncVerdict(done=reason is None, failed=failed, reason=reason or _done_reason(revision), health=health)


def _done_reason(revision: str) -> str:
    return f"Synced and Healthy at {short_sha(revision)}"


def _judge(app: Application, revision: str) -> tuple[bool, str | None]:
    """(failed, reason why not done); reason None means done."""
    status = app.status or Status()
    state = status.operation_state
    if app.operation is not None:
        ours = op_covers_revision(app, revision)
        if ours and state is not None and state.phase in _FAILED_PHASES:
            return True, f"operation {state.phase}: {state.message or 'no message'}"
        return False, _running_reason(app, state, revision)
    if state is None:
        return False, "no sync operation recorded yet"
    op_rev = state.sync_result.revision if state.sync_result else None
    if not _same_revision(op_rev, revision):
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
    if sync.status != "Synced" or not _same_revision(sync.revision, revision):
        return False, f"sync status {sync.status or 'Unknown'} at {short_sha(sync.revision)}"
    health = status.health.status if status.health and status.health.status else "Unknown"
    if health != "Healthy":
        detail = _health_detail(status)
        return False, f"health {health}: {detail}" if detail else f"health {health}"
    return False, None


def _running_reason(app: Application, state: OperationState | None, revision: str) -> str:
    if not op_covers_revision(app, revision):
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
        return False
    return seen.strip().lower() == wanted.strip().lower()
