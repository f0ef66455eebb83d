"""50 apps roll back at once while a second writer keeps pushing to the deploy branch.

Real processes on loopback: the service, the Argo CD stand-in (half the apps with auto-sync, which
follows the branch head) and a ``git daemon`` GitOps remote. Argo CD therefore reports revisions
newer than the rollback commits; every incident must still end ``rolled_back``, with one commit each.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from rollbackbot import procs
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.gitops import AppSpec, GitOpsSandbox, Release, build_sandbox
from tests.e2e.conftest import ARGOCD_TOKEN, WEBHOOK_TOKEN, _wait_port

pytestmark = pytest.mark.e2e

APPS = [f"fleet-{i:02d}" for i in range(50)]
DEADLINE_SECONDS = 240.0
FLEET_POLICY = """\
apiVersion: rollbackbot/v1
kind: RollbackPolicy
metadata:
  name: fleet
spec:
  matchers:
    - alertname = "ModelAnomaly"
    - app =~ "fleet-[0-9]+"
  target:
    argocdApps: ["${labels.app}"]
    project: ml-prod
    paths: ["apps/${labels.app}"]
    tags: "${labels.app}/v*"
  mode: auto
  budget: {max: 100, per: 24h}
  sync: {timeout: 90s, prune: true}
  forensics: {budget: 2s}
"""


class SecondWriter(threading.Thread):
    """Pushes unrelated commits (docs, platform) to the deploy branch until stopped, like a busy team."""

    def __init__(self, sandbox: GitOpsSandbox, pause: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.sandbox, self.pause = sandbox, pause
        self.stopped = threading.Event()
        self.pushed: list[str] = []
        self.rejected = 0

    def run(self) -> None:
        while not self.stopped.wait(self.pause):
            n = len(self.pushed)
            path = "platform/limits.yaml" if n % 2 else f"docs/changes/{n:04d}.md"
            try:
                self.pushed.append(self.sandbox.commit_paths({path: f"change {n}\n"}, f"ops: unrelated change {n}"))
            except subprocess.CalledProcessError:
                self.rejected += 1  # the bot pushed first: fetch and try again next round


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[GitOpsSandbox, str, str, Path]]:
    """Sandbox with 50 apps (1.1.0 deployed and Degraded), git daemon, stand-in and service; yields URLs."""
    specs = [AppSpec(app, [Release("1.0.0"), Release("1.1.0", health="Degraded")]) for app in APPS]
    sandbox = build_sandbox(tmp_path / "gitops", specs)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "fleet.yaml").write_text(FLEET_POLICY)
    log_path = tmp_path / "processes.log"
    started: list[subprocess.Popen[bytes]] = []
    with open(log_path, "wb") as log:
        try:
            git_port = procs.free_port()
            base = sandbox.remote_path.parent
            daemon_args = ["git", "daemon", "--reuseaddr", f"--base-path={base}", "--export-all"]
            daemon_args += ["--enable=receive-pack", "--listen=127.0.0.1", f"--port={git_port}", str(base)]
            started.append(subprocess.Popen(daemon_args, stdout=log, stderr=log))
            _wait_port(git_port)
            git_url = f"git://127.0.0.1:{git_port}/{sandbox.remote_path.name}"
            apps = [
                {"name": app, "project": "ml-prod", "path": f"apps/{app}", "autoSync": i % 2 == 0}
                for i, app in enumerate(APPS)
            ]
            config = tmp_path / "argocd.json"
            config.write_text(json.dumps({"token": ARGOCD_TOKEN, "repo": str(sandbox.remote_path), "apps": apps}))
            argo, argo_url = procs.start_fake_argocd(config, log)
            started.append(argo)
            env = procs.service_env(
                git_url=git_url,
                allowed_signers=sandbox.allowed_signers,
                policies=policies,
                argocd_url=argo_url,
                argocd_token=ARGOCD_TOKEN,
                webhook_token=WEBHOOK_TOKEN,
                state=tmp_path / "state",
            )
            port = procs.free_port()
            service = procs.start_service(env, port, log, cwd=tmp_path)
            started.append(service)
            url = f"http://127.0.0.1:{port}"
            procs.wait_ready(f"{url}/readyz", service)
            yield sandbox, url, argo_url, log_path
        finally:
            for proc in reversed(started):
                procs.stop(proc)


def _incidents(url: str, ids: list[str]) -> list[dict[str, object]]:
    auth = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}  # the incident API takes the webhook token by default
    return [httpx.get(f"{url}/api/incidents/{incident_id}", headers=auth, timeout=10).json() for incident_id in ids]


def test_fifty_rollbacks_while_the_branch_keeps_moving(
    fleet: tuple[GitOpsSandbox, str, str, Path],
    abuse_report,  # type: ignore[no-untyped-def]
) -> None:
    sandbox, url, argo_url, log_path = fleet
    head_before = sandbox.head()
    started = datetime.now(UTC) - timedelta(minutes=1)
    alerts = [alert({"alertname": "ModelAnomaly", "app": app, "severity": "critical"}, started) for app in APPS]
    writer = SecondWriter(sandbox)
    writer.start()
    try:
        answer = httpx.post(
            f"{url}/webhook/alertmanager",
            json=notification(alerts),
            headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
            timeout=30,
        )
        assert answer.status_code == 202, answer.text
        ids = list(answer.json()["incidents"])
        assert len(ids) == len(APPS)
        deadline = time.monotonic() + DEADLINE_SECONDS
        incidents = _incidents(url, ids)
        while any(i["state"] not in ("rolled_back", "failed") for i in incidents):
            assert time.monotonic() < deadline, (Counter(i["state"] for i in incidents), log_path.read_text()[-3000:])
            time.sleep(0.5)
            incidents = _incidents(url, ids)
    finally:
        writer.stopped.set()
        writer.join(timeout=30)

    outcomes = {str(i["app"]): (i["state"], i["reason"]) for i in incidents}
    assert all(state == "rolled_back" for state, _ in outcomes.values()), {
        app: outcome for app, outcome in outcomes.items() if outcome[0] != "rolled_back"
    }
    # One rollback commit per incident on the branch, each carrying its incident id once.
    rollbacks = sandbox.git(
        "log", "--format=%(trailers:key=Rollback-Incident,valueonly)", f"{head_before}..{sandbox.branch}"
    ).split()
    assert sorted(rollbacks) == sorted(ids)
    commits = {str(i["rollback_commit"]) for i in incidents}
    assert len(commits) == len(APPS)
    on_branch = set(sandbox.git("rev-list", f"{head_before}..{sandbox.branch}").split())
    assert commits <= on_branch
    # The world did move under the syncs: Argo CD ended at a newer revision for many apps.
    assert writer.pushed, "the second writer never got a commit in"
    moved = [app for app, (_, reason) in outcomes.items() if "Argo CD now at" in str(reason)]
    assert moved, "no sync saw the branch move: the test did not exercise what it is about"
    for app in moved[:5]:
        status = httpx.get(f"{argo_url}/_fake/apps/{app}", timeout=5).json()["status"]
        assert (status["sync"]["status"], status["health"]["status"]) == ("Synced", "Healthy")
    abuse_report.add("moving-branch", faults=len(writer.pushed), rollbacks=len(commits), duplicates=0)
