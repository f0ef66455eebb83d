"""Builds the service from Settings: the only place that knows every concrete adapter."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI

from rollbackbot.adapters.argocd.client import ArgoCDClient
from rollbackbot.adapters.evidence import evidence_sink_for
from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.adapters.git.transport import NetworkLimits
from rollbackbot.adapters.slack.api import SlackApi
from rollbackbot.adapters.slack.chat import SlackChat
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.api import create_app
from rollbackbot.clock import Clock, SystemClock
from rollbackbot.core.policy import Policy, PolicyMode
from rollbackbot.errors import ConfigError, PolicyError, RollbackBotError
from rollbackbot.metrics import INCIDENTS
from rollbackbot.policy_files import load_policies
from rollbackbot.service import Service
from rollbackbot.settings import Settings

log = logging.getLogger("rollbackbot.wiring")


@dataclass
class Wired:
    service: Service
    git: GitOpsRepository
    argocd: ArgoCDClient
    store: SqlIncidentStore
    slack: SlackChat | None = None


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
    clock = clock or SystemClock()
    slack = _slack_chat(settings, store, policies, clock)
    INCIDENTS.count = store.count_by_app_state
    git = GitOpsRepository(
        settings.git_url,
        settings.git_branch,
        settings.git_workdir,
        settings.git_allowed_signers,
        push_budget=settings.git_push_budget_seconds,
        network_limits=NetworkLimits(settings.git_stall_seconds, settings.git_network_ceiling_seconds),
    )
    argocd = ArgoCDClient(settings.argocd_url, settings.argocd_token)
    evidence = evidence_sink_for(settings.evidence_url)
    service = Service(
        store=store,
        git=git,
        argocd=argocd,
        policies=policies,
        clock=clock,
        evidence=evidence,
        chat=slack,
    )
    return Wired(service=service, git=git, argocd=argocd, store=store, slack=slack)


def check_slack_settings(settings: Settings, policies: Sequence[Policy]) -> None:
    """Serving propose mode needs both Slack credentials; one without the other is a mistake either way."""
    token, secret = settings.slack_bot_token, settings.slack_signing_secret
    missing = [
        name
        for name, value in (("ROLLBACKBOT_SLACK_BOT_TOKEN", token), ("ROLLBACKBOT_SLACK_SIGNING_SECRET", secret))
        if value is None or not value.get_secret_value().strip()
    ]
    proposing = [p.name for p in policies if p.spec.mode is PolicyMode.propose]
    if missing and proposing:
        raise ConfigError(f"{missing[0]} is required by policy {proposing[0]} (mode propose) but not set")
    if len(missing) == 1:
        raise ConfigError(f"{missing[0]} is required when the other Slack credential is set, but not set")


def _slack_chat(
    settings: Settings, store: SqlIncidentStore, policies: Sequence[Policy], clock: Clock
) -> SlackChat | None:
    if settings.slack_bot_token is None or settings.slack_signing_secret is None:
        return None
    from slack_sdk.web.async_client import AsyncWebClient

    from rollbackbot.adapters.slack.store import SlackMessageStore

    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=[],  # SlackApi retries, honouring Retry-After and counting
    )
    return SlackChat(
        SlackApi(client),
        SlackMessageStore(store.engine),
        policies={p.name: p for p in policies},
        store=store,
        clock=clock,
    )


def _slack_routers(settings: Settings, wired: Wired) -> list[APIRouter]:
    if wired.slack is None or settings.slack_signing_secret is None:
        return []
    from rollbackbot.adapters.slack.app import SlackActions, build_bolt_app, slack_router
    from rollbackbot.adapters.slack.approvers import ApproverCheck

    api = wired.slack.api
    actions = SlackActions(wired.service, api, ApproverCheck(api, wired.service.clock))
    bolt = build_bolt_app(settings.slack_signing_secret, api, actions)
    return [slack_router(bolt, wired.slack, actions)]


def build_app(settings: Settings) -> FastAPI:
    """The HTTP application of ``rollbackbot serve``."""
    wired = build(settings)
    check_slack_settings(settings, wired.service.policies)
    git_problem: list[str] = []
    try:
        wired.git.ensure_clone()
    except RollbackBotError as exc:
        # Serve anyway: alerts are still received and recorded, the first incident retries the fetch,
        # and /readyz says what is wrong instead of the pod crash-looping.
        git_problem.append(str(exc))
        log.warning("git remote not reachable at start; serving, not ready", extra={"error": str(exc)})

    def store_ready() -> str | None:
        wired.store.ping()
        return None

    def git_ready() -> str | None:
        if git_problem:
            try:
                wired.git.ensure_clone()
                git_problem.clear()
            except RollbackBotError as exc:
                return f"git remote not reachable: {exc}"
        return None if settings.git_workdir.exists() else "git clone missing"

    def policies_ready() -> str | None:
        return None if wired.service.policies else "no policies loaded"

    return create_app(
        wired.service,
        settings.webhook_token,
        readiness={"store": store_ready, "git": git_ready, "policies": policies_ready},
        routers=_slack_routers(settings, wired),
    )
