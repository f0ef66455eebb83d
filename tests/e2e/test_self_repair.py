"""Self-repair of the service process: a corrupt database stops start-up cleanly, a vanished state
directory fails the liveness probe (so Kubernetes restarts the pod) instead of accepting alerts into
an unlinked database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from rollbackbot import procs
from rollbackbot.testing.alertmanager import alert, notification
from tests.e2e.conftest import WEBHOOK_TOKEN, service_env, slack_env

pytestmark = pytest.mark.e2e


def _env(tmp_path: Path) -> dict[str, str]:
    signers = tmp_path / "allowed_signers"
    signers.write_text(
        "release@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBp0Zm9vYmFyYmF6cXV4cXV1eHh4eHh4eHh4eHh4\n"
    )
    remote = tmp_path / "gitops.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    return service_env(f"file://{remote}", signers, "http://127.0.0.1:9", tmp_path / "state") | slack_env()


def test_corrupt_database_at_start_exits_2_with_one_line(tmp_path: Path, abuse_report) -> None:  # type: ignore[no-untyped-def]
    env = _env(tmp_path)
    database = tmp_path / "state" / "state.db"
    database.parent.mkdir(parents=True)
    database.write_bytes(b"this is not an SQLite database, it was overwritten by accident\n" * 64)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLBACKBOT_")} | env
    result = subprocess.run(
        [sys.executable, "-m", "rollbackbot", "serve", "--port", str(procs.free_port())],
        env=full_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert str(database) in lines[0] and "move the file aside" in lines[0], lines[0]
    abuse_report.add("self-repair", inputs=1, faults=1)


def test_vanished_state_directory_fails_liveness_and_refuses_alerts(tmp_path: Path, abuse_report) -> None:  # type: ignore[no-untyped-def]
    port = procs.free_port()
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "service.log", "wb") as log:
        service = procs.start_service(_env(tmp_path), port, log, cwd=tmp_path)
        try:
            procs.wait_ready(f"{base}/healthz", service)
            shutil.rmtree(tmp_path / "state")  # e.g. an emptyDir wiped, a volume unmounted under the process

            health = httpx.get(f"{base}/healthz", timeout=5)
            assert health.status_code == 503
            assert "state.db is gone" in health.json()["problems"]["state"]
            labels = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}
            body = notification([alert(labels, datetime.now(UTC) - timedelta(minutes=1))])
            headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
            answer = httpx.post(f"{base}/webhook/alertmanager", json=body, headers=headers, timeout=5)
            assert answer.status_code == 503  # Alertmanager delivers again once the pod is restarted
        finally:
            procs.stop(service)
    abuse_report.add("self-repair", inputs=1, faults=1)
