"""Secrets never leave: a full run's logs, API answers, commits and evidence carry no token."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from rollbackbot.testing.alertmanager import alert, notification
from tests.e2e.conftest import API_AUTH, ARGOCD_TOKEN, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, WEBHOOK_TOKEN, Stack

pytestmark = pytest.mark.e2e


def test_full_run_leaks_no_secret(stack: Stack, abuse_report) -> None:  # type: ignore[no-untyped-def]
    base = stack.service_url
    labels = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}
    body = notification([alert(labels, datetime.now(UTC) - timedelta(minutes=1))])
    seen: list[str] = []
    # Wrong tokens that share a prefix with the real one must not be echoed either.
    for header in ({}, {"Authorization": f"Bearer {WEBHOOK_TOKEN[:-1]}"}, {"Authorization": WEBHOOK_TOKEN}):
        seen.append(httpx.post(f"{base}/webhook/alertmanager", json=body, headers=header).text)
    answer = httpx.post(f"{base}/webhook/alertmanager", json=body, headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"})
    incident_id = answer.json()["incidents"][0]
    incident = stack.wait_state(incident_id, {"rolled_back", "failed"})
    assert incident["state"] == "rolled_back"
    metrics = httpx.get(f"{base}/metrics").text
    assert 'rollbackbot_incidents{app="docsum-llm",state="rolled_back"} 1.0' in metrics
    assert 'rollbackbot_external_call_seconds_count{operation="commit_rollback",system="git"} 1.0' in metrics
    assert (
        'system="argocd"' in metrics and 'rollbackbot_alert_to_rollback_seconds_count{stage="healthy"} 1.0' in metrics
    )
    assert 'rollbackbot_webhook_requests_total{outcome="unauthorized"} 3.0' in metrics
    paths = ("/api/incidents", f"/api/incidents/{incident_id}", "/status", "/metrics", "/readyz", "/healthz")
    for path in (*paths, "/openapi.json"):
        seen.append(httpx.get(f"{base}{path}", headers=API_AUTH).text)
    seen.append(
        subprocess.run(
            ["git", "--git-dir", str(stack.sandbox.remote_path), "log", "--all", "-p", "--format=%B"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    evidence = Path(str(incident["evidence_url"]).removeprefix("file://"))
    seen.extend(p.read_text(errors="replace") for p in evidence.rglob("*") if p.is_file())
    logs = stack.log.read_text(errors="replace")
    assert "incident opened" in logs  # the service really logged this run
    seen.append(logs)
    everything = "\n".join(seen)
    for secret in (WEBHOOK_TOKEN, ARGOCD_TOKEN, WEBHOOK_TOKEN[:-1], SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET):
        assert secret not in everything
    abuse_report.add("secrets", inputs=len(seen), rollbacks=1)
