"""A git remote that is down at start: the service serves, says why it is not ready, and records alerts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from rollbackbot import procs
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.gitops import AppSpec, Release, build_sandbox
from tests.e2e.conftest import ARGOCD_TOKEN, REPO_ROOT, WEBHOOK_TOKEN, slack_env

pytestmark = pytest.mark.e2e


def test_git_remote_down_at_start(tmp_path: Path) -> None:
    sandbox = build_sandbox(tmp_path / "gitops", [AppSpec("docsum-llm", [Release("1.0.0")])])
    port = procs.free_port()
    env = {
        "ROLLBACKBOT_GIT_URL": "https://bot:hunter2-secret@127.0.0.1:9/gitops.git",
        "ROLLBACKBOT_GIT_WORKDIR": str(tmp_path / "state/repo"),
        "ROLLBACKBOT_GIT_ALLOWED_SIGNERS": str(sandbox.allowed_signers),
        "ROLLBACKBOT_POLICIES": str(REPO_ROOT / "policies"),
        "ROLLBACKBOT_ARGOCD_URL": "http://127.0.0.1:9",
        "ROLLBACKBOT_ARGOCD_TOKEN": ARGOCD_TOKEN,
        "ROLLBACKBOT_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "ROLLBACKBOT_DATABASE_URL": f"sqlite:///{tmp_path}/state/state.db",
        "ROLLBACKBOT_EVIDENCE_URL": f"file://{tmp_path}/state/evidence",
        **slack_env(),
    }
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "service.log", "wb") as log:
        service = procs.start_service(env, port, log, cwd=tmp_path)
        try:
            procs.wait_ready(f"{base}/healthz", service)
            ready = httpx.get(f"{base}/readyz")
            assert ready.status_code == 503
            assert "git remote not reachable" in ready.json()["problems"]["git"]
            assert "hunter2-secret" not in ready.text
            labels = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}
            body = notification([alert(labels, datetime.now(UTC) - timedelta(minutes=1))])
            answer = httpx.post(
                f"{base}/webhook/alertmanager", json=body, headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
            )
            assert answer.status_code == 202
            incident_id = answer.json()["incidents"][0]
            deadline, incident = time.monotonic() + 20, {}
            while time.monotonic() < deadline:
                incident = httpx.get(f"{base}/api/incidents/{incident_id}").json()
                if incident["state"] == "failed":
                    break
                time.sleep(0.1)
            assert incident["state"] == "failed" and "planning failed" in incident["events"][-1]["detail"]
            assert "hunter2-secret" not in str(incident)
            assert service.poll() is None  # still serving
        finally:
            procs.stop(service)
    assert "hunter2-secret" not in (tmp_path / "service.log").read_text()
