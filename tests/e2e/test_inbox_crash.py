"""An accepted webhook survives SIGKILL: the real ``rollbackbot serve`` dies right after the 202 (or at
each point of the inbox), restarts, and the incident exists exactly once; on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from rollbackbot import procs
from rollbackbot.core.incidents import incident_id
from rollbackbot.failpoints import INBOX_POINTS
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.gitops import build_sandbox
from rollbackbot.testing.postgres import PostgresCluster
from tests.e2e.conftest import API_AUTH, ARGOCD_TOKEN, WEBHOOK_TOKEN, docsum_releases, service_env, slack_env
from tests.store.conftest import pg_cluster  # noqa: F401  (the session's throwaway PostgreSQL cluster)

pytestmark = pytest.mark.e2e
HEADERS = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
_names = itertools.count()


def _database(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if engine == "sqlite":
        return f"sqlite:///{tmp_path}/state/state.db"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"inbox_crash_{os.getpid()}_{next(_names)}")


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
@pytest.mark.parametrize("kill", ["sigkill_after_202", *INBOX_POINTS])
def test_an_accepted_webhook_survives_sigkill_and_becomes_its_incident_once(
    tmp_path: Path, engine: str, kill: str, request: pytest.FixtureRequest
) -> None:
    sandbox = build_sandbox(tmp_path / "gitops", docsum_releases())
    config = tmp_path / "argocd.json"
    apps = [{"name": "docsum-llm", "project": "ml-prod", "path": "apps/docsum-llm"}]
    config.write_text(
        json.dumps({"token": ARGOCD_TOKEN, "repo": str(sandbox.remote_path), "branch": sandbox.branch, "apps": apps})
    )
    port = procs.free_port()
    base = f"http://127.0.0.1:{port}"
    labels = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}
    body = notification([alert(labels, datetime.now(UTC) - timedelta(minutes=1))])
    first = body["alerts"][0]
    expected = incident_id("docsum-llm", first["fingerprint"], datetime.fromisoformat(first["startsAt"]))
    with open(tmp_path / "processes.log", "wb") as log:
        argo, argo_url = procs.start_fake_argocd(config, log)
        env = service_env(sandbox.remote_url, sandbox.allowed_signers, argo_url, tmp_path / "state") | slack_env()
        env["ROLLBACKBOT_DATABASE_URL"] = _database(engine, tmp_path, request)
        armed = {} if kill == "sigkill_after_202" else {"ROLLBACKBOT_FAILPOINTS": kill}
        service: subprocess.Popen[bytes] | None = procs.start_service(env | armed, port, log, cwd=tmp_path)
        try:
            assert service is not None
            procs.wait_ready(f"{base}/readyz", service)
            try:
                answer = httpx.post(f"{base}/webhook/alertmanager", json=body, headers=HEADERS, timeout=10)
            except httpx.HTTPError:
                assert kill == "after_inbox_commit"  # killed after the commit, before answering
            else:
                assert answer.status_code == 202 and answer.json() == {"incidents": [expected]}
                if kill == "sigkill_after_202":
                    service.send_signal(signal.SIGKILL)
            assert service.wait(timeout=30) == -9

            service = procs.start_service(env, port, log, cwd=tmp_path)
            procs.wait_ready(f"{base}/readyz", service)
            # The first read after the restart already sees it: rows left by the dead process count.
            one = httpx.get(f"{base}/api/incidents/{expected}", headers=API_AUTH, timeout=10)
            assert one.status_code == 200, one.text
            opened = [e for e in one.json()["events"] if e["detail"].startswith("alert PromptInjectionSpike fired")]
            assert len(opened) == 1, one.json()["events"]
            again = httpx.post(f"{base}/webhook/alertmanager", json=body, headers=HEADERS, timeout=10)
            assert again.json() == {"incidents": [expected]}  # Alertmanager re-delivers: nothing new
            listed = httpx.get(f"{base}/api/incidents", headers=API_AUTH, timeout=10).json()["incidents"]
            assert [i["id"] for i in listed] == [expected]
            metrics = httpx.get(f"{base}/metrics", timeout=10).text.splitlines()
            assert "rollbackbot_inbox_rows 0.0" in metrics and "rollbackbot_inbox_poisoned_rows 0.0" in metrics
        finally:
            procs.stop(service)
            procs.stop(argo)
