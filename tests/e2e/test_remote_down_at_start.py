"""A git remote that is down at start: the service serves, stays ready (intake works), says why in /status."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from rollbackbot import procs
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.gitops import AppSpec, Release, build_sandbox
from tests.e2e.conftest import API_AUTH, WEBHOOK_TOKEN, service_env, slack_env

pytestmark = pytest.mark.e2e


def test_git_remote_down_at_start(tmp_path: Path) -> None:
    sandbox = build_sandbox(tmp_path / "gitops", [AppSpec("docsum-llm", [Release("1.0.0")])])
    port = procs.free_port()
    down = "https://bot:hunter2-secret@127.0.0.1:9/gitops.git"
    env = service_env(down, sandbox.allowed_signers, "http://127.0.0.1:9", tmp_path / "state") | slack_env()
    env |= {
        "ROLLBACKBOT_RETRY_BUDGET_SECONDS": "1",
        "ROLLBACKBOT_RETRY_BACKOFF_SECONDS": "0.1",
    }  # a short outage budget
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "service.log", "wb") as log:
        service = procs.start_service(env, port, log, cwd=tmp_path)
        try:
            procs.wait_ready(f"{base}/healthz", service)
            ready = httpx.get(f"{base}/readyz")
            assert ready.status_code == 200, ready.text  # a git outage must not stop Alertmanager's deliveries
            assert httpx.get(f"{base}/status").status_code == 401
            status = httpx.get(f"{base}/status", headers=API_AUTH)
            git = status.json()["dependencies"]["git"]
            assert git["status"] == "error" and "127.0.0.1:9" in git["last_error"], status.text
            assert "hunter2-secret" not in status.text and "bot@" not in status.text
            labels = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}
            body = notification([alert(labels, datetime.now(UTC) - timedelta(minutes=1))])
            answer = httpx.post(
                f"{base}/webhook/alertmanager", json=body, headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
            )
            assert answer.status_code == 202
            incident_id = answer.json()["incidents"][0]
            deadline, incident = time.monotonic() + 20, {}
            while time.monotonic() < deadline:
                incident = httpx.get(f"{base}/api/incidents/{incident_id}", headers=API_AUTH).json()
                if incident["state"] == "failed":
                    break
                time.sleep(0.1)
            assert incident["state"] == "failed", incident
            detail = incident["events"][-1]["detail"]
            assert detail.startswith("gave up after transient errors") and "git fetch" in detail, detail
            assert "hunter2-secret" not in str(incident)
            assert service.poll() is None  # still serving
        finally:
            procs.stop(service)
    assert "hunter2-secret" not in (tmp_path / "service.log").read_text()
