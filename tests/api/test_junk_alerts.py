"""Alerts naming an app that is not in the GitOps repo are refused at intake: no incident, series or git work."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

from prometheus_client import generate_latest

from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.clock import SystemClock
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.metrics import REGISTRY
from rollbackbot.policy_files import load_policies
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.gitops import AppSpec, Release, build_sandbox
from tests.api.conftest import processes_spawned
from tests.service.fakes import FakeArgo

REPO = Path(__file__).resolve().parents[2]


def _payload(apps: list[str]) -> AlertmanagerPayload:
    start = SystemClock().now() - timedelta(minutes=1)
    alerts = [alert({"alertname": "ModelRefusalRateDrop", "app": app}, start) for app in apps]
    return AlertmanagerPayload.model_validate(notification(alerts))


async def test_junk_apps_cost_no_incident_no_series_and_no_git_work(tmp_path: Path) -> None:
    sandbox = build_sandbox(tmp_path / "gitops", [AppSpec("support-llm", [Release("1.0.0"), Release("1.1.0")])])
    git = GitOpsRepository(sandbox.remote_url, "main", tmp_path / "clone", sandbox.allowed_signers)
    git.ensure_clone()
    service = Service(
        store=SqlIncidentStore(f"sqlite:///{tmp_path}/state.db"),
        git=git,
        argocd=FakeArgo(),
        policies=load_policies(REPO / "policies"),  # support-llm(-.+)? with ${labels.app}: any such name matches
        clock=SystemClock(),
    )
    junk = [f"support-llm-{secrets.token_hex(4)}" for _ in range(2_000)]
    with processes_spawned() as spawned:
        received = service.receive(_payload(junk[:1_000]))
        received_more = service.receive(_payload(junk[1_000:]))
    assert spawned == []  # not one git process for 2,000 junk alerts
    assert received.incidents == received_more.incidents == []
    assert received.unknown_apps == received_more.unknown_apps == 1_000
    assert service.store.recent() == []
    assert service._running == {}  # nothing queued ahead of a real rollback
    exported = generate_latest(REGISTRY).decode()
    assert not any(app in exported for app in junk[:50])

    real = service.receive(_payload(["support-llm"]))
    assert len(real.incidents) == 1 and real.unknown_apps == 0  # the app that exists is still served
    await service.stop()


async def test_before_the_first_fetch_nothing_is_refused(tmp_path: Path) -> None:
    sandbox = build_sandbox(tmp_path / "gitops", [AppSpec("support-llm", [Release("1.0.0")])])
    git = GitOpsRepository(sandbox.remote_url, "main", tmp_path / "clone", sandbox.allowed_signers)
    assert git.head_paths() is None
    service = Service(
        store=SqlIncidentStore(f"sqlite:///{tmp_path}/state.db"),
        git=git,
        argocd=FakeArgo(),
        policies=load_policies(REPO / "policies"),
        clock=SystemClock(),
    )
    assert len(service.receive(_payload(["support-llm-maybe"])).incidents) == 1  # a git outage drops no alert
    await service.stop()


def test_the_listing_follows_the_branch_head(tmp_path: Path) -> None:
    sandbox = build_sandbox(tmp_path / "gitops", [AppSpec("support-llm", [Release("1.0.0")])])
    git = GitOpsRepository(sandbox.remote_url, "main", tmp_path / "clone", sandbox.allowed_signers)
    git.ensure_clone()
    paths = git.head_paths()
    assert paths is not None and "apps/support-llm" in paths and "apps/support-llm-eu" not in paths
    sandbox.commit_paths({"apps/support-llm-eu/deployment.yaml": "kind: Deployment\n"}, "add support-llm-eu")
    git.head()  # no fetch: the listing is as of the last fetch
    assert "apps/support-llm-eu" not in (git.head_paths() or ())
    git.find_rollback("inc-0000000000000000")  # any call that fetches refreshes it
    assert "apps/support-llm-eu" in (git.head_paths() or ())
