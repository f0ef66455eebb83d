"""Builds the service from Settings: the only place that knows every concrete adapter."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI
from pydantic import SecretStr

from rollbackbot.adapters.argocd.client import ArgoCDClient
from rollbackbot.adapters.evidence import evidence_sink_for
from rollbackbot.adapters.forge import forge_clients
from rollbackbot.adapters.forge.app_token import InstallationTokens
from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.adapters.git.route_commit import RouteCommitter
from rollbackbot.adapters.git.tagindex import ReleaseChecks
from rollbackbot.adapters.git.transport import NetworkLimits
from rollbackbot.adapters.git.workclone import SelfRepairingRepo
from rollbackbot.adapters.http_fetch import fetch_capped
from rollbackbot.adapters.prometheus import PrometheusClient
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.api import create_app
from rollbackbot.canary import CanaryRollout
from rollbackbot.clock import Clock, SystemClock
from rollbackbot.core.policy import Analysis, ForgeKind, OnFailure, Policy, PolicyMode, StrategyType
from rollbackbot.core.retries import RetryBudget
from rollbackbot.dependencies import DEPENDENCIES
from rollbackbot.errors import ConfigError, PolicyError, RollbackBotError
from rollbackbot.liveness import StateFileCheck
from rollbackbot.metrics import INBOX, INCIDENTS, INCIDENTS_OVERDUE
from rollbackbot.policy_files import load_policies, policy_set_fingerprint
from rollbackbot.prmode import ForgeEvents, PullRequestMode
from rollbackbot.readiness import ReadinessChecker
from rollbackbot.readiness_schedule import ReadinessSchedule
from rollbackbot.reload import PolicyReloader
from rollbackbot.retention import prune_forever
from rollbackbot.service import Service
from rollbackbot.settings import Settings

if TYPE_CHECKING:  # Slack's SDK and aiohttp (~10 MB) are imported only when Slack is configured
    from rollbackbot.adapters.slack.chat import SlackChat

log = logging.getLogger("rollbackbot.wiring")


@dataclass
class Wired:
    service: Service
    git: SelfRepairingRepo
    argocd: ArgoCDClient
    store: SqlIncidentStore
    slack: SlackChat | None = None
    release_checks: ReleaseChecks = field(default_factory=ReleaseChecks)  # shared by every git adapter


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
    checks = ReleaseChecks()
    git = SelfRepairingRepo(
        lambda: GitOpsRepository(
            settings.git_url,
            settings.git_branch,
            settings.git_workdir,
            settings.git_allowed_signers,
            push_budget=settings.git_push_budget_seconds,
            network_limits=NetworkLimits(settings.git_stall_seconds, settings.git_network_ceiling_seconds),
            checks=checks,
        ),
        settings.git_workdir,
    )
    argocd = ArgoCDClient(settings.argocd_url, settings.argocd_token)
    canary = _canary(settings, argocd, checks)
    evidence = evidence_sink_for(settings.evidence_url, lock_mode=settings.evidence_object_lock_mode)
    pull_requests = _pull_request_mode(settings, policies, git, clock)
    service = Service(
        store=store,
        git=git,
        argocd=argocd,
        policies=policies,
        clock=clock,
        evidence=evidence,
        chat=slack,
        retry=RetryBudget(
            seconds=settings.retry_budget_seconds,
            attempts=settings.retry_attempts,
            backoff=settings.retry_backoff_seconds,
        ),
        watchdog_seconds=settings.watchdog_seconds,
        watchdog_grace=settings.watchdog_grace_seconds,
        canary=canary,
        replica=settings.replica_name,
        lease_seconds=settings.lease_seconds,
        pull_requests=pull_requests,
        fetch=partial(fetch_capped, token=settings.forensics_token),
    )
    INBOX.depth = partial(_inbox_depth, store, clock)
    INCIDENTS_OVERDUE.count = partial(
        service.overdue_by_state, timedelta(seconds=settings.incident_stuck_grace_seconds)
    )
    return Wired(service=service, git=git, argocd=argocd, store=store, slack=slack, release_checks=checks)


def _inbox_depth(store: SqlIncidentStore, clock: Clock) -> tuple[int, float, int]:
    """(pending rows, age of the oldest in seconds, poisoned rows) for the ``rollbackbot_inbox_*`` gauges."""
    depth = store.inbox.depth()
    age = (clock.now() - depth.oldest).total_seconds() if depth.oldest is not None else 0.0
    return depth.pending, max(0.0, age), depth.poisoned


def _canary(settings: Settings, argocd: ArgoCDClient, checks: ReleaseChecks) -> CanaryRollout:
    """The canary step machine for policies with a ``trafficRouter`` (docs/traffic.md).

    Route commits go through a clone of their own next to the service's, so a canary step never
    waits for the rollback clone's lock; both push without force and rebuild on a lost race.
    """
    routes = GitOpsRepository(
        settings.git_url,
        settings.git_branch,
        settings.git_workdir.with_name(f"{settings.git_workdir.name}-routes"),
        settings.git_allowed_signers,
        push_budget=settings.git_push_budget_seconds,
        network_limits=NetworkLimits(settings.git_stall_seconds, settings.git_network_ceiling_seconds),
        checks=checks,
    )
    clients: dict[str, PrometheusClient] = {}

    def queries(analysis: Analysis) -> PrometheusClient:
        url = analysis.prometheus.url
        if url not in clients:
            clients[url] = PrometheusClient(url)
        return clients[url]

    return CanaryRollout(steps_log=RouteCommitter(routes), argocd=argocd, queries=queries, record=_no_record)


def _no_record(incident_id: str, detail: str) -> None:
    """Events are attached per step by ``canary_step``; outside a step there is nothing to record."""


def readiness_checker(settings: Settings, wired: Wired, *, own_clone: bool) -> ReadinessChecker:
    """The read-only readiness checker; ``own_clone``: plan on a second clone so rollbacks never wait for its lock."""
    from rollbackbot.readiness import ReadinessChecker

    git: SelfRepairingRepo = wired.git
    if own_clone:
        workdir = settings.git_workdir.with_name(settings.git_workdir.name + "-readiness")
        git = SelfRepairingRepo(
            lambda: GitOpsRepository(
                settings.git_url,
                settings.git_branch,
                workdir,
                settings.git_allowed_signers,
                network_limits=NetworkLimits(settings.git_stall_seconds, settings.git_network_ceiling_seconds),
                checks=wired.release_checks,  # what readiness verifies, a rollback does not verify again
            ),
            workdir,
        )
    return ReadinessChecker(
        git=git,
        argocd=wired.argocd,
        clock=wired.service.clock,
        evidence=evidence_sink_for(settings.evidence_url, lock_mode=settings.evidence_object_lock_mode),
        group_members=wired.slack.api.usergroup_members if wired.slack is not None else None,
        max_templated_apps=settings.readiness_max_templated_apps,
    )


def _readiness_schedule(settings: Settings, wired: Wired) -> ReadinessSchedule | None:
    """The schedule of ``serve`` (docs/readiness.md); None when ROLLBACKBOT_READINESS_INTERVAL_SECONDS is 0."""
    if settings.readiness_interval_seconds <= 0:
        return None
    from rollbackbot.readiness_schedule import ReadinessSchedule

    service = wired.service
    return ReadinessSchedule(
        readiness_checker(settings, wired, own_clone=True),
        lambda: service.policies,
        interval=settings.readiness_interval_seconds,
        busy=lambda: service.working,
    )


def _readiness_off() -> dict[str, Any]:
    off = "the readiness schedule is off (ROLLBACKBOT_READINESS_INTERVAL_SECONDS=0); run `rollbackbot readiness`"
    return {"ready": None, "checked_at": None, "apps": [], "errors": [off]}


def _pull_request_mode(
    settings: Settings, policies: Sequence[Policy], git: SelfRepairingRepo, clock: Clock
) -> PullRequestMode | None:
    """Pull-request mode when a forge is configured; a policy that needs one without it stops start-up."""
    wanting = [p.name for p in policies if p.spec.git.pull_request]
    app = _github_app(settings)
    if settings.forge_api_url is None or (settings.forge_token is None and app is None):
        if wanting:
            missing = "ROLLBACKBOT_FORGE_API_URL" if settings.forge_api_url is None else "ROLLBACKBOT_FORGE_TOKEN"
            raise ConfigError(f"{missing} is required by policy {wanting[0]} (git.mode pull-request) but not set")
        return None
    gitlab = [p.name for p in policies if p.spec.git.pull_request and p.spec.git.forge is ForgeKind.gitlab]
    if gitlab and settings.forge_token is None:
        raise ConfigError(f"ROLLBACKBOT_FORGE_TOKEN is required by policy {gitlab[0]} (forge gitlab) but not set")
    forges = forge_clients(settings.forge_api_url, settings.forge_token, app)
    return PullRequestMode(git=git, forges=forges, clock=clock)


def _github_app(settings: Settings) -> InstallationTokens | None:
    """A GitHub App's installation tokens when all three ``ROLLBACKBOT_FORGE_APP_*`` are set; none: None."""
    given = {
        "ROLLBACKBOT_FORGE_APP_ID": settings.forge_app_id,
        "ROLLBACKBOT_FORGE_APP_INSTALLATION_ID": settings.forge_app_installation_id,
        "ROLLBACKBOT_FORGE_APP_PRIVATE_KEY_FILE": settings.forge_app_private_key_file,
    }
    missing = [name for name, value in given.items() if not value]
    if len(missing) == len(given):
        return None
    if missing:
        raise ConfigError(f"{missing[0]} is required when the other ROLLBACKBOT_FORGE_APP_* settings are set")
    if settings.forge_api_url is None:
        raise ConfigError("ROLLBACKBOT_FORGE_API_URL is required when a GitHub App is configured but not set")
    key_file = Path(str(settings.forge_app_private_key_file))
    try:
        pem = SecretStr(key_file.read_text())
    except OSError as exc:
        raise ConfigError(f"ROLLBACKBOT_FORGE_APP_PRIVATE_KEY_FILE: cannot read {key_file}: {exc.strerror}") from None
    return InstallationTokens(
        settings.forge_api_url, str(settings.forge_app_id), str(settings.forge_app_installation_id), pem
    )


def _forge_events(settings: Settings, wired: Wired) -> ForgeEvents | None:
    secret = settings.forge_webhook_secret
    if secret is None or not secret.get_secret_value().strip():
        return None
    service = wired.service
    return ForgeEvents(secret=secret.get_secret_value(), store=wired.store, clock=service.clock, nudge=service.look_now)


def check_slack_settings(settings: Settings, policies: Sequence[Policy]) -> None:
    """Serving propose mode needs both Slack credentials; one without the other is a mistake either way."""
    token, secret = settings.slack_bot_token, settings.slack_signing_secret
    missing = [
        name
        for name, value in (("ROLLBACKBOT_SLACK_BOT_TOKEN", token), ("ROLLBACKBOT_SLACK_SIGNING_SECRET", secret))
        if value is None or not value.get_secret_value().strip()
    ]
    asking = [(p.name, why) for p in policies if (why := _asks_people(p))]
    if missing and asking:
        raise ConfigError(f"{missing[0]} is required by policy {asking[0][0]} ({asking[0][1]}) but not set")
    if len(missing) == 1:
        raise ConfigError(f"{missing[0]} is required when the other Slack credential is set, but not set")


def _asks_people(policy: Policy) -> str | None:
    """Why ``policy`` asks people in Slack (a proposal, or a canary that holds and asks), or None."""
    if policy.spec.mode is PolicyMode.propose:
        return "mode propose"
    strategy = policy.spec.strategy
    if strategy and strategy.type is StrategyType.canary and strategy.on_failure is OnFailure.hold:
        return "a canary that holds asks in Slack"
    return None


def _slack_chat(
    settings: Settings, store: SqlIncidentStore, policies: Sequence[Policy], clock: Clock
) -> SlackChat | None:
    if settings.slack_bot_token is None or settings.slack_signing_secret is None:
        return None
    from slack_sdk.web.async_client import AsyncWebClient

    from rollbackbot.adapters.slack.api import SlackApi
    from rollbackbot.adapters.slack.chat import SlackChat
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
        public_url=settings.public_url,
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


def _policy_reload_router(
    settings: Settings, wired: Wired, loaded_fingerprint: str, readiness: ReadinessSchedule | None = None
) -> APIRouter:
    """A router whose lifespan reloads the policies on SIGHUP and on a changed directory (rollbackbot.reload)."""

    def apply(policies: list[Policy]) -> None:
        wired.service.replace_policies(policies)
        if wired.slack is not None:
            wired.slack.policies = {p.name: p for p in policies}
        if readiness is not None:
            readiness.request_run()  # new policies: are their apps ready?

    reloader = PolicyReloader(
        settings.policies,
        apply,
        check=lambda policies: check_slack_settings(settings, policies),
        poll_seconds=settings.policy_poll_seconds,
        loaded_fingerprint=loaded_fingerprint,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with reloader.running():
            yield

    return APIRouter(lifespan=lifespan)


def _ui_routers(settings: Settings, wired: Wired, readiness: ReadinessSchedule | None = None) -> list[APIRouter]:
    """The incident pages (docs/ui.md), only with ROLLBACKBOT_UI=true; sign-in uses the API token."""
    if not settings.ui:
        return []
    from rollbackbot.ui import UiConfig, ui_router
    from rollbackbot.ui.auth import ProxyTrust, parse_ranges

    token = settings.api_token or settings.webhook_token  # the API token, else the webhook token
    slack = wired.slack

    def slack_message(incident_id: str) -> str | None:
        posted = slack.messages.find(incident_id) if slack else None
        return f"channel {posted.channel}, message ts {posted.ts}" if posted else None

    config = UiConfig(
        store=wired.store,
        token=token.get_secret_value(),
        git_workdir=settings.git_workdir,
        proxy=ProxyTrust(parse_ranges(settings.ui_trusted_proxies), settings.ui_user_header),
        slack_message=slack_message,
        now=wired.service.clock.now,
        readiness=readiness.app_json if readiness else None,
        caught_up=wired.service.caught_up,
    )
    return [ui_router(config)]


def build_app(settings: Settings) -> FastAPI:
    """The HTTP application of ``rollbackbot serve``; ``app.state.service`` is the service (for shutdown)."""
    loaded_fingerprint = policy_set_fingerprint(settings.policies)
    wired = build(settings)
    check_slack_settings(settings, wired.service.policies)
    try:
        wired.git.ensure_clone()
        DEPENDENCIES.succeeded("git")
    except RollbackBotError as exc:
        # Serve anyway: alerts are still received and recorded, the first incident retries the fetch,
        # and /status says what is wrong; readiness is about intake only and stays green.
        DEPENDENCIES.failed("git", f"clone at start: {exc}")
        log.warning("git remote not reachable at start; serving", extra={"error": str(exc)})

    readiness = _readiness_schedule(settings, wired)

    def store_ready() -> str | None:
        wired.store.check_writable()
        return None

    def policies_ready() -> str | None:
        return None if wired.service.policies else "no policies loaded"

    def intake_open() -> str | None:
        return None if wired.service.accepting else "shutting down: not taking new alerts"

    def retention() -> Coroutine[Any, Any, None]:
        return prune_forever(wired.store, wired.service.clock, settings.retention_days)

    app = create_app(
        wired.service,
        settings.webhook_token,
        readiness={"store": store_ready, "policies": policies_ready, "shutdown": intake_open},
        liveness={"state": StateFileCheck(settings.database_url), "inbox_file": StateFileCheck(wired.store.inbox_url)},
        routers=[
            *_slack_routers(settings, wired),
            *_ui_routers(settings, wired, readiness),
            _policy_reload_router(settings, wired, loaded_fingerprint, readiness),
        ],
        api_token=settings.api_token,
        background=[retention, *([readiness.run_forever] if readiness else [])],
        readiness_report=readiness.report_json if readiness else _readiness_off,
        forge_events=forge_events.receive if (forge_events := _forge_events(settings, wired)) else None,
    )
    app.state.service = wired.service
    return app
