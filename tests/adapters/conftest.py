"""Fixtures for adapter tests: real GitOps sandboxes (bare remote, ssh-signed tags) in tmp dirs."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.core.model import ResolvedTarget
from rollbackbot.testing.gitops import AppSpec, GitOpsSandbox, Release, build_sandbox

FRAUD = ResolvedTarget(
    apps=("fraud-llm",),
    project="ml-prod",
    paths=("apps/fraud-llm", "apps/fraud-llm-features"),
    tag_pattern="fraud-llm/v*",
)

MakeSandbox = Callable[..., GitOpsSandbox]
MakeRepo = Callable[..., GitOpsRepository]


def fraud_app(*releases: Release) -> AppSpec:
    """fraud-llm with a features path; by default four good releases."""
    chosen = list(releases) or [Release("2.0.0"), Release("2.1.0"), Release("2.2.0"), Release("2.3.0")]
    return AppSpec("fraud-llm", chosen, with_features=True)


@pytest.fixture
def make_sandbox(tmp_path: Path) -> MakeSandbox:
    """Build a sandbox; fraud-llm releases as given, plus an unrelated app that must never change."""
    counter = itertools.count()

    def make(*releases: Release) -> GitOpsSandbox:
        apps = [fraud_app(*releases), AppSpec("chat", [Release("1.0.0"), Release("1.1.0")])]
        return build_sandbox(tmp_path / f"sandbox-{next(counter)}", apps)

    return make


@pytest.fixture
def sandbox(make_sandbox: MakeSandbox) -> GitOpsSandbox:
    """fraud-llm 2.0.0 .. 2.3.0, all signed and pinned; head = 2.3.0."""
    return make_sandbox()


@pytest.fixture
def make_repo(tmp_path: Path) -> MakeRepo:
    """A GitOpsRepository with its own fresh clone (each call simulates a separate service process)."""
    counter = itertools.count()

    def make(sb: GitOpsSandbox, url: str | None = None, **kwargs: Any) -> GitOpsRepository:
        workdir = tmp_path / f"clone-{next(counter)}"
        return GitOpsRepository(url or sb.remote_url, sb.branch, workdir, sb.allowed_signers, **kwargs)

    return make


@pytest.fixture
def repo(sandbox: GitOpsSandbox, make_repo: MakeRepo) -> GitOpsRepository:
    """The service's view of ``sandbox``, cloned."""
    made = make_repo(sandbox)
    made.ensure_clone()
    return made
