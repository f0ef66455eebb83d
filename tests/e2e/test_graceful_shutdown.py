"""SIGTERM to a real ``rollbackbot serve`` with an incident mid-sync: intake closes, the step finishes or
stays persisted, the process exits 0, and a restart finishes the rollback with exactly one commit."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from rollbackbot.adapters.store_sql import SqlIncidentStore
from tests.e2e.service_process import ServiceProcess, service_process, wait_for

pytestmark = pytest.mark.e2e

DOCSUM = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}
BADGE = {"alertname": "ModelFalseNegativeSpike", "app": "badge-vision", "severity": "critical"}


def _mid_sync(service: ServiceProcess) -> str:
    """Open a docsum-llm incident and hold it in ``syncing``: Argo CD keeps reporting Progressing."""
    service.argocd_faults("docsum-llm", healthOverride="Progressing")
    incident_id = str(service.fire(DOCSUM).json()["incidents"][0])
    service.wait_state(incident_id, {"syncing"})
    return incident_id


def _stored(service: ServiceProcess, incident_id: str) -> str:
    """The incident's state as persisted, read from the database after the process is gone."""
    incident = SqlIncidentStore(service.env["ROLLBACKBOT_DATABASE_URL"]).get(incident_id)
    assert incident is not None
    return incident.state.value


def _readyz(service: ServiceProcess) -> httpx.Response:
    return httpx.get(f"{service.url}/readyz", timeout=10)


def test_sigterm_closes_intake_lets_the_sync_finish_and_exits_0(tmp_path: Path) -> None:
    with service_process(tmp_path) as service:
        service.start(ROLLBACKBOT_SHUTDOWN_GRACE_SECONDS="60")
        head = service.sandbox.head()
        incident_id = _mid_sync(service)
        assert service.proc is not None
        service.signal(signal.SIGTERM)
        sigterm_at = datetime.now(UTC)

        wait_for(lambda: _readyz(service).status_code == 503, "/readyz to turn 503 after SIGTERM")
        assert "shutdown" in _readyz(service).json()["problems"]
        refused = service.fire(BADGE)
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["Retry-After"]) > 0
        assert service.proc.poll() is None, "exited while a step was in flight"

        service.argocd_faults("docsum-llm", healthOverride=None)  # the sync step can now succeed
        assert service.proc.wait(timeout=60) == 0, service.log_text()[-3000:]

        assert _stored(service, incident_id) == "rolled_back"
        store = SqlIncidentStore(service.env["ROLLBACKBOT_DATABASE_URL"])
        finished = store.get(incident_id)
        assert finished is not None and finished.events[-1].at >= sigterm_at  # it finished during the drain
        assert [i.id for i in store.recent(10)] == [incident_id], "the alert refused while draining was recorded"
        assert service.rollback_commits(head) == [finished.rollback_commit]


def test_sync_longer_than_the_grace_period_stays_persisted_and_resumes_after_restart(tmp_path: Path) -> None:
    with service_process(tmp_path) as service:
        service.start(ROLLBACKBOT_SHUTDOWN_GRACE_SECONDS="1")
        head = service.sandbox.head()
        incident_id = _mid_sync(service)
        assert service.proc is not None
        service.signal(signal.SIGTERM)
        assert service.proc.wait(timeout=30) == 0, service.log_text()[-3000:]
        assert _stored(service, incident_id) == "syncing"
        assert "grace period over" in service.log_text()

        service.argocd_faults("docsum-llm", healthOverride=None)
        service.start()
        done = service.wait_state(incident_id, {"rolled_back", "failed"})
        assert done["state"] == "rolled_back", done
        assert service.rollback_commits(head) == [done["rollback_commit"]]
