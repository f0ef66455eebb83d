"""Hostile label values: no path escape, no commit-message or trailer injection (real git)."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.clock import SystemClock
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.policy import Policy
from rollbackbot.policy_files import load_policies
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.gitops import AppSpec, Release, build_sandbox
from tests.service.fakes import FakeArgo

REPO = Path(__file__).resolve().parents[2]

HOSTILE_APPS = [
    "support-llm-../../etc",
    "support-llm-/../../.git/hooks",
    "support-llm-x\nApproved-By: Mallory U0EVIL",
    "support-llm-x\rRollback-Incident: inc-forged",
    "support-llm-\x00\x1b[31m",
    "support-llm-$(touch /tmp/pwned)",
    "support-llm- ; rm -rf /",
]

PERMISSIVE = {
    "apiVersion": "rollbackbot/v1",
    "kind": "RollbackPolicy",
    "metadata": {"name": "docsum-any-alert"},
    "spec": {
        "matchers": ['alertname != ""', 'app = "docsum-llm"'],
        "target": {
            "argocdApps": ["docsum-llm"],
            "project": "ml-prod",
            "paths": ["apps/docsum-llm"],
            "tags": "docsum-llm/v*",
        },
        "mode": "auto",
    },
}


def _service(tmp_path: Path, policies: list[Policy]):  # type: ignore[no-untyped-def]
    apps = [
        AppSpec("docsum-llm", [Release("1.0.0"), Release("1.1.0", health="Degraded")]),
        AppSpec("support-llm", [Release("2.0.0"), Release("2.1.0")]),
    ]
    sandbox = build_sandbox(tmp_path / "gitops", apps)
    git = GitOpsRepository(sandbox.remote_url, "main", tmp_path / "clone", sandbox.allowed_signers)
    service = Service(
        store=SqlIncidentStore(f"sqlite:///{tmp_path}/s.db"),
        git=git,
        argocd=FakeArgo(),
        policies=policies,
        clock=SystemClock(),
    )
    return service, sandbox


def _payload(labels: dict[str, str]) -> AlertmanagerPayload:
    return AlertmanagerPayload.model_validate(notification([alert(labels, SystemClock().now() - timedelta(minutes=1))]))


async def test_hostile_app_labels_are_refused_without_side_effects(tmp_path: Path, abuse_report) -> None:  # type: ignore[no-untyped-def]
    service, sandbox = _service(tmp_path, load_policies(REPO / "policies"))
    head = sandbox.head()
    for app in HOSTILE_APPS:
        ids = service.receive(_payload({"alertname": "ModelRefusalRateDrop", "app": app})).incidents
        await service.idle()
        abuse_report.add("bad-input", inputs=1)
        if not ids:  # the policy's anchored regex did not even match (e.g. "." never matches a newline)
            continue
        incident = service.store.get(ids[0])
        assert incident is not None and incident.state.value == "suppressed", app
        assert incident.reason.startswith("alert refused"), incident.reason
        assert "\n" not in incident.reason and "\x1b" not in incident.reason
    await service.stop()
    assert len(service.store.recent()) >= 4  # most hostile values matched and were refused, not ignored
    assert sandbox.head() == head
    assert not Path("/tmp/pwned").exists()


async def test_trailer_lookalike_in_alertname_cannot_forge_trailers(tmp_path: Path, abuse_report) -> None:  # type: ignore[no-untyped-def]
    service, sandbox = _service(tmp_path, [Policy.from_document(PERMISSIVE)])
    evil = "InjectionSpike\n\nApproved-By: Mallory U0EVIL\nRollback-Incident: inc-forged"
    incident_id = service.receive(_payload({"alertname": evil, "app": "docsum-llm"})).incidents[0]
    await service.idle()
    await service.stop()
    incident = service.store.get(incident_id)
    assert incident is not None and incident.state.value == "rolled_back", incident.reason
    trailers = subprocess.run(
        ["git", "--git-dir", str(sandbox.remote_path), "log", "-1", "--format=%(trailers:unfold)", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    keys = [line.split(":", 1)[0] for line in trailers.splitlines() if line]
    assert keys == ["Rollback-Incident", "Rollback-From", "Rollback-To", "Rollback-Alert", "Rollback-Evidence"]
    assert f"Rollback-Incident: {incident_id}" in trailers and "inc-forged" not in trailers.split("Rollback-Alert")[0]
    message = sandbox.log_messages(1)[0]
    assert "\nApproved-By:" not in message
    abuse_report.add("bad-input", inputs=1, rollbacks=1)


OVERSIZED = "\u202e" + "A" * 5000  # a bidi override, then far more than any label should hold


@pytest.mark.parametrize("label", ["app", "alertname"])
async def test_oversized_and_control_labels_never_crash(tmp_path: Path, label: str, abuse_report) -> None:  # type: ignore[no-untyped-def]
    # Each value still MATCHES a policy, so it really flows through decide, plan and commit.
    if label == "app":  # support-llm-refusal: app =~ "support-llm(-.+)?", app substituted into the target
        policies = load_policies(REPO / "policies")
        labels = {"alertname": "ModelRefusalRateDrop", "app": "support-llm-" + OVERSIZED}
    else:  # any alertname for docsum-llm: the alertname ends up in the commit's Rollback-Alert trailer
        policies = [Policy.from_document(PERMISSIVE)]
        labels = {"alertname": "ModelRefusalRateDrop" + OVERSIZED, "app": "docsum-llm"}
    service, sandbox = _service(tmp_path, policies)
    head = sandbox.head()
    ids = service.receive(_payload(labels)).incidents
    await service.idle()
    await service.stop()
    assert len(ids) == 1  # matched a policy: not silently ignored
    incident = service.store.get(ids[0])
    assert incident is not None and incident.state.terminal
    assert "\u202e" not in incident.reason and len(incident.reason) < 1000
    if label == "app":
        assert incident.state.value == "suppressed" and incident.reason.startswith("alert refused"), incident.reason
        assert sandbox.head() == head
    else:
        assert incident.state.value == "rolled_back", incident.reason
        message = sandbox.log_messages(1)[0]
        assert "\u202e" not in message and len(message) < 4000
    abuse_report.add("bad-input", inputs=1)
