"""Builds the service from Settings: the only place that knows every concrete adapter."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from rollbackbot.adapters.argocd import ArgoCDClient
from rollbackbot.adapters.evidence import evidence_sink_for
from rollbackbot.adapters.git_repo import GitOpsRepository
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.api import create_app
from rollbackbot.clock import Clock, SystemClock
from rollbackbot.errors import ConfigError, PolicyError
from rollbackbot.metrics import INCIDENTS
from rollbackbot.policy_files import load_policies
from rollbackbot.service import Service
from rollbackbot.settings import Settings


@dataclass
class Wired:
    service: Service
    git: GitOpsRepository
    argocd: ArgoCDClient
    store: SqlIncidentStore


def build(settings: Settings, clock: Clock | None = None) -> Wired:
    """Every adapter built from settings, and the service on top of them."""
    if not settings.git_allowed_signers.is_file():
        raise ConfigError(f"ROLLBACKBOT_GIT_ALLOWED_SIGNERS: no such file {settings.git_allowed_signers}")
    try:
        policies = load_policies(settings.policies)
    except PolicyError as exc:
        raise ConfigError(f"ROLLBACKBOT_POLICIES: {exc}") from None
    if not policies:
        raise ConfigError(f"ROLLBACKBOT_POLICIES: no policy files in {settings.policies}")
    store = SqlIncidentStore(settings.database_url)
    INCIDENTS.count = store.count_by_app_state
    git = GitOpsRepository(settings.git_url, settings.git_branch, settings.git_workdir, settings.git_allowed_signers)
    argocd = ArgoCDClient(settings.argocd_url, settings.argocd_token)
    evidence = evidence_sink_for(settings.evidence_url)
    service = Service(
        store=store,
        git=git,
        argocd=argocd,
        policies=policies,
        clock=clock or SystemClock(),
        evidence=evidence,
    )
    return Wired(service=service, git=git, argocd=argocd, store=store)


def build_app(settings: Settings) -> FastAPI:
    """The HTTP application of ``rollbackbot serve``."""
    wired = build(settings)
    wired.git.ensure_clone()

    def store_ready() -> str | None:
        wired.store.ping()
        return None

    def git_ready() -> str | None:
        return None if settings.git_workdir.exists() else "git clone missing"

    def policies_ready() -> str | None:
        return None if wired.service.policies else "no policies loaded"

    return create_app(
        wired.service,
        settings.webhook_token,
        readiness={"store": store_ready, "git": git_ready, "policies": policies_ready},
    )
