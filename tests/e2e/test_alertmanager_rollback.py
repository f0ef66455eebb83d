"""The whole loop: the real Alertmanager posts to the real service process, which rolls back over git://."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from tests.e2e.conftest import WEBHOOK_TOKEN, Alertmanager, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.alertmanager]


def _git(stack: Stack, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(stack.sandbox.remote_path), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _wait_incident(stack: Stack, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = stack.incidents()
        if found:
            return str(found[0]["id"])
        time.sleep(0.05)
    raise AssertionError("Alertmanager's notification never created an incident:\n" + stack.log.read_text()[-3000:])


def test_alertmanager_alert_rolls_back_to_prior_verified_release(stack: Stack, alertmanager: Alertmanager) -> None:
    head_before = _git(stack, "rev-parse", "main").strip()
    alertmanager.fire(
        {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"},
        {"summary": "prompt-injection detections at 14x baseline"},
    )
    incident_id = _wait_incident(stack)
    incident = stack.wait_state(incident_id, {"rolled_back", "failed", "suppressed"})
    assert incident["state"] == "rolled_back", incident

    # Current is the compromised 1.3.0; 1.2.0 is unsigned and skipped; 1.1.0 is the target.
    assert incident["from"] == {"tag": "docsum-llm/v1.3.0", "revision": head_before}
    assert incident["to"]["tag"] == "docsum-llm/v1.1.0"  # type: ignore[index]
    events = " ".join(str(e["detail"]) for e in incident["events"])  # type: ignore[attr-defined]
    assert "docsum-llm/v1.2.0" in events

    # Exactly one commit on top of the old head, restoring the app path byte for byte.
    commit = str(incident["rollback_commit"])
    assert _git(stack, "rev-parse", "main").strip() == commit
    assert _git(stack, "rev-parse", f"{commit}^").strip() == head_before
    assert _git(stack, "rev-parse", f"{commit}:apps/docsum-llm") == _git(
        stack, "rev-parse", "docsum-llm/v1.1.0^{commit}:apps/docsum-llm"
    )
    changed = set(_git(stack, "diff", "--name-only", head_before, commit).split())
    assert changed == {
        "apps/docsum-llm/deployment.yaml",
        "apps/docsum-llm/model.yaml",
        ".rollbackbot/quarantine.yaml",
    }
    quarantine = _git(stack, "show", f"{commit}:.rollbackbot/quarantine.yaml")
    assert "docsum-llm/v1.3.0" in quarantine

    message = _git(stack, "log", "-1", "--format=%B", commit)
    assert message.startswith("rollback(docsum-llm): docsum-llm/v1.3.0 -> docsum-llm/v1.1.0\n")
    trailers = dict(
        line.split(": ", 1)
        for line in _git(stack, "log", "-1", "--format=%(trailers:only,unfold)", commit).splitlines()
        if line
    )
    assert trailers["Rollback-Incident"] == incident_id
    assert trailers["Rollback-From"] == "docsum-llm/v1.3.0"
    assert trailers["Rollback-To"] == "docsum-llm/v1.1.0"
    assert trailers["Rollback-Alert"].startswith("PromptInjectionSpike/")
    assert trailers["Rollback-Evidence"] == incident["evidence_url"]
    assert "Approved-By" not in trailers

    # Argo CD was refreshed and asked to sync our commit, with the exact Content-Type.
    requests = stack.argocd_requests()
    syncs = [r for r in requests if r["method"] == "POST" and str(r["path"]).endswith("/docsum-llm/sync")]
    assert len(syncs) == 1
    assert syncs[0]["body"] == {"revision": commit, "prune": True, "project": "ml-prod"}
    assert syncs[0]["content_type"] == "application/json"
    assert any(r["method"] == "GET" and "refresh" in str(r.get("query", "")) for r in requests)
    status = stack.argocd_app("docsum-llm")["status"]
    assert status["health"]["status"] == "Healthy"  # type: ignore[index]
    assert status["sync"]["revision"] == commit  # type: ignore[index]

    # Alertmanager keeps re-sending the firing alert every second: still one incident, one commit.
    time.sleep(2.5)
    assert [i["id"] for i in stack.incidents()] == [incident_id]
    assert _git(stack, "rev-parse", "main").strip() == commit


def test_webhook_rejects_bad_requests_without_side_effects(stack: Stack) -> None:
    url = f"{stack.service_url}/webhook/alertmanager"
    assert httpx.post(url, json={"version": "4"}).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token-not-the-token"}
    assert httpx.post(url, json={}, headers=wrong).status_code == 401
    auth = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
    assert httpx.post(url, content=b"{not json", headers=auth).status_code == 422
    assert httpx.post(url, json={"version": "4", "status": "firing"}, headers=auth).status_code == 422
    assert httpx.post(url, content=b"x" * (1024 * 1024 + 1), headers=auth).status_code == 413
    assert stack.incidents() == []
    assert stack.service.poll() is None
