"""Crash safety: SIGKILL the service at each step, restart it, and get exactly one rollback commit."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from rollbackbot import procs
from rollbackbot.failpoints import POINTS
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.gitops import build_sandbox
from tests.e2e.conftest import API_AUTH, ARGOCD_TOKEN, WEBHOOK_TOKEN, docsum_releases, service_env, slack_env

pytestmark = pytest.mark.e2e


def _git(remote: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(remote), *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_each_step_then_restart_gives_one_commit(tmp_path: Path, point: str, abuse_report) -> None:  # type: ignore[no-untyped-def]
    sandbox = build_sandbox(tmp_path / "gitops", docsum_releases())
    head_before = sandbox.head()
    config = tmp_path / "argocd.json"
    config.write_text(
        json.dumps(
            {
                "token": ARGOCD_TOKEN,
                "repo": str(sandbox.remote_path),
                "branch": sandbox.branch,
                "apps": [{"name": "docsum-llm", "project": "ml-prod", "path": "apps/docsum-llm"}],
            }
        )
    )
    port = procs.free_port()
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "processes.log", "wb") as log:
        argo, argo_url = procs.start_fake_argocd(config, log)
        env = service_env(sandbox.remote_url, sandbox.allowed_signers, argo_url, tmp_path / "state") | slack_env()
        service = procs.start_service(env | {"ROLLBACKBOT_FAILPOINTS": point}, port, log, cwd=tmp_path)
        try:
            procs.wait_ready(f"{base}/readyz", service)
            labels = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}
            body = notification([alert(labels, datetime.now(UTC) - timedelta(minutes=1))])
            headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
            incident_id = httpx.post(f"{base}/webhook/alertmanager", json=body, headers=headers).json()["incidents"][0]
            assert service.wait(timeout=30) == -9, "the failpoint did not kill the service"

            service = procs.start_service(env, port, log, cwd=tmp_path)
            procs.wait_ready(f"{base}/readyz", service)
            # Alertmanager re-delivers after the outage: that must not create or commit anything new.
            assert httpx.post(f"{base}/webhook/alertmanager", json=body, headers=headers).status_code == 202
            deadline, incident = time.monotonic() + 30, {}
            while time.monotonic() < deadline:
                incident = httpx.get(f"{base}/api/incidents/{incident_id}", headers=API_AUTH).json()
                if incident["state"] in ("rolled_back", "failed"):
                    break
                time.sleep(0.05)
            assert incident["state"] == "rolled_back", (incident, (tmp_path / "processes.log").read_text()[-3000:])
        finally:
            procs.stop(service)
            procs.stop(argo)
    commits = _git(sandbox.remote_path, "rev-list", f"{head_before}..{sandbox.branch}").split()
    assert commits == [incident["rollback_commit"]]
    assert _git(sandbox.remote_path, "log", "-1", "--format=%(trailers:key=Rollback-Incident,valueonly)").strip() == (
        incident_id
    )
    abuse_report.add("crash-restart", faults=1, restarts=1, rollbacks=len(commits), duplicates=len(commits) - 1)
    abuse_report.settled(incidents=1, stuck=int(incident["state"] not in ("rolled_back", "failed")))
