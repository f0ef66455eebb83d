"""The service with Slack wired in, all in process: fake Slack behind a real slack-sdk client, real Bolt.

No sockets: the web client reaches the fake through ``httpx.ASGITransport``, and signed
interactivity requests reach the real FastAPI app the same way.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from rollbackbot.adapters.evidence import FileEvidenceSink
from rollbackbot.adapters.slack.api import SlackApi
from rollbackbot.adapters.slack.app import SlackActions, build_bolt_app, slack_router
from rollbackbot.adapters.slack.approvers import ApproverCheck
from rollbackbot.adapters.slack.chat import SlackChat
from rollbackbot.adapters.slack.store import SlackMessageStore
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.api import create_app
from rollbackbot.clock import FakeClock
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.incidents import Incident
from rollbackbot.policy_files import load_policies
from rollbackbot.ports import GitOpsRepo
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.slack import FakeSlack, block_actions, in_process_client, signed_request
from rollbackbot.testing.slack import create_app as fake_slack_app
from tests.service.fakes import FakeArgo, FakeGit

REPO = Path(__file__).resolve().parents[2]
TOKEN = "xoxb-test-bot-token-0123456789abcdef"
SECRET = "test-signing-secret-0123456789abcdef"
WEBHOOK_TOKEN = "test-webhook-token-0123456789"
SUPPORT = {"alertname": "ModelRefusalRateDrop", "app": "support-llm", "severity": "critical"}
DOCSUM = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}
APPROVER, SECOPS_MEMBER, STRANGER = "U012ABC", "U0SEC0001", "U0STRANGER"

NOTIFY_POLICY = """\
apiVersion: rollbackbot/v1
kind: RollbackPolicy
metadata: {name: chat-llm-watch}
spec:
  matchers: ['alertname = "ModelConfidenceDrift"', 'app = "chat-llm"']
  target: {argocdApps: [chat-llm], project: ml-prod, paths: [apps/chat-llm], tags: "chat-llm/v*"}
  mode: notify
  approval: {channel: C0ML0NCALL, approvers: [U012ABC]}
"""


def write_policies(directory: Path, on_timeout: str = "expire") -> Path:
    """The shipped policies, with the support-llm proposal's onTimeout as asked, plus a notify policy."""
    directory.mkdir(parents=True, exist_ok=True)
    for source in (REPO / "policies").glob("*.yaml"):
        text = source.read_text()
        if "support-llm" in source.name:
            text = text.replace("onTimeout: expire", f"onTimeout: {on_timeout}")
        (directory / source.name).write_text(text)
    (directory / "40-chat-llm-watch.yaml").write_text(NOTIFY_POLICY)
    return directory


@dataclass
class Harness:
    """One service with Slack, driven in process."""

    service: Service
    git: Any
    argo: FakeArgo
    clock: FakeClock
    fake: FakeSlack
    chat: SlackChat
    actions: SlackActions
    http: httpx.AsyncClient
    slept: list[float] = field(default_factory=list)
    on_sleep: Callable[[float], None] | None = None  # lets a test change the world while the code "waits"

    def fire(self, labels: dict[str, str], **annotations: str) -> str:
        """Deliver a firing alert as Alertmanager would; the incident id."""
        start = self.clock.now() - timedelta(minutes=2)
        body = notification([alert(labels, start, annotations=annotations or {"summary": "refusals collapsed"})])
        return self.service.receive(AlertmanagerPayload.model_validate(body)).incidents[0]

    async def settle(self) -> None:
        """Until the service, the click handlers and the chat are all quiet."""
        for _ in range(3):
            await asyncio.sleep(0.005)  # a woken worker must run before idle() can tell it is busy
            await self.actions.idle()
            await self.service.idle()
            await self.chat.idle()

    def incident(self, incident_id: str) -> Incident:
        found = self.service.store.get(incident_id)
        assert found is not None
        return found

    async def click(
        self,
        action: str,
        incident_id: str,
        user: str = APPROVER,
        *,
        timestamp: int | None = None,
        secret: str = SECRET,
    ) -> httpx.Response:
        """Press a button as Slack would deliver it, correctly signed unless told otherwise."""
        body, headers = signed_request(
            secret, block_actions(action, incident_id, user, user_name="dana.ops"), timestamp
        )
        return await self.http.post("/slack/actions", content=body, headers=headers)

    async def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.http.post("/slack/actions", content=body, headers=headers)


def new_fake_slack() -> FakeSlack:
    """The workspace of these tests: one approver by id, one through the S0SECOPS user group."""
    return FakeSlack(
        token=TOKEN,
        usergroups={"S0SECOPS": [SECOPS_MEMBER]},
        users={APPROVER: "Dana Ops", SECOPS_MEMBER: "Sam Sec"},
    )


async def make_harness(
    tmp_path: Path,
    *,
    on_timeout: str = "expire",
    git: GitOpsRepo | None = None,
    clock: FakeClock | None = None,
    fake: FakeSlack | None = None,
) -> tuple[Harness, Any]:
    """Build everything; returns the harness and the FastAPI app. Nothing ever really sleeps."""
    clock = clock or FakeClock()
    fake = fake or new_fake_slack()
    slept: list[float] = []
    harness: Harness | None = None

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)
        if harness is not None and harness.on_sleep is not None:
            harness.on_sleep(seconds)
        await asyncio.sleep(0)

    api = SlackApi(in_process_client(fake_slack_app(fake), TOKEN), sleep=no_sleep)
    policies = load_policies(write_policies(tmp_path / f"policies-{on_timeout}", on_timeout))
    store = SqlIncidentStore(f"sqlite:///{tmp_path}/state.db")
    chat = SlackChat(
        api,
        SlackMessageStore(store.engine),
        policies={p.name: p for p in policies},
        store=store,
        clock=clock,
        sleep=no_sleep,
    )
    used_git = git or FakeGit()
    argo = FakeArgo()
    service = Service(
        store=store,
        git=used_git,
        argocd=argo,
        policies=policies,
        clock=clock,
        evidence=FileEvidenceSink(tmp_path / "evidence"),
        chat=chat,
    )
    actions = SlackActions(service, api, ApproverCheck(api, clock))
    bolt = build_bolt_app(SecretStr(SECRET), api, actions)
    app = create_app(service, SecretStr(WEBHOOK_TOKEN), routers=[slack_router(bolt, chat, actions)])
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rollbackbot")
    harness = Harness(service, used_git, argo, clock, fake, chat, actions, http, slept)
    return harness, app


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    made, _ = await make_harness(tmp_path)
    await made.service.start()
    await made.chat.start()
    yield made
    await made.actions.stop()
    await made.chat.stop()
    await made.service.stop()
    await made.http.aclose()
    shutil.rmtree(tmp_path / "evidence", ignore_errors=True)
