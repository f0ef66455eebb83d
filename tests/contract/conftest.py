"""Fixtures for the Argo CD contract suite: a real tiny GitOps repo and the fake served in-process."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollbackbot.testing.argocd import FakeArgoConfig, FakeArgoState, create_app, make_token

TOKEN = make_token("proj:ml-prod:rollbackbot")
APP = "fraud-llm"
PROJECT = "ml-prod"
APP_PATH = "apps/fraud-llm"
# Virtual seconds; tests move time with state.advance(), so generous values cost nothing.
DELAYS = {"running": 1.0, "succeeded": 2.0, "reconcile": 1.0, "healthy": 3.0}
GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def manifests(image: str, health: str | None = None, extra: str = "") -> str:
    """ConfigMap + Service + Deployment (the resource set of the recorded examples)."""
    annotation = f"\n  annotations:\n    rollbackbot.dev/simulated-health: {health}" if health else ""
    return f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: fraud-llm-config
data:
  threshold: "0.7"
---
apiVersion: v1
kind: Service
metadata:
  name: fraud-llm
spec:
  ports: [{{port: 80}}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: fraud-llm{annotation}
spec:
  template:
    spec:
      containers:
        - name: model
          image: {image}
{extra}"""


@dataclass
class GitRepo:
    """A real repository the tests commit to with plain ``git`` (list form, isolated config)."""

    path: Path

    def git(self, *args: str) -> str:
        """Run git in the repo and return stdout."""
        done = subprocess.run(
            ["git", *args], cwd=self.path, env={**os.environ, **GIT_ENV}, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def commit(self, files: dict[str, str], message: str) -> str:
        """Write files (empty content deletes), commit everything, return the new SHA."""
        for name, content in files.items():
            target = self.path / name
            if content:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
            else:
                target.unlink()
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    """Repo whose head is the bad release: the Deployment is annotated Degraded (the incident)."""
    path = tmp_path / "gitops"
    path.mkdir()
    gitrepo = GitRepo(path)
    gitrepo.git("init", "-q", "-b", "main")
    gitrepo.commit({f"{APP_PATH}/app.yaml": manifests("registry.example.com/fraud-llm:1.41.0")}, "good release")
    gitrepo.commit(
        {f"{APP_PATH}/app.yaml": manifests("registry.example.com/fraud-llm:1.42.0", "Degraded")}, "bad release"
    )
    return gitrepo


def make_config(repo: GitRepo, **overrides: Any) -> FakeArgoConfig:
    """Config for one auto-sync app in ml-prod plus a manual-sync app in another project."""
    app = {"name": APP, "project": PROJECT, "path": APP_PATH, "autoSync": True, "labels": {"team": "ml"}}
    other = {"name": "billing", "project": "payments", "path": APP_PATH}
    data: dict[str, Any] = {
        "token": TOKEN,
        "repo": str(repo.path),
        "apps": [app, other],
        "tick": 0.25,
        "refreshDelay": 0.5,
        "delays": DELAYS,
        "users": {"admin": "s3cret-pass"},
        "startTime": "2026-08-22T10:00:00Z",
    }
    return FakeArgoConfig.model_validate(data | overrides)


@pytest.fixture
def state(repo: GitRepo) -> FakeArgoState:
    """The fake's state; tests drive its controller with ``state.advance(seconds)``."""
    return FakeArgoState(make_config(repo))


@pytest.fixture
async def client(state: FakeArgoState) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated client talking to the fake in-process."""
    transport = httpx.ASGITransport(app=create_app(state.config, state))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://argocd", headers=headers) as http:
        yield http


@pytest.fixture
async def anon(state: FakeArgoState) -> AsyncIterator[httpx.AsyncClient]:
    """A client without credentials."""
    transport = httpx.ASGITransport(app=create_app(state.config, state))
    async with httpx.AsyncClient(transport=transport, base_url="http://argocd") as http:
        yield http
