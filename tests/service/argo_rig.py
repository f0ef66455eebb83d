"""A real rig for Argo CD behaviour tests: signed GitOps sandbox, the real git adapter and Argo CD client,
and the Argo CD stand-in in-process with its controller moving in (fast) real time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from rollbackbot.adapters.argocd.client import ArgoCDClient
from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.clock import SystemClock
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.incidents import Incident
from rollbackbot.core.policy import Policy
from rollbackbot.ports import ArgoCD
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.argocd import FakeArgoState, create_app, get_state
from rollbackbot.testing.argocd.config import FakeArgoConfig, make_token
from rollbackbot.testing.gitops import AppSpec, GitOpsSandbox, Release, build_sandbox

TOKEN = make_token("proj:ml-prod:rollbackbot")
APP = "docsum-llm"
PROJECT = "ml-prod"


def fleet_policy(sync_timeout: str = "8s") -> Policy:
    """One automatic policy for every app: ``app`` label -> apps/<app>, tags <app>/v*."""
    return Policy.from_document(
        {
            "apiVersion": "rollbackbot/v1",
            "kind": "RollbackPolicy",
            "metadata": {"name": "fleet"},
            "spec": {
                "matchers": ['app =~ ".+"'],
                "target": {
                    "argocdApps": ["${labels.app}"],
                    "project": PROJECT,
                    "paths": ["apps/${labels.app}"],
                    "tags": "${labels.app}/v*",
                },
                "mode": "auto",
                "sync": {"timeout": sync_timeout, "prune": True},
                "forensics": {"budget": "1s"},
            },
        }
    )


def releases(app: str = APP) -> AppSpec:
    """1.0.0 good, 1.1.0 deployed and Degraded: the incident."""
    return AppSpec(app, [Release("1.0.0"), Release("1.1.0", health="Degraded")])


@dataclass
class Rig:
    """Everything a test needs to fire an alert and look at git and Argo CD afterwards."""

    tmp: Path
    sandbox: GitOpsSandbox
    argo: FakeArgoState
    transport: httpx.ASGITransport
    git: GitOpsRepository
    service: Service
    head_before: str

    def client(self, token: str = TOKEN) -> ArgoCDClient:
        """A real Argo CD client talking to the in-process stand-in, with short waits."""
        return ArgoCDClient(
            "http://argocd",
            SecretStr(token),
            transport=self.transport,
            poll_interval=0.02,
            refresh_timeout=1.0,
            retry_attempts=2,
            retry_wait_max=0.05,
            busy_timeout=5.0,
        )

    def new_service(self, argocd: ArgoCD) -> Service:
        """A service on the same store and clone (a restart), using ``argocd``."""
        return Service(
            store=SqlIncidentStore(f"sqlite:///{self.tmp}/state.db"),
            git=self.git,
            argocd=argocd,
            policies=[fleet_policy()],
            clock=SystemClock(),
        )

    def send_alert(self, app: str = APP) -> str:
        """Deliver a firing alert for ``app``; the incident id."""
        labels = {"alertname": "ModelAnomaly", "app": app, "severity": "critical"}
        body = notification([alert(labels, SystemClock().now() - timedelta(minutes=1))])
        return self.service.receive(AlertmanagerPayload.model_validate(body)).incidents[0]

    async def fire(self, app: str = APP) -> Incident:
        """Deliver an alert and drive its incident until nothing more happens."""
        incident_id = self.send_alert(app)
        await asyncio.wait_for(self.service.idle(), timeout=60)
        incident = self.service.store.get(incident_id)
        assert incident is not None
        return incident

    def sync_posts(self) -> list[dict[str, Any]]:
        """Every POST /sync the stand-in answered."""
        return [r for r in self.argo.requests if r["method"] == "POST" and str(r["path"]).endswith("/sync")]

    def commits_since_start(self) -> list[str]:
        """Commits on the deploy branch since the rig was built, newest first."""
        return self.sandbox.git("rev-list", f"{self.head_before}..{self.sandbox.branch}").split()


async def _controller(state: FakeArgoState) -> None:
    while True:  # the stand-in's controller only moves when time is advanced in-process
        state.advance(0.05)
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def argo_rig(
    tmp: Path,
    *,
    auto_sync: bool = False,
    argo_apps: list[dict[str, Any]] | None = None,
    token: str = TOKEN,
    argo_token: str = TOKEN,
) -> AsyncIterator[Rig]:
    """Sandbox with docsum-llm (and a second app, ``other``); the stand-in accepts ``argo_token``,
    the service calls it with ``token``."""
    sandbox = build_sandbox(tmp / "gitops", [releases(), releases("other")])
    apps = argo_apps
    if apps is None:
        apps = [
            {"name": name, "project": PROJECT, "path": f"apps/{name}", "autoSync": auto_sync} for name in (APP, "other")
        ]
    config = FakeArgoConfig(token=argo_token, repo=str(sandbox.remote_path), apps=apps, reconcileInterval=0)
    app = create_app(config)
    state = get_state(app)
    transport = httpx.ASGITransport(app=app)
    git = GitOpsRepository(sandbox.remote_url, sandbox.branch, tmp / "clone", sandbox.allowed_signers)
    rig = Rig(tmp, sandbox, state, transport, git, None, sandbox.head())  # type: ignore[arg-type]
    argocd = rig.client(token)
    rig.service = rig.new_service(argocd)
    ticker = asyncio.create_task(_controller(state))
    try:
        yield rig
    finally:
        ticker.cancel()
        await rig.service.stop()
        await argocd.aclose()
