"""One ``rollbackbot serve`` process against a GitOps sandbox and the fake Argo CD, restartable and signalable.

Shared by the operations tests (graceful shutdown, policy reload): unlike the ``stack`` fixture, these
tests choose the policy directory and settings, stop the service themselves and look at its exit code.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx

from rollbackbot import procs
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.gitops import GitOpsSandbox, build_sandbox
from tests.e2e.conftest import ARGOCD_TOKEN, REPO_ROOT, WEBHOOK_TOKEN, docsum_releases, slack_env

AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
APPS = [
    {"name": "docsum-llm", "project": "ml-prod", "path": "apps/docsum-llm"},
    {"name": "badge-vision", "project": "ml-prod", "path": "apps/badge-vision"},
    {"name": "badge-vision-features", "project": "ml-prod", "path": "apps/badge-vision-features"},
]


@dataclass
class ServiceProcess:
    """The service's settings and state directory; ``start()`` runs (or re-runs) the process."""

    sandbox: GitOpsSandbox
    argocd_url: str
    env: dict[str, str]
    work: Path
    log: IO[bytes]
    port: int = field(default_factory=procs.free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, **settings: str) -> None:
        self.proc = procs.start_service(self.env | settings, self.port, self.log, cwd=self.work)
        procs.wait_ready(f"{self.url}/readyz", self.proc)

    def signal(self, signum: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def fire(self, labels: dict[str, str]) -> httpx.Response:
        body = notification([alert(labels, datetime.now(UTC) - timedelta(minutes=1))])
        return httpx.post(f"{self.url}/webhook/alertmanager", json=body, headers=AUTH, timeout=10)

    def incident(self, incident_id: str) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/api/incidents/{incident_id}", headers=AUTH, timeout=10).json())

    def wait_state(self, incident_id: str, states: set[str], timeout: float = 60.0) -> dict[str, Any]:
        deadline, data = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            data = self.incident(incident_id)
            if data.get("state") in states:
                return data
            time.sleep(0.05)
        raise AssertionError(f"{incident_id} never reached {states}: {data}\n{self.log_text()[-4000:]}")

    def metric(self, name: str) -> float | None:
        """The value of one sample of /metrics (``name`` with its labels, as exposed), None if absent."""
        for line in httpx.get(f"{self.url}/metrics", timeout=10).text.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def argocd_faults(self, app: str, **knobs: Any) -> None:
        httpx.post(f"{self.argocd_url}/_fake/apps/{app}/faults", json=knobs, timeout=10).raise_for_status()

    def rollback_commits(self, since: str) -> list[str]:
        remote = str(self.sandbox.remote_path)
        out = subprocess.run(
            ["git", "--git-dir", remote, "rev-list", f"{since}..{self.sandbox.branch}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.split()

    def log_text(self) -> str:
        self.log.flush()
        return (self.work / "processes.log").read_text(errors="replace")


def wait_for(predicate: Any, what: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` until it is true, failing with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def service_process(tmp_path: Path, policies: Path = REPO_ROOT / "policies") -> Iterator[ServiceProcess]:
    """A sandbox with the docsum-llm and badge-vision releases, the fake Argo CD, and settings for the service."""
    sandbox = build_sandbox(tmp_path / "gitops", docsum_releases())
    config = tmp_path / "argocd.json"
    config.write_text(
        json.dumps({"token": ARGOCD_TOKEN, "repo": str(sandbox.remote_path), "branch": sandbox.branch, "apps": APPS})
    )
    with open(tmp_path / "processes.log", "wb") as log:
        argo, argo_url = procs.start_fake_argocd(config, log)
        env = (
            procs.service_env(
                git_url=sandbox.remote_url,
                allowed_signers=sandbox.allowed_signers,
                policies=policies,
                argocd_url=argo_url,
                argocd_token=ARGOCD_TOKEN,
                webhook_token=WEBHOOK_TOKEN,
                state=tmp_path / "state",
            )
            | slack_env()
        )
        service = ServiceProcess(sandbox, argo_url, env, tmp_path, log)
        try:
            yield service
        finally:
            procs.stop(service.proc)
            procs.stop(argo)
