"""GET /api/incidents: token, keyset pages stable under inserts, filters; retention of old incidents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.api import create_app
from rollbackbot.clock import FakeClock
from rollbackbot.core.incidents import AlertRef, Incident, IncidentState, new_incident
from rollbackbot.policy_files import load_policies
from rollbackbot.retention import prune_once
from rollbackbot.service import Service
from tests.service.fakes import FakeArgo, FakeGit

REPO = Path(__file__).resolve().parents[2]
WEBHOOK = "pages-webhook-token-0123456789"
READER = "pages-reader-token-0123456789"
AUTH = {"Authorization": f"Bearer {READER}"}
T0 = datetime(2026, 11, 1, tzinfo=UTC)
S = IncidentState


def _incident(n: int, at: datetime, app: str = "docsum-llm") -> Incident:
    alert = AlertRef("PromptInjectionSpike", f"{n:016x}", at, {"app": app})
    return new_incident(app=app, policy="p", mode="auto", alert=alert, target={}, now=at)


def _terminal(incident: Incident, at: datetime) -> Incident:
    return incident.with_state(S.suppressed, at, "suppressed by the test")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, SqlIncidentStore]]:
    store = SqlIncidentStore(f"sqlite:///{tmp_path}/state.db")
    service = Service(
        store=store, git=FakeGit(), argocd=FakeArgo(), policies=load_policies(REPO / "policies"), clock=FakeClock()
    )
    app = create_app(service, SecretStr(WEBHOOK), api_token=SecretStr(READER))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rollbackbot") as http:
        yield http, store


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": f"Bearer {WEBHOOK}"}, {"Authorization": "Bearer wrong-0123456789abcdef"}, {"X": "y"}],
)
async def test_the_incident_api_needs_the_api_token(api, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    http, store = api
    store.create(_incident(1, T0))
    for path in ("/api/incidents", f"/api/incidents/{_incident(1, T0).id}", "/status"):
        answer = await http.get(path, headers=headers)
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
        assert "docsum-llm" not in answer.text
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await http.get(path, headers=headers)).status_code == 200


async def test_the_webhook_token_opens_the_api_when_no_api_token_is_set(tmp_path: Path) -> None:
    store = SqlIncidentStore(f"sqlite:///{tmp_path}/state.db")
    service = Service(store=store, git=FakeGit(), argocd=FakeArgo(), policies=[], clock=FakeClock())
    app = create_app(service, SecretStr(WEBHOOK))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rollbackbot") as http:
        assert (await http.get("/api/incidents")).status_code == 401
        answer = await http.get("/api/incidents", headers={"Authorization": f"Bearer {WEBHOOK}"})
        assert answer.status_code == 200 and answer.json() == {"incidents": [], "next_cursor": None}


async def test_every_incident_is_reachable_page_by_page_while_new_ones_arrive(api) -> None:  # type: ignore[no-untyped-def]
    http, store = api
    # 10,000 incidents, many sharing a creation time, so the id must break ties.
    store.create_many([_incident(n, T0 + timedelta(seconds=n // 7)) for n in range(10_000)])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "500"} | ({"cursor": cursor} if cursor else {})
        answer = await http.get("/api/incidents", params=params, headers=AUTH)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        seen += [i["id"] for i in body["incidents"]]
        # Newer incidents keep arriving while the client walks: they must not shift any page.
        store.create(_incident(100_000 + pages, T0 + timedelta(days=1, seconds=pages)))
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None or pages > 40:  # 20 pages expected; a cursor that goes nowhere must fail, not loop
            break
    assert pages == 20
    assert len(seen) == len(set(seen)) == 10_000
    assert set(seen) == {_incident(n, T0 + timedelta(seconds=n // 7)).id for n in range(10_000)}


async def test_filters_and_limits(api) -> None:  # type: ignore[no-untyped-def]
    http, store = api
    made = [_incident(n, T0 + timedelta(minutes=n), "support-llm" if n % 2 else "docsum-llm") for n in range(6)]
    store.create_many(made)
    store.save(_terminal(made[5], T0 + timedelta(minutes=5)), S.received)

    async def ids(**params: str) -> list[str]:
        answer = await http.get("/api/incidents", params=params, headers=AUTH)
        assert answer.status_code == 200, answer.text
        return [i["app"] + ":" + i["alert"]["fingerprint"][-1] for i in answer.json()["incidents"]]

    assert await ids(app="support-llm") == ["support-llm:5", "support-llm:3", "support-llm:1"]
    assert await ids(state="suppressed") == ["support-llm:5"]
    assert await ids(since=(T0 + timedelta(minutes=4)).isoformat()) == ["support-llm:5", "docsum-llm:4"]
    assert await ids(limit="2", app="docsum-llm") == ["docsum-llm:4", "docsum-llm:2"]
    for bad in ({"limit": "501"}, {"limit": "0"}, {"state": "exploded"}, {"since": "yesterday"}):
        assert (await http.get("/api/incidents", params=bad, headers=AUTH)).status_code == 422
    for cursor in ("not-a-cursor", "W10", "eyJhIjoxfQ"):
        assert (await http.get("/api/incidents", params={"cursor": cursor}, headers=AUTH)).status_code == 400


def test_retention_prunes_old_terminal_incidents_only(tmp_path: Path) -> None:
    store = SqlIncidentStore(f"sqlite:///{tmp_path}/state.db")
    clock = FakeClock(T0 + timedelta(days=100))
    old_done = _terminal(_incident(1, T0), T0)
    old_open = _incident(2, T0)  # never deleted, however old: it is still being worked on
    recent_done = _terminal(_incident(3, T0 + timedelta(days=20)), T0 + timedelta(days=20))
    for incident in (old_done, old_open, recent_done):
        assert store.create(incident)
    assert prune_once(store, clock, days=90) == 1
    assert store.get(old_done.id) is None
    assert store.get(old_open.id) is not None and store.get(recent_done.id) is not None
    assert prune_once(store, clock, days=90) == 0
    assert prune_once(store, clock, days=30) == 1 and store.get(recent_done.id) is None


def test_prune_works_in_batches(tmp_path: Path) -> None:
    store = SqlIncidentStore(f"sqlite:///{tmp_path}/state.db")
    store.create_many([_terminal(_incident(n, T0), T0) for n in range(1_201)])
    assert store.prune(T0 + timedelta(seconds=1), batch=500) == 1_201
    assert store.page(10).incidents == []


def test_the_incident_gauge_counts_from_the_index_not_the_table(tmp_path: Path) -> None:
    store = SqlIncidentStore(f"sqlite:///{tmp_path}/state.db")
    with store.engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT app, state, count(*) FROM incidents GROUP BY app, state"
        ).all()
    assert any("COVERING INDEX ix_incidents_app_state" in str(row) for row in plan), plan
