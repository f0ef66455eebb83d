"""A git remote that drops out while an incident plans: the incident fails only after its retry budget,
and Alertmanager's next delivery of the still-firing alert retries it as a new attempt on the same incident.

Real processes on loopback: git daemon (started late), the fake Argo CD, the service, Alertmanager.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from rollbackbot import procs
from rollbackbot.testing.gitops import build_sandbox
from tests.e2e.conftest import (
    ARGOCD_TOKEN,
    WEBHOOK_TOKEN,
    docsum_releases,
    service_env,
    slack_env,
    start_git_daemon,
)

pytestmark = pytest.mark.e2e
GAVE_UP = "gave up after transient errors"


def _incidents(base: str) -> list[dict[str, object]]:
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    return list(httpx.get(f"{base}/api/incidents", headers=headers, timeout=5).json()["incidents"])


def _wait_for(base: str, done: object, timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [i for i in _incidents(base) if done(i)]  # type: ignore[operator]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no incident reached the expected state: {_incidents(base)}")


def _alertmanager(binary: str, service_url: str, tmp_path: Path, log: object) -> tuple[subprocess.Popen[bytes], str]:
    port = procs.free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route: {receiver: rollbackbot, group_by: [alertname, app], group_wait: 0s, group_interval: 1s, "
        "repeat_interval: 1s}\n"
        "receivers:\n"
        "  - name: rollbackbot\n"
        "    webhook_configs:\n"
        f"      - url: {service_url}/webhook/alertmanager\n"
        f"        http_config: {{authorization: {{credentials: {WEBHOOK_TOKEN}}}}}\n"
    )
    (tmp_path / "am-data").mkdir()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,  # type: ignore[arg-type]
        stderr=log,  # type: ignore[arg-type]
    )
    url = f"http://127.0.0.1:{port}"
    procs.wait_ready(f"{url}/-/ready", proc)
    return proc, url


def test_git_outage_then_redelivery_rolls_back_once(tmp_path: Path, alertmanager_bin: str, abuse_report) -> None:  # type: ignore[no-untyped-def]
    sandbox = build_sandbox(tmp_path / "gitops", docsum_releases())
    head_before = sandbox.head()
    config = tmp_path / "argocd.json"
    app = {"name": "docsum-llm", "project": "ml-prod", "path": "apps/docsum-llm"}
    config.write_text(json.dumps({"token": ARGOCD_TOKEN, "repo": str(sandbox.remote_path), "apps": [app]}))
    git_port, port = procs.free_port(), procs.free_port()
    git_url = f"git://127.0.0.1:{git_port}/{sandbox.remote_path.name}"  # nothing listens there yet
    base = f"http://127.0.0.1:{port}"
    started: list[subprocess.Popen[bytes]] = []
    with open(tmp_path / "processes.log", "wb") as log:
        try:
            argo, argo_url = procs.start_fake_argocd(config, log)
            started.append(argo)
            env = service_env(git_url, sandbox.allowed_signers, argo_url, tmp_path / "state") | slack_env()
            env |= {"ROLLBACKBOT_RETRY_BUDGET_SECONDS": "1", "ROLLBACKBOT_RETRY_BACKOFF_SECONDS": "0.1"}
            started.append(procs.start_service(env, port, log, cwd=tmp_path))
            procs.wait_ready(f"{base}/healthz", started[-1])
            am, am_url = _alertmanager(alertmanager_bin, base, tmp_path, log)
            started.append(am)
            labels = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}
            httpx.post(f"{am_url}/api/v2/alerts", json=[{"labels": labels}], timeout=5).raise_for_status()

            failed = _wait_for(base, lambda i: i["state"] == "failed")
            assert str(failed["events"][-1]["detail"]).startswith(GAVE_UP)  # type: ignore[index]
            started.append(start_git_daemon(sandbox.remote_path.parent, git_port, log))  # the remote is back

            done = _wait_for(base, lambda i: i["id"] == failed["id"] and i["state"] == "rolled_back")
        finally:
            for proc in reversed(started):
                procs.stop(proc)
    details = [str(e["detail"]) for e in done["events"]]  # type: ignore[union-attr]
    assert any(d.startswith("attempt 2 of 3: the alert is still firing") for d in details), details
    commits = subprocess.run(
        ["git", "--git-dir", str(sandbox.remote_path), "rev-list", f"{head_before}..main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert commits == [done["rollback_commit"]]
    abuse_report.add("transient-redelivery", faults=1, rollbacks=len(commits), duplicates=len(commits) - 1)
    abuse_report.settled(incidents=1, stuck=0, transient_faults=1, lost_rollbacks=0)
