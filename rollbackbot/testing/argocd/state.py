"""State of the fake Argo CD: apps, sessions, recorded requests, virtual time, and the API operations.

API operations validate in the real server's order (docs/argocd-wire.md §3.2–3.4) and hand work to the
Controller; nothing here sleeps except ``get(..., refresh=...)`` which blocks like the real server.
"""

from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import dataclass
from typing import Any

from rollbackbot.testing.argocd.config import AppFaults, FakeArgoConfig, make_token, normalise_subject
from rollbackbot.testing.argocd.controller import Controller
from rollbackbot.testing.argocd.decode import ArgoError
from rollbackbot.testing.argocd.git import GitError, GitReader
from rollbackbot.testing.argocd.model import AppSim, Stage
from rollbackbot.testing.argocd.patch import apply_patch
from rollbackbot.testing.argocd.wire import (
    ARGOCD_NAMESPACE,
    JSON,
    auto_sync_enabled,
    order_status,
    rollback_operation,
    sync_operation,
)

IMMUTABLE_METADATA = ("name", "namespace", "uid", "creationTimestamp", "resourceVersion", "generation")


@dataclass(frozen=True)
class Caller:
    """An authenticated API caller; a project-role token only sees its own project."""

    username: str

    @property
    def project(self) -> str | None:
        """The project of a ``proj:<project>:<role>`` subject, None for accounts that see all."""
        parts = self.username.split(":")
        return parts[1] if len(parts) == 3 and parts[0] == "proj" else None


class FakeArgoState:
    """Everything the fake server knows; safe to drive directly from tests (single event loop)."""

    def __init__(self, config: FakeArgoConfig) -> None:
        self.config = config
        self.git = GitReader(config.repo_path(), config.branch)
        self.controller = Controller(config, self.git)
        self.apps: dict[str, AppSim] = {a.name: self.controller.deploy_initial(a) for a in config.apps}
        self.sessions: dict[str, str] = {config.token: config.subject()}
        self.requests: list[JSON] = []
        self.ticker_running = False

    # --- time -------------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """Virtual seconds since the fake started."""
        return self.controller.t

    def tick(self) -> None:
        """Run one controller pass over every app at the current virtual time."""
        for app in self.apps.values():
            self.controller.step(app)

    def advance(self, seconds: float) -> None:
        """Move virtual time forward in ``tick``-sized steps, running the controller at each."""
        remaining = seconds
        while remaining > 1e-9:
            step = min(self.config.tick, remaining)
            self.controller.t += step
            remaining -= step
            self.tick()

    async def run_ticker(self) -> None:
        """Drive virtual time with the wall clock until cancelled (used when served)."""
        self.ticker_running = True
        last = time.monotonic()
        try:
            while True:
                await asyncio.sleep(self.config.tick)
                now = time.monotonic()
                self.advance(now - last)
                last = now
        finally:
            self.ticker_running = False

    # --- auth and lookup --------------------------------------------------------------------------

    def authenticate(self, token: str | None) -> Caller:
        """The caller of a bearer/cookie token; 401 like the real auth interceptor otherwise."""
        if token is None:
            raise ArgoError(16, "no session information")
        username = self.sessions.get(token)
        if username is None:
            raise ArgoError(16, "invalid session: token signature is invalid")
        return Caller(username)

    def login(self, username: str, password: str, token: str) -> str:
        """POST /api/v1/session: a new session token for a configured local user."""
        if token:
            raise ArgoError(16, "token-based session creation no longer supported. please upgrade argocd cli to v0.7+")
        if not username or not password:
            raise ArgoError(16, "no credentials supplied")
        if self.config.users.get(username) != password:
            raise ArgoError(16, "Invalid username or password")
        session = make_token(f"{username}:login", issued_at=int(self.controller.now().timestamp()))
        self.sessions[session] = normalise_subject(f"{username}:login")
        return session

    def find(self, name: str, project: str | None, caller: Caller) -> AppSim:
        """RBAC-style lookup: 403 without ``project`` for missing/forbidden apps, 404 with it."""
        app = self.apps.get(name)
        visible = app is not None and caller.project in (None, app.config.project)
        if project:
            if caller.project not in (None, project):
                raise ArgoError(7, "permission denied")
            if app is None or not visible or app.config.project != project:
                raise ArgoError(5, f'applications.argoproj.io "{name}" not found')
            return app
        if app is None or not visible:
            raise ArgoError(7, "permission denied")
        return app

    def app(self, name: str) -> AppSim:
        """The app record (KeyError if unknown) — for tests and /_fake routes."""
        return self.apps[name]

    # --- API operations ---------------------------------------------------------------------------

    def snapshot(self, app: AppSim) -> JSON:
        """The Application as the API returns it (a copy)."""
        return copy.deepcopy(app.obj)

    async def get(self, app: AppSim, refresh: str | None) -> JSON:
        """GET app; with ``refresh`` block until the controller reconciled (or forever with refreshHang)."""
        if refresh is not None:
            self.controller.request_refresh(app, "hard" if refresh == "hard" else "normal")
            while app.refresh_due is not None:
                if self.ticker_running or app.faults.refreshHang:
                    await asyncio.sleep(self.config.tick)
                else:  # nobody drives time in-process: the blocked request lets it pass
                    self.advance(max(app.refresh_due - self.now, self.config.tick))
        return self.snapshot(app)

    def sync(self, app: AppSim, request: JSON, caller: Caller) -> JSON:
        """POST sync: window → auto-sync revision → resolve → operation in progress → store operation."""
        if app.faults.syncWindowBlocked:
            raise ArgoError(7, "cannot sync: blocked by sync window")
        target_revision = app.spec.get("source", {}).get("targetRevision", "")
        wanted = request.get("revision", "")
        if wanted and wanted != target_revision and auto_sync_enabled(app.spec) and not request.get("dryRun"):
            raise ArgoError(9, f"Cannot sync to {wanted}: auto-sync currently set to {target_revision}")
        try:
            revision = self.git.resolve(wanted or target_revision or "HEAD")
        except GitError as exc:
            raise ArgoError(9, f"rpc error: code = Unknown desc = {exc}") from None
        if "operation" in app.obj:
            raise ArgoError(9, "another operation is already in progress")
        operation = sync_operation(request, revision, app.spec, caller.username)
        self.controller.queue(app, operation, f"{caller.username} initiated sync to {revision}")
        return self.snapshot(app)

    def rollback(self, app: AppSim, request: JSON, caller: Caller) -> JSON:
        """POST rollback to a history id; refused while auto-sync is on."""
        if auto_sync_enabled(app.spec):
            raise ArgoError(9, "rollback cannot be initiated when auto-sync is enabled")
        wanted = request["id"]
        entry = next((h for h in app.status.get("history", []) if h.get("id") == wanted), None)
        if entry is None:
            raise ArgoError(3, f"application {ARGOCD_NAMESPACE}/{app.name} does not have deployment with id {wanted}")
        if "operation" in app.obj:
            raise ArgoError(9, "another operation is already in progress")
        operation = rollback_operation(entry, request, app.spec, caller.username)
        self.controller.queue(app, operation, f"{caller.username} initiated rollback to {wanted}")
        return self.snapshot(app)

    def terminate(self, app: AppSim) -> JSON:
        """DELETE operation: only while the controller runs it; it ends Failed on the next tick."""
        state = app.status.get("operationState")
        if "operation" not in app.obj or state is None:
            raise ArgoError(3, "Unable to terminate operation. No operation is in progress")
        state["phase"] = "Terminating"
        app.stage, app.due = Stage.terminating, self.now
        self.controller.touch(app)
        return {}

    def patch(self, app: AppSim, request: JSON) -> JSON:
        """PATCH with a merge or JSON patch applied to the whole Application object."""
        patched = apply_patch(self.snapshot(app), request.get("patch", ""), request.get("patchType", ""))
        for part in ("metadata", "spec", "status"):
            if not isinstance(patched.get(part), dict):
                raise ArgoError(3, f"invalid application: {part} must be an object")
        metadata = patched["metadata"] | {k: app.obj["metadata"][k] for k in IMMUTABLE_METADATA}
        rebuilt: JSON = {"metadata": metadata, "spec": patched["spec"], "status": order_status(patched["status"])}
        if isinstance(patched.get("operation"), dict):
            rebuilt["operation"] = patched["operation"]
        app.obj = rebuilt
        self.controller.touch(app)
        return self.snapshot(app)

    # --- fake-only controls -----------------------------------------------------------------------

    def set_faults(self, name: str, knobs: dict[str, Any]) -> AppFaults:
        """Merge fault knobs into an app's current ones (validated; unknown keys rejected)."""
        app = self.apps[name]
        app.faults = AppFaults.model_validate(app.faults.model_dump() | knobs)
        return app.faults

    def take_failure(self, name: str | None) -> int | None:
        """Pop the next forced HTTP status of ``failNext`` for the app a request addresses."""
        app = self.apps.get(name) if name else None
        return app.faults.failNext.pop(0) if app and app.faults.failNext else None

    def raw(self, name: str) -> JSON:
        """The Application as stored, plus simulation internals under ``fake`` (GET /_fake/apps/{name})."""
        app = self.apps[name]
        return self.snapshot(app) | {
            "fake": {
                "stage": app.stage.value,
                "deployedRevision": app.deployed_revision,
                "live": [f"{m.kind}/{m.namespace}/{m.name}" for m in app.live.values()],
                "refreshPending": app.refresh_due is not None,
                "statusStale": app.settle_due is not None,
                "virtualTime": self.now,
                "faults": app.faults.model_dump(),
                "events": copy.deepcopy(app.events),
            }
        }
