"""A readiness rig: a GitOps sandbox with ssh-signed tags (one app per blocker), the Argo CD stand-in in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from rollbackbot.adapters.argocd.client import ArgoCDClient
from rollbackbot.adapters.evidence import FileEvidenceSink
from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.clock import SystemClock
from rollbackbot.core.policy import Policy
from rollbackbot.readiness import ReadinessChecker
from rollbackbot.testing.argocd import FakeArgoState, create_app, get_state
from rollbackbot.testing.argocd.config import FakeArgoConfig, make_token
from rollbackbot.testing.gitops import AppSpec, GitOpsSandbox, Release, build_sandbox

TOKEN = make_token("rollbackbot:apiKey")
PROJECT = "ml-prod"
UNPINNED = "registry.example/unpinned:1.0.0"
ONLY_DIGEST = {"Model-Digest": "sha256:" + "ab" * 32}  # no Data-Version


def two(app: str, first: Release | None = None) -> AppSpec:
    """``app`` with an older release (the would-be target) and the deployed one."""
    return AppSpec(app, [first or Release("1.0.0"), Release("1.1.0")])


APPS = [
    two("good"),
    two("unsigned", Release("1.0.0", signed=False)),
    two("wrongkey", Release("1.0.0", wrong_key=True)),
    two("trailers", Release("1.0.0", trailers=ONLY_DIGEST)),
    two("unpinned", Release("1.0.0", image=UNPINNED)),
    two("quarantined"),
    two("pathmissing"),
    two("forbidden"),
    two("notinargo"),
    two("proposer"),
]
QUARANTINE = "quarantined:\n  - tag: quarantined/v1.0.0\n    incident: inc-earlier\n"


def policy(name: str, app: str, *, paths: list[str] | None = None, mode: str = "auto", **spec: Any) -> Policy:
    """A policy guarding ``app`` (apps/<app>, tags <app>/v*), or a templated one when ``app`` has ``${``."""
    document: dict[str, Any] = {
        "apiVersion": "rollbackbot/v1",
        "kind": "RollbackPolicy",
        "metadata": {"name": name},
        "spec": {
            "matchers": [f'app = "{app}"'] if "${" not in app else ['app =~ ".+"'],
            "target": {
                "argocdApps": [app],
                "project": PROJECT,
                "paths": paths or [f"apps/{app}"],
                "tags": f"{app}/v*",
            },
            "mode": mode,
        }
        | spec,
    }
    return Policy.from_document(document)


def policies() -> list[Policy]:
    """One policy per app of the sandbox; ``pathmissing`` also restores a path added after its releases."""
    made = [policy(f"p-{spec.name}", spec.name) for spec in APPS if spec.name not in ("pathmissing", "proposer")]
    made.append(policy("p-pathmissing", "pathmissing", paths=["apps/pathmissing", "apps/pathmissing-extra"]))
    approval = {"channel": "C0ONCALL", "approvers": ["S0EMPTY"]}
    made.append(policy("p-proposer", "proposer", mode="propose", approval=approval))
    return made


@dataclass
class Rig:
    tmp: Path
    sandbox: GitOpsSandbox
    argo: FakeArgoState
    transport: httpx.ASGITransport
    git: GitOpsRepository
    argocd: ArgoCDClient
    groups: dict[str, frozenset[str]]

    def checker(self, evidence: FileEvidenceSink | None = None) -> ReadinessChecker:
        async def members(group: str) -> frozenset[str]:
            return self.groups.get(group, frozenset())

        sink = evidence or FileEvidenceSink(self.tmp / "evidence")
        return ReadinessChecker(self.git, self.argocd, SystemClock(), sink, members, call_timeout=5.0)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    sandbox = build_sandbox(tmp_path / "gitops", APPS)
    sandbox.commit_paths({".rollbackbot/quarantine.yaml": QUARANTINE}, "quarantine quarantined/v1.0.0")
    sandbox.commit_paths({"apps/pathmissing-extra/config.yaml": "threshold: 1\n"}, "pathmissing: new path")
    apps = [
        {"name": spec.name, "project": PROJECT, "path": f"apps/{spec.name}"}
        for spec in APPS
        if spec.name != "notinargo"
    ]
    config = FakeArgoConfig(
        token=TOKEN, repo=str(sandbox.remote_path), apps=apps, denied=[f"applications/sync/{PROJECT}/forbidden"]
    )
    app = create_app(config)
    transport = httpx.ASGITransport(app=app)
    git = GitOpsRepository(sandbox.remote_url, sandbox.branch, tmp_path / "clone", sandbox.allowed_signers)
    argocd = ArgoCDClient("http://argocd", SecretStr(TOKEN), transport=transport, retry_attempts=1)
    try:
        yield Rig(tmp_path, sandbox, get_state(app), transport, git, argocd, {"S0EMPTY": frozenset()})
    finally:
        await argocd.aclose()
