"""The durable inbox in-process: the answer's ids are the incidents that appear, re-deliveries and
re-decided rows change nothing, a poison row is kept aside, readers see their writes, an outage is 503."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from pydantic import SecretStr

from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.api import create_app
from rollbackbot.clock import FakeClock
from rollbackbot.core.incidents import IncidentState
from rollbackbot.core.retries import GAVE_UP
from rollbackbot.metrics import REGISTRY
from rollbackbot.policy_files import load_policies
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from tests.service.fakes import FakeArgo, FakeGit

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-webhook-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
START = FakeClock().now() - timedelta(minutes=2)
KNOWN = frozenset({"apps/docsum-llm", "apps/support-llm", "apps/support-llm-de", "apps/badge-vision"})


def _alert(alertname: str, app: str, *, ended: bool = False, pod: str = "p0") -> dict[str, Any]:
    labels = {"alertname": alertname, "app": app, "pod": pod}
    return alert(labels, START, ends_at=FakeClock().now() if ended else None)


def _mixed() -> dict[str, Any]:
    """One webhook with every kind of alert the mapping knows."""
    return notification(
        [
            _alert("PromptInjectionSpike", "docsum-llm"),  # opens (auto)
            _alert("ModelRefusalRateDrop", "support-llm-de"),  # opens (templated app, propose)
            _alert("ModelRefusalRateDrop", "support-llm-a/b"),  # refused: recorded as app "unresolved"
            _alert("ModelRefusalRateDrop", "support-llm-nowhere"),  # unknown app: nothing recorded
            _alert("SomethingElse", "docsum-llm"),  # matches no policy
            _alert("PromptInjectionSpike", "docsum-llm", pod="p1", ended=True),  # a resolution
        ]
    )


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.git = FakeGit(paths=KNOWN)
        self.store = SqlIncidentStore(f"sqlite:///{tmp_path}/state.db")
        self.service = Service(
            store=self.store,
            git=self.git,
            argocd=FakeArgo(),
            policies=load_policies(REPO / "policies"),
            clock=FakeClock(),
        )
        self.app = create_app(self.service, SecretStr(TOKEN))
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://rollbackbot")

    async def post(self, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post("/webhook/alertmanager", json=body, headers=AUTH)

    def stored_ids(self) -> set[str]:
        return {i.id for i in self.store.recent(1000)}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    made = Rig(tmp_path)
    await made.service.start()
    yield made
    await made.service.stop()
    await made.http.aclose()


async def test_the_ids_answered_are_exactly_the_incidents_that_appear(rig: Rig) -> None:
    answer = await rig.post(_mixed())
    assert answer.status_code == 202
    ids = answer.json()["incidents"]
    await rig.service.idle()
    assert set(ids) == rig.stored_ids() and len(ids) == 3  # docsum, support-llm-de, the refused one
    refused = [i for i in rig.store.recent() if i.app == "unresolved"]
    assert len(refused) == 1 and refused[0].state is IncidentState.suppressed
    assert rig.store.inbox.depth().pending == 0  # decided rows are deleted


async def test_an_app_listed_after_the_answer_still_gets_no_incident(rig: Rig) -> None:
    """The drainer honours the answer: an app unknown when the webhook was accepted stays refused."""
    await rig.service.inbox.stop_draining()  # type: ignore[union-attr]  # hold the row undecided
    answer = await rig.post(notification([_alert("ModelRefusalRateDrop", "support-llm-new")]))
    assert answer.json()["incidents"] == []
    rig.git.paths = KNOWN | {"apps/support-llm-new"}  # a fetch meanwhile lists the app
    rig.service.inbox.start()  # type: ignore[union-attr]
    await rig.service.idle()
    assert rig.stored_ids() == set()


async def test_redeliveries_during_and_after_the_drain_are_idempotent(rig: Rig) -> None:
    bodies = [
        notification([_alert("PromptInjectionSpike", "docsum-llm", pod=f"p{n}-{k}") for k in range(20)])
        for n in range(10)
    ]
    first = await asyncio.gather(*(rig.post(b) for b in bodies))
    during = await asyncio.gather(*(rig.post(b) for b in bodies))  # while the first ones are decided
    await rig.service.idle()
    after = await asyncio.gather(*(rig.post(b) for b in bodies))
    await rig.service.idle()
    answers = [[r.json()["incidents"] for r in batch] for batch in (first, during, after)]
    assert answers[0] == answers[1] == answers[2]
    assert rig.stored_ids() == {i for ids in answers[0] for i in ids} and len(rig.stored_ids()) == 200


async def test_a_row_decided_twice_doubles_nothing_and_reopens_a_failed_incident_once(rig: Rig) -> None:
    """A crash after deciding but before the row's delete: the next start decides it again."""
    body = notification([_alert("PromptInjectionSpike", "docsum-llm")])
    await rig.service.inbox.stop_draining()  # type: ignore[union-attr]
    (incident_id,) = (await rig.post(body)).json()["incidents"]
    (row,) = rig.store.inbox.claim(10).rows
    rig.service._decide_rows([row])  # decided, the process "dies" before deleting the row
    stored = rig.store.get(incident_id)
    assert stored is not None
    # It fails on a transient error after the webhook was accepted; a re-delivery would re-open it.
    failed = stored.with_state(IncidentState.failed, rig.service.clock.now() + timedelta(seconds=1), f"{GAVE_UP}: x")
    rig.store.save(failed, IncidentState.received)
    rig.service._decide_rows([row])  # the restart decides the same row again
    again = rig.store.get(incident_id)
    assert again is not None and again.state is IncidentState.failed  # not re-opened by its own old delivery
    assert len(rig.store.recent()) == 1
    events = [e.state for e in again.events]
    assert events.count(IncidentState.received) == 1


async def test_a_poison_row_is_kept_aside_and_the_others_go_on(rig: Rig) -> None:
    rig.service.inbox.poll_seconds = 0.01  # type: ignore[union-attr]
    rig.store.inbox.append([(rig.service.clock.now(), b'{"version": "4", "not": "a payload"}', [])])
    answer = await rig.post(notification([_alert("PromptInjectionSpike", "docsum-llm")]))
    await asyncio.wait_for(rig.service.idle(), 10)  # never returns while the poison row blocks the inbox
    assert rig.stored_ids() == set(answer.json()["incidents"])
    depth = rig.store.inbox.depth()
    assert depth.pending == 0 and depth.poisoned == 1
    (kept,) = rig.store.inbox.poisoned()
    assert kept.attempts == 3 and kept.body.startswith(b'{"version"')
    exported = generate_latest(REGISTRY).decode()
    assert 'rollbackbot_inbox_drain_errors_total{kind="poison"}' in exported
    assert (await rig.http.get("/healthz")).status_code == 200  # a poison row is no reason to restart


async def test_a_reader_sees_the_incident_of_the_webhook_it_was_answered(rig: Rig) -> None:
    inbox = rig.service.inbox
    assert inbox is not None
    slow = inbox._decide

    def slowly(row: Any) -> Any:
        import time

        time.sleep(0.3)  # the drainer lags behind the answer
        return slow(row)

    inbox._decide = slowly
    answer = await rig.post(notification([_alert("PromptInjectionSpike", "docsum-llm")]))
    (incident_id,) = answer.json()["incidents"]
    one = await rig.http.get(f"/api/incidents/{incident_id}", headers=AUTH)
    assert one.status_code == 200 and one.json()["id"] == incident_id
    second = await rig.post(notification([_alert("PromptInjectionSpike", "docsum-llm", pod="p9")]))
    listed = (await rig.http.get("/api/incidents", headers=AUTH)).json()["incidents"]
    assert set(second.json()["incidents"]) <= {i["id"] for i in listed}


async def test_a_store_outage_is_503_with_nothing_recorded(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rollbackbot.adapters.store_sql.BUSY_TIMEOUT_MS", 50)
    database = Path(str(rig.store.inbox.engine.url.database))  # on SQLite the inbox has a file of its own
    rig.store.inbox.engine.dispose()  # new connections pick up the short busy timeout
    other = sqlite3.connect(database, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        answer = await rig.post(notification([_alert("PromptInjectionSpike", "docsum-llm")]))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert answer.status_code == 503 and "deliver again later" in answer.text
    await rig.service.idle()
    assert rig.stored_ids() == set() and rig.store.inbox.depth().pending == 0


async def test_graceful_shutdown_decides_what_was_accepted(rig: Rig) -> None:
    await rig.service.inbox.stop_draining()  # type: ignore[union-attr]  # accepted, not decided yet
    answer = await rig.post(notification([_alert("PromptInjectionSpike", "docsum-llm")]))
    rig.service.inbox.start()  # type: ignore[union-attr]
    assert await rig.service.drain(5.0)
    assert (await rig.post(notification([_alert("PromptInjectionSpike", "docsum-llm", pod="x")]))).status_code == 503
    assert rig.stored_ids() == set(answer.json()["incidents"])
    assert rig.store.inbox.depth().pending == 0


async def test_a_dead_or_stuck_drainer_fails_healthz_and_the_webhook(rig: Rig) -> None:
    inbox = rig.service.inbox
    assert inbox is not None
    inbox.heartbeat -= 3600  # no pass for an hour: stuck (e.g. a decide that never returns)
    health = await rig.http.get("/healthz")
    assert health.status_code == 503 and "inbox drainer stuck" in health.json()["problems"]["inbox"]
    inbox.heartbeat += 3600
    assert (await rig.http.get("/healthz")).status_code == 200

    async def broken() -> None:
        raise RuntimeError("a bug in the drainer")

    inbox._task.cancel()  # type: ignore[union-attr]  # swapped for a drainer that crashes
    inbox._task = asyncio.get_running_loop().create_task(broken())
    await asyncio.sleep(0)
    health = await rig.http.get("/healthz")
    assert health.status_code == 503
    assert health.json()["problems"]["inbox"] == "inbox drainer stopped: RuntimeError: a bug in the drainer"
    refused = await rig.post(notification([_alert("PromptInjectionSpike", "docsum-llm")]))
    assert refused.status_code == 503  # not taken into an inbox nobody drains: Alertmanager delivers again


async def test_a_drainer_falling_behind_says_so(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    inbox = rig.service.inbox
    assert inbox is not None
    await inbox.stop_draining()
    await rig.post(notification([_alert("PromptInjectionSpike", "docsum-llm")]))
    rig.service.clock.advance(30)  # type: ignore[attr-defined]
    inbox.start()
    await rig.service.idle()
    assert any("inbox drainer behind" in r.getMessage() and "30s" in r.getMessage() for r in caplog.records)


async def test_a_resolution_decided_with_its_firing_alert_in_one_batch_finds_its_incident(rig: Rig) -> None:
    inbox = rig.service.inbox
    assert inbox is not None
    await inbox.stop_draining()  # both rows wait, then are decided in one pass
    fired = await rig.post(notification([_alert("PromptInjectionSpike", "docsum-llm", pod="r")]))
    resolved = notification([_alert("PromptInjectionSpike", "docsum-llm", pod="r", ended=True)])
    assert (await rig.post(resolved)).json() == {"incidents": []}  # a resolution opens nothing
    inbox.start()
    await rig.service.idle()
    (incident_id,) = fired.json()["incidents"]
    incident = rig.store.get(incident_id)
    assert incident is not None and incident.resolved_at is not None


async def test_an_alert_storm_waits_for_worker_slots_as_ids_not_as_tasks(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of incidents decided at once must not become thousands of tasks (memory): a queue of ids."""
    monkeypatch.setattr("rollbackbot.service.MAX_WAITING_FOR_SLOT", 4)
    storm = notification([_alert("PromptInjectionSpike", "docsum-llm", pod=f"s{n}") for n in range(60)])
    await rig.service.inbox.stop_draining()  # type: ignore[union-attr]
    ids = (await rig.post(storm)).json()["incidents"]
    most = 0
    rig.service.inbox.start()  # type: ignore[union-attr]
    while rig.service.working or rig.service.inbox.pending_here:  # type: ignore[union-attr]
        most = max(most, len(rig.service._running))
        await asyncio.sleep(0.001)
    assert 0 < most <= 4 + 8  # waiting for a slot, plus the 8 slots
    final = [rig.store.get(i) for i in ids]
    assert all(i is not None and i.state.terminal for i in final)  # every one was driven in the end
