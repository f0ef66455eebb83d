"""The metrics the self-monitoring alerts read (manifests/monitoring/rollbackbot-rules.yml) move with the service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from pydantic import SecretStr

from rollbackbot import steps
from rollbackbot.adapters.argocd.client import ArgoCDClient
from rollbackbot.adapters.evidence import FileEvidenceSink
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.api import create_app
from rollbackbot.clock import FakeClock
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.model import AppHealth
from rollbackbot.core.retries import RetryBudget
from rollbackbot.dependencies import DependencyBoard
from rollbackbot.errors import RollbackBotError
from rollbackbot.metrics import DEPENDENCIES, INCIDENTS, INCIDENTS_OVERDUE, REGISTRY
from rollbackbot.policy_files import load_policies
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from tests.service.fakes import FakeArgo, FakeGit, TransientError

REPO = Path(__file__).resolve().parents[2]
DOCSUM = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}
BADGE = {"alertname": "ModelFalseNegativeSpike", "app": "badge-vision", "severity": "critical"}
GRACE = timedelta(minutes=15)
TOKEN = "test-webhook-token-0123456789"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(autouse=True)
def _fresh_gauges() -> Iterator[None]:
    """The scrape-time gauges read the service under test, and forget it afterwards."""
    DEPENDENCIES.forget()
    yield
    INCIDENTS.count = None
    INCIDENTS_OVERDUE.count = None
    DEPENDENCIES.forget()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _service(tmp_path: Path, clock: FakeClock, git: FakeGit, argo: FakeArgo) -> Service:
    store = SqlIncidentStore(f"sqlite:///{tmp_path}/state.db")
    service = Service(
        store=store,
        git=git,
        argocd=argo,
        policies=load_policies(REPO / "policies"),
        clock=clock,
        evidence=FileEvidenceSink(tmp_path / "evidence"),
        retry=RetryBudget(seconds=0.001, attempts=1, backoff=0.001),  # a transient fault fails the incident at once
    )
    INCIDENTS.count = store.count_by_app_state
    INCIDENTS_OVERDUE.count = partial(service.overdue_by_state, GRACE)  # as wiring.build does
    return service


def _payload(clock: FakeClock) -> AlertmanagerPayload:
    body = notification([alert(DOCSUM, clock.now() - timedelta(minutes=2))])
    return AlertmanagerPayload.model_validate(body)


async def _until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_a_failed_incident_moves_the_failed_counter_and_gauge(tmp_path: Path, clock: FakeClock) -> None:
    before = sample("rollbackbot_incident_transitions_total", app="docsum-llm", state="failed")
    service = _service(tmp_path, clock, FakeGit(), FakeArgo(unhealthy="Degraded: CrashLoopBackOff"))
    [incident_id] = service.receive(_payload(clock)).incidents
    await service.idle()
    incident = service.store.get(incident_id)
    assert incident is not None and incident.state.value == "failed"
    assert sample("rollbackbot_incident_transitions_total", app="docsum-llm", state="failed") == before + 1
    assert sample("rollbackbot_incidents", app="docsum-llm", state="failed") == 1
    assert sample("rollbackbot_incidents_overdue", state="syncing") == 0  # failed is terminal, not stuck


class HungArgo(FakeArgo):
    """Argo CD that accepts the sync and then never answers the health wait (until released)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def wait_synced_healthy(
        self, app: str, project: str, revision: str, timeout: float, lineage: object = None
    ) -> AppHealth:
        await self.release.wait()
        return await super().wait_synced_healthy(app, project, revision, timeout, lineage)


async def test_an_incident_past_its_deadline_is_overdue(tmp_path: Path, clock: FakeClock) -> None:
    argo = HungArgo()
    service = _service(tmp_path, clock, FakeGit(), argo)
    [incident_id] = service.receive(_payload(clock)).incidents

    def syncing() -> bool:
        incident = service.store.get(incident_id)
        return incident is not None and incident.state.value == "syncing"

    await _until(syncing)
    for state in ("received", "awaiting_approval", "approved", "rolling_back", "syncing"):
        assert sample("rollbackbot_incidents_overdue", state=state) == 0, state
    # The shipped policy's sync timeout plus the grace, and a second more: stuck.
    policy = next(p for p in service.policies if p.name == service.store.get(incident_id).policy)  # type: ignore[union-attr]
    clock.advance((policy.spec.sync.timeout + GRACE).total_seconds() - 1)
    assert sample("rollbackbot_incidents_overdue", state="syncing") == 0
    clock.advance(2)
    assert sample("rollbackbot_incidents_overdue", state="syncing") == 1
    assert b'rollbackbot_incidents_overdue{state="syncing"} 1.0' in generate_latest(REGISTRY)
    # Once it moves on, nothing is overdue any more.
    argo.release.set()
    await service.idle()
    assert sample("rollbackbot_incidents_overdue", state="syncing") == 0
    await service.stop()


async def test_git_unreachable_sets_dependency_down_and_success_up(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps, "COMMIT_BACKOFF_SECONDS", 0.0)
    git = FakeGit(fail_commit=[TransientError(f"git push failed: connection refused ({i})") for i in range(10_000)])
    service = _service(tmp_path, clock, git, FakeArgo())
    [incident_id] = service.receive(_payload(clock)).incidents

    def git_up() -> float | None:
        return REGISTRY.get_sample_value("rollbackbot_dependency_up", {"dependency": "git"})

    # The plan reached the remote, then every push fails and is retried: git reads as down meanwhile.
    await _until(lambda: git.plans == 1 and len(git.fail_commit) < 10_000 - 3 and git_up() == 0)
    # The remote is back: the retried push goes through, and git is up again.
    git.fail_commit.clear()
    await service.idle()
    assert service.store.get(incident_id).state.value == "rolled_back"  # type: ignore[union-attr]
    assert git_up() == 1


@pytest.mark.parametrize(
    ("answer", "up"),
    [
        (httpx.Response(200, json={"metadata": {"name": "docsum-llm"}}), 1),
        (httpx.Response(404, json={"message": "application not found", "code": 5}), 1),  # reached
        (httpx.Response(503, text="upstream connect error"), 0),
        (httpx.Response(401, json={"message": "invalid session", "code": 16}), 0),
        (httpx.ConnectError("connection refused"), 0),
    ],
)
async def test_argocd_calls_set_dependency_up(answer: httpx.Response | Exception, up: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def no_sleep(_seconds: float) -> None:
        return None

    client = ArgoCDClient(
        "https://argocd.example",
        SecretStr("argocd-token"),
        transport=httpx.MockTransport(handler),
        retry_attempts=1,
        sleep=no_sleep,
    )
    try:
        await client.get_application("docsum-llm", "ml-prod")
    except RollbackBotError:
        pass
    assert REGISTRY.get_sample_value("rollbackbot_dependency_up", {"dependency": "argocd"}) == up


def test_dependency_verdict_expires_after_a_quiet_period() -> None:
    now = [100.0]
    gauge = DependencyBoard(monotonic=lambda: now[0])
    gauge.record("git", reachable=False)
    [family] = gauge.collect()
    assert [(s.labels, s.value) for s in family.samples] == [({"dependency": "git"}, 0.0)]
    now[0] += 15 * 60 + 1  # no call for longer than the freshness window: unknown, not "down" for ever
    [family] = gauge.collect()
    assert family.samples == []


async def test_webhook_answers_are_counted_by_status_code(tmp_path: Path, clock: FakeClock) -> None:
    service = _service(tmp_path, clock, FakeGit(), FakeArgo())
    app = create_app(service, SecretStr(TOKEN))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    before = {code: sample("rollbackbot_webhook_responses_total", code=code) for code in ("202", "401", "500")}
    body = notification([alert(DOCSUM, clock.now() - timedelta(minutes=2))])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://rollbackbot") as http:
        assert (await http.post("/webhook/alertmanager", json=body)).status_code == 401
        assert (await http.post("/webhook/alertmanager", json=body, headers=auth)).status_code == 202

        async def store_down(_payload: AlertmanagerPayload, _body: bytes) -> None:
            raise RuntimeError("database is locked")

        service.accept = store_down  # type: ignore[assignment,method-assign]
        assert (await http.post("/webhook/alertmanager", json=body, headers=auth)).status_code == 500
        assert (await http.get("/healthz")).status_code == 200  # other routes are not counted
    await service.idle()
    await service.stop()
    after = {code: sample("rollbackbot_webhook_responses_total", code=code) for code in ("202", "401", "500")}
    assert {code: after[code] - before[code] for code in after} == {"202": 1, "401": 1, "500": 1}


def test_a_store_outage_does_not_fail_the_scrape() -> None:
    def store_down() -> dict[str, int]:
        raise RollbackBotError("incident store: OperationalError")

    INCIDENTS_OVERDUE.count = store_down
    scraped = generate_latest(REGISTRY)
    assert b"rollbackbot_webhook_responses_total" in scraped
    assert b"rollbackbot_incidents_overdue{" not in scraped  # no number rather than a wrong 0
