"""The simulated application controller (docs/argocd-wire.md §5.1, §8.6): operations, reconciles, health.

Time is virtual (``Controller.t`` seconds since start): a background task moves it with the wall
clock when served, tests move it with ``advance()``. Each tick reads the app record, decides, acts —
all transitions live here, so the API layer only validates requests and queues operations.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from rollbackbot.testing.argocd.config import FakeAppConfig, FakeArgoConfig
from rollbackbot.testing.argocd.git import WORKLOAD_KINDS, GitError, GitReader, Manifest
from rollbackbot.testing.argocd.model import AppSim, Stage
from rollbackbot.testing.argocd.wire import (
    JSON,
    Key,
    auto_operation,
    auto_sync_enabled,
    fmt_time,
    initial_object,
    object_health,
    order_status,
    resource_statuses,
    result_resources,
    worst,
)

REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"
WINDOW_BLOCKED = "Sync operation blocked by sync window"
ERROR_MESSAGE = (
    "ComparisonError: Failed to load target state: failed to generate manifest for source 1 of 1: "
    "rpc error: code = Unknown desc = simulated manifest generation error"
)
EPSILON = 1e-6  # virtual time is a sum of float ticks; a due time must not slip a tick on rounding
STATE_ORDER = ("operation", "phase", "message", "syncResult", "startedAt", "finishedAt", "retryCount")


class Controller:
    """Moves every app through its operation lifecycle and keeps status in step with Git."""

    def __init__(self, config: FakeArgoConfig, git: GitReader) -> None:
        self.config = config
        self.git = git
        start = config.startTime or datetime.now(UTC)
        self.start = (start if start.tzinfo else start.replace(tzinfo=UTC)).replace(microsecond=0)
        self.t = 0.0
        self._rv = 1000

    def now(self) -> datetime:
        """Current virtual time."""
        return self.start + timedelta(seconds=self.t)

    def stamp(self, offset: float = 0.0) -> str:
        """Current virtual time (plus ``offset`` seconds) in wire format."""
        return fmt_time(self.now() + timedelta(seconds=offset))

    def touch(self, app: AppSim) -> None:
        """Record a write: new resourceVersion; generation grows on every update (no status subresource)."""
        self._rv += 1
        app.obj["metadata"]["resourceVersion"] = str(self._rv)
        app.obj["metadata"]["generation"] += 1
        app.obj["status"] = order_status(app.status)

    def event(self, app: AppSim, reason: str, message: str, warning: bool = False) -> None:
        """Record a Kubernetes event on the Application."""
        kind = "Warning" if warning else "Normal"
        app.events.append({"reason": reason, "message": message, "type": kind, "time": self.stamp()})

    def deploy_initial(self, cfg: FakeAppConfig) -> AppSim:
        """An app deployed at the branch head by a past successful sync, Synced, health from Git."""
        obj = initial_object(cfg, self.config.source_repo_url(), self.config.branch, self.now() - timedelta(days=1))
        app = AppSim(cfg, cfg.faults.model_copy(deep=True), obj, next_poll=self.config.reconcileInterval)
        head = self.git.resolve(self.config.branch)
        objects = self.git.manifests(head, cfg.path, cfg.namespace)
        app.live, app.deployed_revision = {m.key: m for m in objects}, head
        operation = auto_operation(head, app.spec)
        if not cfg.autoSync:
            operation["initiatedBy"], operation["retry"] = {"username": "admin"}, {}
        results, _ = result_resources(objects, {}, prune=False)
        app.status["history"] = []
        self._append_history(app, operation, self.stamp(-33), self.stamp(-30))
        app.status["operationState"] = {
            "operation": operation,
            "phase": "Succeeded",
            "message": "successfully synced (all tasks run)",
            "syncResult": {"resources": results, "revision": head, "source": copy.deepcopy(app.spec["source"])},
            "startedAt": self.stamp(-33),
            "finishedAt": self.stamp(-30),
        }
        self.reconcile(app)
        return app

    def queue(self, app: AppSim, operation: JSON, message: str) -> None:
        """Store a requested operation; the API clears the last operationState in the same write."""
        app.obj["operation"] = operation
        app.status.pop("operationState", None)
        app.stage, app.due, app.retries = Stage.queued, self.t + self.config.delays.running, 0
        self.event(app, "OperationStarted", message)
        self.touch(app)

    def request_refresh(self, app: AppSim, kind: str) -> None:
        """Annotate the app for a refresh the controller processes after ``refreshDelay``."""
        app.obj["metadata"].setdefault("annotations", {})[REFRESH_ANNOTATION] = kind
        if app.refresh_due is None:
            app.refresh_due = self.t + self.config.refreshDelay
        self.touch(app)

    def step(self, app: AppSim) -> None:
        """Process everything due for ``app`` at the current virtual time."""
        for _ in range(8):  # several transitions can fall due at the same instant (zero delays)
            if not self._advance_once(app):
                break
        if app.settle_due is None and self._update_health(app):
            self.touch(app)

    def _advance_once(self, app: AppSim) -> bool:
        settled = app.settle_due is None
        if app.settle_due is not None and self._is_due(app.settle_due):
            self.reconcile(app)
            return True
        refresh_ready = app.refresh_due is not None and self._is_due(app.refresh_due) and not app.faults.refreshHang
        if refresh_ready and settled:
            app.refresh_due = None
            annotations = app.obj["metadata"].get("annotations", {})
            annotations.pop(REFRESH_ANNOTATION, None)
            if not annotations:
                app.obj["metadata"].pop("annotations", None)
            self.reconcile(app)
            return True
        if self.config.reconcileInterval and self._is_due(app.next_poll) and settled:
            app.next_poll = self.t + self.config.reconcileInterval
            self.reconcile(app)
            return True
        if app.stage is Stage.idle and "operation" in app.obj:  # written by PATCH, like kubectl would
            app.stage, app.due = Stage.queued, self.t + self.config.delays.running
            return True
        if app.stage is Stage.idle or not self._is_due(app.due):
            return False
        handlers = {Stage.queued: self._pick_up, Stage.running: self._complete, Stage.terminating: self._terminated}
        return handlers[app.stage](app)

    def _is_due(self, when: float) -> bool:
        return when <= self.t + EPSILON

    def _pick_up(self, app: AppSim) -> bool:
        operation = app.obj.get("operation")
        if operation is None:  # removed by a PATCH before the controller got to it
            app.stage = Stage.idle
            return True
        previous = app.status.get("operationState") or {}
        parked = previous.get("message") == WINDOW_BLOCKED
        started = previous["startedAt"] if parked else self.stamp()
        if app.faults.syncWindowBlocked:  # park the op (§5.3) until the knob is cleared
            if not parked:
                state = {"operation": copy.deepcopy(operation), "phase": "Running", "message": WINDOW_BLOCKED}
                app.status["operationState"] = state | {"startedAt": started}
                self.touch(app)
            return not parked
        sync = operation.setdefault("sync", {})  # an operation written by PATCH may leave these out
        source = sync.setdefault("source", copy.deepcopy(app.spec.get("source", {})))
        try:
            sync["revision"] = sync.get("revision") or self.git.resolve(source.get("targetRevision", ""))
            target = self.git.manifests(sync["revision"], source.get("path", ""), app.config.namespace)
        except GitError as exc:
            app.status["operationState"] = {"operation": copy.deepcopy(operation), "phase": "Running"}
            app.status["operationState"]["startedAt"] = started
            result = {"revision": sync.get("revision", ""), "source": source}
            return self._finish(app, "Error", f"ComparisonError: {exc}", result)
        results, _ = result_resources(target, app.live, prune=bool(sync.get("prune")))
        state = {"operation": copy.deepcopy(operation), "phase": "Running", "message": "one or more tasks are running"}
        state["syncResult"] = {"resources": results, "revision": sync["revision"], "source": source}
        app.status["operationState"] = state | {"startedAt": started}
        app.stage, app.due = Stage.running, self.t + self.config.delays.succeeded
        self.touch(app)
        return True

    def _complete(self, app: AppSim) -> bool:
        operation = app.obj.get("operation") or app.status["operationState"]["operation"]
        sync = operation["sync"]
        base_result = {"revision": sync["revision"], "source": sync["source"]}
        if app.faults.syncOutcome == "Error":
            return self._finish(app, "Error", ERROR_MESSAGE, base_result)
        target = self.git.manifests(sync["revision"], sync["source"]["path"], app.config.namespace)
        if app.faults.syncOutcome == "Failed":
            return self._fail_or_retry(app, target, operation, base_result)
        results, _ = result_resources(target, app.live, bool(sync.get("prune")))
        if not sync.get("dryRun"):
            self._apply(app, {m.key: m for m in target}, sync, operation)
        result = {"resources": results} | base_result
        return self._finish(app, "Succeeded", "successfully synced (all tasks run)", result)

    def _fail_or_retry(self, app: AppSim, target: tuple[Manifest, ...], operation: JSON, base: JSON) -> bool:
        """A failed apply: with retries left the op stays Running with finishedAt + retryCount (§5.1.4)."""
        keys = [m.key for m in target if m.kind in WORKLOAD_KINDS] or [m.key for m in target]
        prune = bool(operation["sync"].get("prune"))
        results, failure = result_resources(target, app.live, prune, failed=keys[0] if keys else None)
        message = f"one or more objects failed to apply, reason: {failure}"
        result = {"resources": results} | base
        limit = int(operation.get("retry", {}).get("limit", 0))  # -1 = unlimited
        if limit >= 0 and app.retries >= limit:
            suffix = f" (retried {app.retries} times)." if app.retries else ""
            return self._finish(app, "Failed", message + suffix, result)
        app.retries += 1
        now = self.now()
        when = f"{now.hour % 12 or 12}:{now.minute:02d}{'AM' if now.hour < 12 else 'PM'}"  # Go's "3:04PM"
        state = app.status["operationState"]
        state |= {"message": f"{message}. Retrying attempt #{app.retries} at {when}.", "syncResult": result}
        state |= {"finishedAt": self.stamp(), "retryCount": app.retries}
        app.due = self.t + self.config.delays.succeeded
        self.touch(app)
        return True

    def _apply(self, app: AppSim, target: dict[Key, Manifest], sync: JSON, operation: JSON) -> None:
        selected = [(r.get("group", ""), r.get("kind"), r.get("name")) for r in sync.get("resources", [])]

        def chosen(key: Key) -> bool:
            return not selected or (key[0], key[1], key[3]) in selected

        live = dict(app.live)
        live.update({k: m for k, m in target.items() if chosen(k)})
        for key in [k for k in app.live if k not in target and chosen(k)]:
            if sync.get("prune"):
                del live[key]
        app.changed = {k for k, m in live.items() if k not in app.live or app.live[k].digest != m.digest}
        app.rollout_pending = bool(app.changed)
        app.live = live
        if not selected:  # partial syncs are not recorded in history
            app.deployed_revision = sync["revision"]
            self._append_history(app, operation, app.status["operationState"]["startedAt"], self.stamp())

    def _append_history(self, app: AppSim, operation: JSON, started: str, deployed: str) -> None:
        history: list[JSON] = app.status.setdefault("history", [])
        entry = {"revision": operation["sync"]["revision"], "deployedAt": deployed}
        entry |= {"id": history[-1]["id"] + 1 if history else 0, "source": operation["sync"]["source"]}
        entry |= {"deployStartedAt": started, "initiatedBy": operation["initiatedBy"]}
        history.append(copy.deepcopy(entry))
        del history[: max(0, len(history) - app.config.revisionHistoryLimit)]

    def _finish(self, app: AppSim, phase: str, message: str, result: JSON | None) -> bool:
        state = app.status["operationState"]
        state |= {"phase": phase, "message": message, "finishedAt": self.stamp()}
        if result is not None:
            state["syncResult"] = result
        if app.retries:
            state["retryCount"] = app.retries
        app.status["operationState"] = _ordered(state)
        operation = app.obj.pop("operation", None) or state["operation"]
        revision = operation["sync"].get("revision", "")  # a parked op may not have resolved it yet
        outcome = "succeeded" if phase == "Succeeded" else f"failed: {message}"
        self.event(app, "OperationCompleted", f"Sync operation to {revision} {outcome}", phase != "Succeeded")
        app.stage = Stage.idle
        if not operation["sync"].get("dryRun"):  # the controller refreshes after every real operation
            stale = app.faults.staleStatusSeconds
            app.settle_due = self.t + (stale if stale is not None else self.config.delays.reconcile)
        self.touch(app)
        return True

    def _terminated(self, app: AppSim) -> bool:
        result = app.status["operationState"].get("syncResult")
        return self._finish(app, "Failed", "Operation terminated", result)

    def reconcile(self, app: AppSim) -> None:
        """Compare live objects with the branch head (force-resolved), update sync/health, maybe auto-sync."""
        source = app.spec.get("source", {})
        compared = {"source": copy.deepcopy(source), "destination": copy.deepcopy(app.spec.get("destination", {}))}
        app.status.update(resourceHealthSource="appTree", controllerNamespace="argocd")
        if app.settle_due is not None:
            app.settle_due = None
            if app.rollout_pending:
                app.rollout_pending, app.progressing_until = False, self.t + self.config.delays.healthy
        try:
            head = self.git.resolve(source.get("targetRevision", ""))
            target = self.git.manifests(head, source.get("path", ""), app.config.namespace)
            app.status["sourceType"] = self.git.source_type(head, source.get("path", ""))
        except GitError as exc:
            app.status["sync"] = {"status": "Unknown", "comparedTo": compared}
            condition = {"type": "ComparisonError", "message": f"Failed to load target state: {exc}"}
            app.status["conditions"] = [condition | {"lastTransitionTime": self.stamp()}]
            app.status["reconciledAt"] = self.stamp()
            self.touch(app)
            return
        app.status.pop("conditions", None)
        app.target = {m.key: m for m in target}
        synced = {k: m.digest for k, m in app.live.items()} == {k: m.digest for k, m in app.target.items()}
        before, now = app.status["sync"].get("status"), "Synced" if synced else "OutOfSync"
        if before and before != now:
            self.event(app, "ResourceUpdated", f"Updated sync status: {before} -> {now}")
        app.status["sync"] = {"status": now, "comparedTo": compared, "revision": head}
        app.status["reconciledAt"] = self.stamp()
        self._update_health(app)
        self.touch(app)
        self._maybe_auto_sync(app, head)

    def _update_health(self, app: AppSim) -> bool:
        progressing = not self._is_due(app.progressing_until)
        override = app.faults.healthOverride
        healths = {
            key: object_health(m, progressing and key in app.changed and _rolls_out(m), override)
            for key, m in app.live.items()
        }
        resources = resource_statuses(app.live, app.target, healths)
        health = override or worst(healths.values())
        images = sorted({image for m in app.live.values() for image in m.images()})
        summary = {"images": images} if images else {}
        current = app.status.get("health", {}).get("status")
        if resources == app.status.get("resources", []) and health == current and summary == app.status["summary"]:
            return False
        if resources:
            app.status["resources"] = resources
        else:
            app.status.pop("resources", None)
        app.status["summary"] = summary
        if health != current:
            app.status["health"] = {"status": health, "lastTransitionTime": self.stamp()}
            if current is not None:
                self.event(app, "ResourceUpdated", f"Updated health status: {current} -> {health}")
        return True

    def _maybe_auto_sync(self, app: AppSim, head: str) -> None:
        if not auto_sync_enabled(app.spec) or app.status["sync"]["status"] != "OutOfSync":
            return
        if "operation" in app.obj or app.stage is not Stage.idle or app.faults.syncWindowBlocked:
            return
        last: Any = (app.status.get("operationState") or {}).get("syncResult", {}).get("revision")
        if head in (last, app.last_auto_revision):  # never re-attempts the same revision
            return
        app.last_auto_revision = head
        self.queue(app, auto_operation(head, app.spec), f"Initiated automated sync to '{head}'")


def _rolls_out(m: Manifest) -> bool:
    return m.kind in WORKLOAD_KINDS or m.simulated_health is not None


def _ordered(state: JSON) -> JSON:
    return {k: state[k] for k in STATE_ORDER if k in state}
