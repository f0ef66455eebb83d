"""Real Prometheus scrapes the real service with the shipped self-monitoring rules loaded.

The rule file is the one in manifests/monitoring/ with its group evaluated every second instead of
every 30 seconds; nothing else changes. The GitOps remote disappears, an alert arrives, the
incident fails, and Prometheus fires RollbackbotIncidentFailed from the service's own /metrics.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from rollbackbot import procs
from rollbackbot.testing.alertmanager import alert, notification
from tests.e2e.conftest import WEBHOOK_TOKEN, Stack

pytestmark = [pytest.mark.e2e]

RULES = Path(__file__).resolve().parents[2] / "manifests" / "monitoring" / "rollbackbot-rules.yml"
DOCSUM = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}


def _prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path:
        return path
    if __import__("os").environ.get("CI") == "true":
        pytest.fail("prometheus is missing under CI=true: .ci/run must install it")
    pytest.skip("prometheus not installed (Debian package prometheus)")


@pytest.fixture
def prometheus(stack: Stack, tmp_path: Path) -> Iterator[str]:
    binary = _prometheus_bin()
    shipped = RULES.read_text(encoding="utf-8")
    fast = shipped.replace("    interval: 30s\n", "    interval: 1s\n", 1)
    assert fast != shipped
    (tmp_path / "rules.yml").write_text(fast, encoding="utf-8")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [
            # The job name the Prometheus Operator gives the shipped ServiceMonitor.
            {"job_name": "rollbackbot", "static_configs": [{"targets": [stack.service_url.removeprefix("http://")]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = procs.free_port()
    with open(tmp_path / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            procs.wait_ready(f"http://127.0.0.1:{port}/-/ready", proc)
            yield f"http://127.0.0.1:{port}"
        finally:
            procs.stop(proc)


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def _firing(url: str) -> list[dict[str, Any]]:
    alerts = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a for a in alerts if a["state"] == "firing"]


def _eventually(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


# The git remote is taken away: a short retry budget makes the transient fault a failure soon.
@pytest.mark.stack_env(ROLLBACKBOT_RETRY_BUDGET_SECONDS="1", ROLLBACKBOT_RETRY_BACKOFF_SECONDS="0.1")
def test_prometheus_fires_incident_failed_from_the_live_service(stack: Stack, prometheus: str) -> None:
    _eventually("first scrape", lambda: _query(prometheus, 'up{job="rollbackbot"} == 1'))
    overdue = _eventually("overdue gauge scraped", lambda: _query(prometheus, "rollbackbot_incidents_overdue"))
    assert {s["metric"]["state"] for s in overdue} >= {"received", "rolling_back", "syncing"}
    assert all(s["value"][1] == "0" for s in overdue)
    assert _firing(prometheus) == []  # healthy: nothing about rollbackbot fires

    # The GitOps remote goes away; the next alert cannot be planned and the incident fails.
    stack.sandbox.remote_path.rename(stack.sandbox.remote_path.with_name("moved-away.git"))
    body = notification([alert(DOCSUM, datetime.now(UTC) - timedelta(minutes=2))])
    answer = httpx.post(
        f"{stack.service_url}/webhook/alertmanager",
        json=body,
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
        timeout=5,
    )
    assert answer.status_code == 202
    [incident_id] = answer.json()["incidents"]
    assert stack.wait_state(incident_id, {"failed", "rolled_back"}, timeout=60)["state"] == "failed"

    def incident_failed_fires() -> list[dict[str, Any]]:
        return [a for a in _firing(prometheus) if a["labels"]["alertname"] == "RollbackbotIncidentFailed"]

    [fired] = _eventually("RollbackbotIncidentFailed firing", incident_failed_fires)
    assert fired["labels"]["app"] == "docsum-llm" and fired["labels"]["severity"] == "critical"
    assert fired["annotations"]["runbook_url"].endswith("docs/operations.md#rollbackbotincidentfailed")
    git_up = _eventually("git reachability scraped", lambda: _query(prometheus, "rollbackbot_dependency_up"))
    assert [(s["metric"]["dependency"], s["value"][1]) for s in git_up if s["metric"]["dependency"] == "git"] == [
        ("git", "0")
    ]
