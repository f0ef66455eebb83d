"""Slack interactivity at ``POST /slack/actions``: the Approve / Reject buttons of a proposal.

The body is read capped (64 KiB, chunked included) within a deadline before anything parses it
(413 / 408), and its signature is checked first (wrong, missing, malformed or older than 5 minutes
→ 401; Bolt checks again); the handler acks at once; the decision runs after, in a task: approver
check, then the service's compare-and-set ``approve``/``reject``, which makes double clicks,
replays and second replicas harmless. The chat port then replaces the proposal and threads the
progress. Answers to the clicker are ephemeral.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from rollbackbot.adapters.slack.api import SlackApi
from rollbackbot.adapters.slack.approvers import ApproverCheck, safe_name
from rollbackbot.adapters.slack.blocks import ActionId, date, mention
from rollbackbot.adapters.slack.chat import SlackChat
from rollbackbot.adapters.slack.metrics import SLACK_ACTIONS
from rollbackbot.core.incidents import Incident, IncidentState
from rollbackbot.core.messages import decision_of
from rollbackbot.errors import AdapterError
from rollbackbot.http_body import BodyRefused, read_capped, with_body
from rollbackbot.ports import Decisions

__all__ = ["ActionId", "SlackActions", "build_bolt_app", "slack_router"]

log = logging.getLogger("rollbackbot.slack")
INCIDENT_ID = re.compile(r"inc-[0-9a-f]{16}")
USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
MAX_BODY_BYTES = 64 * 1024  # a block_actions payload is a few KiB; refuse more before verifying anything


class SlackUser(BaseModel):
    """Who clicked."""

    model_config = ConfigDict(extra="ignore")
    id: str
    username: str = ""
    name: str = ""


class SlackChannel(BaseModel):
    """Where the clicked message is."""

    model_config = ConfigDict(extra="ignore")
    id: str


class ClickedButton(BaseModel):
    """The button: its action id, and the incident id as its value."""

    model_config = ConfigDict(extra="ignore")
    action_id: str
    value: str = ""


class BlockActions(BaseModel):
    """The part of Slack's ``block_actions`` payload a decision needs."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["block_actions"]
    user: SlackUser
    channel: SlackChannel | None = None
    actions: list[ClickedButton] = Field(min_length=1)


class SlackActions:
    """Turns button clicks into the service's decisions, after the ack."""

    def __init__(self, service: Decisions, api: SlackApi, approvers: ApproverCheck) -> None:
        self.service = service
        self.api = api
        self.approvers = approvers
        self._tasks: set[asyncio.Task[str]] = set()

    async def on_click(self, ack: Callable[[], Awaitable[Any]], body: dict[str, Any]) -> None:
        """Bolt listener for both buttons: ack now, decide in the background."""
        await ack()
        self._spawn(self.decide(body))

    async def decide(self, body: dict[str, Any]) -> str:
        """Apply one click; returns the outcome (also a metric label)."""
        try:
            click = BlockActions.model_validate(body)
            action = ActionId(click.actions[0].action_id)
        except (ValidationError, ValueError):
            SLACK_ACTIONS.labels("unknown", "invalid").inc()
            return "invalid"
        outcome = await self._decide(click, action)
        SLACK_ACTIONS.labels(action.value, outcome).inc()
        return outcome

    async def idle(self) -> None:
        """Wait for clicks being decided (tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        """Cancel clicks still being decided."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, str]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _decide(self, click: BlockActions, action: ActionId) -> str:
        user, incident_id = click.user, click.actions[0].value
        incident = self.service.store.get(incident_id) if INCIDENT_ID.fullmatch(incident_id) else None
        if incident is None or not USER_ID.fullmatch(user.id):
            await self._tell(click, "rollbackbot does not know this incident; nothing was changed.")
            return "unknown_incident"
        policy = next((p for p in self.service.policies if p.name == incident.policy), None)
        approvers = policy.spec.approval.approvers if policy and policy.spec.approval else ()
        verb = _VERBS[action]
        if not await self.approvers.allows(user.id, approvers):
            shown = safe_name(user.name or user.username) or "unknown"
            self.service.record_event(incident.id, f"{verb} refused: Slack user {shown} {user.id} is not an approver")
            who = ", ".join(mention(a) for a in approvers) or "nobody (the policy names no approvers)"
            await self._tell(click, f"You are not allowed to {verb} this rollback; nothing was changed. Ask {who}.")
            return "not_allowed"
        if action is ActionId.end_shadow:
            verdict = self.service.end_shadow(incident.id, f"{await self._name(user)} {user.id}")
            if verdict.acted:
                return "acted"
            await self._tell(click, verdict.message[:1].upper() + verdict.message[1:])
            return "already_decided"
        if action is ActionId.hold_rollback and incident.state is IncidentState.awaiting_approval:
            # Holding changes nothing but the record: the weights stay, the incident keeps waiting.
            self.service.record_event(incident.id, f"hold: {await self._name(user)} {user.id} keeps the weights")
            return "acted"
        if incident.state is IncidentState.awaiting_approval:  # else spare the name lookup; the store still decides
            # Complete to 100 % now is an approval of the held canary rollback (rollbackbot.canary.canary_step).
            approves = action in (ActionId.approve_rollback, ActionId.complete_rollback)
            decide = self.service.approve if approves else self.service.reject
            verdict = decide(incident.id, f"{await self._name(user)} {user.id}")
            if verdict.acted:
                return "acted"
            incident = verdict.incident or incident
        await self._tell(click, late_notice(incident))
        return "already_decided"

    async def _name(self, user: SlackUser) -> str:
        try:
            profile_name = await self.api.display_name(user.id)
        except AdapterError:
            profile_name = None  # the payload's handle will do; the user id is what identifies them
        return safe_name(profile_name or user.name or user.username) or "unknown"

    async def _tell(self, click: BlockActions, text: str) -> None:
        if click.channel is None:
            return
        try:
            await self.api.post_ephemeral(click.channel.id, click.user.id, text)
        except AdapterError as exc:
            log.warning("ephemeral answer not delivered", extra={"error": str(exc)})


_VERBS = {
    ActionId.approve_rollback: "approve",
    ActionId.reject_rollback: "reject",
    ActionId.complete_rollback: "complete",
    ActionId.hold_rollback: "hold",
    ActionId.end_shadow: "end the shadow of",
}


def _signed(verifier: SignatureVerifier, body: bytes, headers: Any) -> bool:
    """Slack's v0 signature over ``body`` holds and is fresh; False for anything malformed."""
    timestamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    if not (timestamp.isdigit() and len(timestamp) <= 12 and signature.startswith("v0=")):
        return False
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return verifier.is_valid(text, timestamp, signature)


def late_notice(incident: Incident) -> str:
    """What the clicker of an already decided incident is told: who decided and when."""
    decision = decision_of(incident)
    if decision is None:
        return f"This incident is {incident.state.value}; there is no decision to make."
    if decision.verb in ("expired", "failed"):
        return f"This proposal {decision.verb} {date(decision.at)}; nothing was changed by your click."
    who = mention(decision.user_id) if decision.user_id else decision.by or "someone"
    return f"Already {decision.verb} by {who} {date(decision.at)}; your click changed nothing."


def build_bolt_app(signing_secret: SecretStr, api: SlackApi, actions: SlackActions) -> AsyncApp:
    """The Bolt app: signature verification, process-before-response, both buttons routed to ``actions``."""
    token = api.client.token

    async def authorize(enterprise_id: str | None, team_id: str | None, user_id: str | None) -> AuthorizeResult:
        # One workspace and one bot token: answering here spares an auth.test call per request.
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, user_id=user_id, bot_token=token)

    # Bolt logs a refused request's whole body at INFO: attacker-sized, attacker-written. We log one line instead.
    logging.getLogger("slack_bolt").setLevel(logging.WARNING)
    bolt = AsyncApp(
        signing_secret=signing_secret.get_secret_value(),
        client=AsyncWebClient(base_url=api.client.base_url),  # tokenless: authorize supplies the token
        authorize=authorize,
        process_before_response=True,
        logger=logging.getLogger("rollbackbot.slack.bolt"),
    )
    for action in ActionId:
        bolt.action(action.value)(actions.on_click)
    return bolt


def slack_router(bolt: AsyncApp, chat: SlackChat, actions: SlackActions) -> APIRouter:
    """``POST /slack/actions``, plus the start and stop of the Slack background work."""
    handler = AsyncSlackRequestHandler(bolt)
    verifier = SignatureVerifier(bolt._signing_secret)  # the secret Bolt was built with; Bolt checks again

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await chat.start()
        yield
        await actions.stop()
        await chat.stop()

    router = APIRouter(lifespan=lifespan)

    @router.post(
        "/slack/actions",
        responses={401: {"description": "Slack signature missing, wrong or older than 5 minutes"}, 413: {}},
    )
    async def slack_actions(request: Request) -> Response:
        """Slack buttons: approve_rollback, reject_rollback; a canary: complete_rollback, hold_rollback, end_shadow."""
        try:
            body = await read_capped(request, MAX_BODY_BYTES)
        except BodyRefused as exc:
            SLACK_ACTIONS.labels("unknown", "refused").inc()
            return Response(exc.detail, status_code=exc.status)
        # Verified before Bolt parses anything: Bolt parses first, and a malformed body would be a 500.
        if not _signed(verifier, body, request.headers):
            SLACK_ACTIONS.labels("unknown", "unauthorized").inc()
            log.warning("slack request refused: signature missing, wrong or stale")
            return Response("invalid request", status_code=401)
        try:
            response = await handler.handle(with_body(request, body))
        except Exception:  # signed by Slack yet unreadable: answer, never a traceback per request
            log.warning("slack request signed but unreadable; ignored")
            return Response("unreadable request", status_code=400)
        if response.status_code == 401:
            SLACK_ACTIONS.labels("unknown", "unauthorized").inc()
            log.warning("slack request refused: signature missing, wrong or stale")
        return response

    return router
