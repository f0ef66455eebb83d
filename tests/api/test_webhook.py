"""The HTTP interface in-process: auth, limits, validation, idempotency (no sockets)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from rollbackbot import http_body
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.api import create_app
from rollbackbot.clock import FakeClock
from rollbackbot.policy_files import load_policies
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from tests.service.fakes import FakeArgo, FakeGit

REPO = Path(__file__).resolve().parents[2]
ALERTMANAGER_CAPTURES = REPO / "tests" / "fixtures" / "alertmanager"
TOKEN = "test-webhook-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOCSUM = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Service, FakeGit]]:
    git = FakeGit()
    service = Service(
        store=SqlIncidentStore(f"sqlite:///{tmp_path}/state.db"),
        git=git,
        argocd=FakeArgo(),
        policies=load_policies(REPO / "policies"),
        clock=FakeClock(),
    )
    app = create_app(service, SecretStr(TOKEN), readiness={"store": lambda: None})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rollbackbot") as http:
        await service.start()
        yield http, service, git
        await service.stop()


def _body(clock_labels: dict[str, str] = DOCSUM, resolved: bool = False) -> dict[str, object]:
    start = FakeClock().now() - timedelta(minutes=2)
    return notification([alert(clock_labels, start, ends_at=FakeClock().now() if resolved else None)])


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}],
)
async def test_unauthenticated_requests_are_refused_and_do_nothing(client, headers) -> None:  # type: ignore[no-untyped-def]
    http, service, git = client
    answer = await http.post("/webhook/alertmanager", json=_body(), headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in answer.text
    await service.idle()
    assert service.store.recent() == [] and git.commits == {}


async def test_oversized_body_is_413(client) -> None:  # type: ignore[no-untyped-def]
    http, service, _ = client
    answer = await http.post("/webhook/alertmanager", content=b" " * (1024 * 1024 + 1), headers=AUTH)
    assert answer.status_code == 413
    assert service.store.recent() == []


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"version": "3", "status": "firing", "alerts": []}',
        b'{"version": "4", "status": "firing"}',
        json.dumps({**_body(), "alerts": [{"labels": {}, "status": "firing"}]}).encode(),
        b"[" * 5000 + b"]" * 5000,
    ],
    ids=["syntax", "array", "version", "no-alerts", "alert-shape", "deep-nesting"],
)
async def test_malformed_payloads_are_422(client, content: bytes) -> None:  # type: ignore[no-untyped-def]
    http, service, _ = client
    answer = await http.post(
        "/webhook/alertmanager", content=content, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answer.status_code == 422
    assert isinstance(answer.json()["detail"], list)
    assert service.store.recent() == []


async def test_real_captured_payloads_are_accepted(client) -> None:  # type: ignore[no-untyped-def]
    http, _, _ = client
    for name in ("firing.json", "resolved.json"):
        content = (ALERTMANAGER_CAPTURES / name).read_bytes()
        answer = await http.post(
            "/webhook/alertmanager", content=content, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"incidents": []}  # chat-api matches no shipped policy


async def test_firing_alert_answers_202_with_ids_and_redelivery_is_a_no_op(client) -> None:  # type: ignore[no-untyped-def]
    http, service, git = client
    first = await http.post("/webhook/alertmanager", json=_body(), headers=AUTH)
    assert first.status_code == 202
    ids = first.json()["incidents"]
    assert len(ids) == 1 and ids[0].startswith("inc-")
    await service.idle()
    again = await http.post("/webhook/alertmanager", json=_body(), headers=AUTH)
    assert again.json()["incidents"] == ids
    await service.idle()
    assert len(service.store.recent()) == 1 and len(git.commits) == 1

    listed = (await http.get("/api/incidents", headers=AUTH)).json()["incidents"]
    assert [i["id"] for i in listed] == ids
    one = (await http.get(f"/api/incidents/{ids[0]}", headers=AUTH)).json()
    assert one["state"] == "rolled_back" and one["events"][0]["state"] == "received"
    assert (await http.get("/api/incidents/inc-missing", headers=AUTH)).status_code == 404


async def test_resolved_alert_creates_nothing(client) -> None:  # type: ignore[no-untyped-def]
    http, service, git = client
    answer = await http.post("/webhook/alertmanager", json=_body(resolved=True), headers=AUTH)
    assert answer.status_code == 202 and answer.json() == {"incidents": []}
    await service.idle()
    assert service.store.recent() == [] and git.commits == {}


async def test_health_readiness_and_metrics(client) -> None:  # type: ignore[no-untyped-def]
    http, _, _ = client
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).json() == {"status": "ready"}
    await http.post("/webhook/alertmanager", json=_body(), headers={})
    metrics = (await http.get("/metrics")).text
    assert 'rollbackbot_webhook_requests_total{outcome="unauthorized"}' in metrics


async def test_openapi_documents_the_webhook_body(client) -> None:  # type: ignore[no-untyped-def]
    http, _, _ = client
    spec = (await http.get("/openapi.json")).json()
    body = spec["paths"]["/webhook/alertmanager"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["properties"]["version"]


async def test_openapi_webhook_schema_has_no_dangling_refs(client) -> None:  # type: ignore[no-untyped-def]
    http, _, _ = client
    spec = (await http.get("/openapi.json")).text
    assert "#/$defs/" not in spec


async def test_a_chunked_oversized_body_is_cut_off_while_streaming(client) -> None:  # type: ignore[no-untyped-def]
    http, service, _ = client
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):  # 64 MiB if it were all read
            sent.append(1)
            yield b" " * (1024 * 1024)

    answer = await http.post("/webhook/alertmanager", content=chunks(), headers=AUTH)
    assert answer.status_code == 413 and len(sent) < 4
    assert service.store.recent() == []


async def test_a_body_that_never_finishes_times_out(client, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    http, service, _ = client
    monkeypatch.setattr(http_body, "BODY_READ_SECONDS", 0.05)
    never = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b'{"version": "4", '
        await never.wait()
        yield b"}"

    answer = await asyncio.wait_for(http.post("/webhook/alertmanager", content=stalled(), headers=AUTH), timeout=10)
    assert answer.status_code == 408
    assert service.store.recent() == []
