"""A canary rig: a signed GitOps sandbox with a route, the real git adapter and Argo CD client, the Argo CD
stand-in moving in (fast) real time, and a scripted Prometheus HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from rollbackbot.adapters.argocd.client import ArgoCDClient
from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.adapters.git.route_commit import RouteCommitter
from rollbackbot.adapters.prometheus import PrometheusClient
from rollbackbot.canary import CanaryRollout
from rollbackbot.core.commit_message import parse_commit_trailers
from rollbackbot.core.policy import Analysis
from rollbackbot.testing.argocd import FakeArgoState, create_app, get_state
from rollbackbot.testing.argocd.config import FakeArgoConfig, make_token
from rollbackbot.testing.gitops import AppSpec, GitOpsSandbox, Release, build_sandbox
from rollbackbot.testing.prometheus import Answer, ScriptedPrometheus
from tests.canary.helpers import KIND_FILES, ROUTES

TOKEN = make_token("proj:ml-prod:rollbackbot")
ROUTE_FILE = "apps/chat-llm/route.yaml"
QUERY = "safe_error_ratio"


@dataclass
class CanaryRig:
    """What a test drives and inspects."""

    sandbox: GitOpsSandbox
    argo: FakeArgoState
    prometheus: ScriptedPrometheus
    rollout: CanaryRollout
    head_before: str
    events: list[str] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    clock: float = 0.0  # the rollout's monotonic clock: moves only when it sleeps

    def step_commits(self) -> list[dict[str, str]]:
        """Trailers of the commits since the rig was built, oldest first."""
        messages = self.sandbox.git("log", "--reverse", "--format=%B%x00", f"{self.head_before}..{self.sandbox.branch}")
        return [parse_commit_trailers(m) for m in messages.split("\x00") if m.strip()]

    def files_changed(self) -> list[list[str]]:
        """Paths each commit since the rig was built touched, oldest first."""
        commits = self.sandbox.git("rev-list", "--reverse", f"{self.head_before}..{self.sandbox.branch}").split()
        return [self.sandbox.git("show", "--format=", "--name-only", c).split() for c in commits]

    def route(self) -> str:
        """The route file at the deploy branch head."""
        return self.sandbox.show(self.sandbox.branch, ROUTE_FILE)


async def _controller(state: FakeArgoState) -> None:
    while True:  # the stand-in's controller only moves when time is advanced in-process
        state.advance(0.05)
        await asyncio.sleep(0.01)


def build(tmp: Path, kind: str) -> GitOpsSandbox:
    """Sandbox with chat-llm 1.0.0 and 1.1.0 and the route (all traffic on the compromised release)."""
    sandbox = build_sandbox(tmp / "gitops", [AppSpec("chat-llm", [Release("1.0.0"), Release("1.1.0")])])
    sandbox.commit_paths({ROUTE_FILE: (ROUTES / KIND_FILES[kind]).read_text()}, "chat-llm: route")
    return sandbox


@contextlib.asynccontextmanager
async def canary_rig(
    tmp: Path,
    scripts: Mapping[str, Sequence[Answer]],
    kind: str = "HTTPRoute",
    sandbox: GitOpsSandbox | None = None,
    prometheus_url: str | None = None,
) -> AsyncIterator[CanaryRig]:
    """Everything wired; ``scripts`` are the Prometheus answers per query, unless ``prometheus_url``
    names a real server, which then answers every analysis whatever URL the policy gives."""
    sandbox = sandbox or build(tmp, kind)
    config = FakeArgoConfig(
        token=TOKEN,
        repo=str(sandbox.remote_path),
        apps=[{"name": "chat-llm", "project": "ml-prod", "path": "apps/chat-llm", "autoSync": False}],
        reconcileInterval=0,
    )
    app = create_app(config)
    state = get_state(app)
    argocd = ArgoCDClient(
        "http://argocd",
        SecretStr(TOKEN),
        transport=httpx.ASGITransport(app=app),
        poll_interval=0.02,
        refresh_timeout=1.0,
        retry_attempts=2,
        retry_wait_max=0.05,
    )
    repo = GitOpsRepository(sandbox.remote_url, sandbox.branch, tmp / "clone", sandbox.allowed_signers)
    prometheus = ScriptedPrometheus(scripts)
    clients: list[PrometheusClient] = []

    def queries(analysis: Analysis) -> PrometheusClient:
        if prometheus_url is not None:
            clients.append(PrometheusClient(prometheus_url))
        else:
            clients.append(PrometheusClient(analysis.prometheus.url, transport=prometheus.transport()))
        return clients[-1]

    rig = CanaryRig(sandbox, state, prometheus, None, sandbox.head())  # type: ignore[arg-type]

    async def sleep(seconds: float) -> None:
        rig.sleeps.append(seconds)
        rig.clock += seconds
        await asyncio.sleep(0)

    rig.rollout = CanaryRollout(
        steps_log=RouteCommitter(repo),
        argocd=argocd,
        queries=queries,
        record=lambda _incident, detail: rig.events.append(detail),
        sleep=sleep,
        monotonic=lambda: rig.clock,
    )
    ticker = asyncio.create_task(_controller(state))
    try:
        yield rig
    finally:
        ticker.cancel()
        await argocd.aclose()
        for client in clients:
            await client.aclose()
