"""The ``Chat`` port on Slack: each incident gets one message in its policy's channel, and a thread.

Proposals, auto rollbacks, notify-mode alerts and suppressions a person must act on are posted;
decisions replace the proposal (buttons gone); progress and outcomes follow in the thread. Posting
is best effort and never raises into the service. A proposal that cannot be posted is retried in
the background until it is posted or no longer awaits a decision, and again after a restart.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import replace

from rollbackbot.adapters.slack.api import Posted, RateLimited, SlackApi, Sleep
from rollbackbot.adapters.slack.blocks import fallback_text, message_blocks, note_text
from rollbackbot.adapters.slack.metrics import SLACK_PROPOSAL_FAILURES, SLACK_PROPOSALS_PENDING, SLACK_UNDELIVERED
from rollbackbot.adapters.slack.store import SlackMessageStore
from rollbackbot.clock import Clock
from rollbackbot.core.incidents import Incident, IncidentState
from rollbackbot.core.messages import (
    IncidentMessage,
    MessageKind,
    Notices,
    incident_message,
    incident_page_url,
    notices_for,
    step_note,
)
from rollbackbot.core.policy import Policy
from rollbackbot.errors import AdapterError
from rollbackbot.ports import IncidentStore

log = logging.getLogger("rollbackbot.slack")
S = IncidentState
PROPOSAL_RETRY_SECONDS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0)  # the last one repeats


def approval_channel(policy: Policy | None) -> str | None:
    """The channel a policy's incidents are posted to (its ``approval.channel``)."""
    return policy.spec.approval.channel if policy and policy.spec.approval else None


class SlackChat:
    """Posts, updates and threads incident messages in Slack."""

    def __init__(
        self,
        api: SlackApi,
        messages: SlackMessageStore,
        *,
        policies: Mapping[str, Policy],
        store: IncidentStore,
        clock: Clock,
        retry_seconds: Sequence[float] = PROPOSAL_RETRY_SECONDS,
        sleep: Sleep = asyncio.sleep,
        public_url: str | None = None,
    ) -> None:
        self.api = api
        self.messages = messages
        self.policies = policies
        self.store = store
        self.clock = clock
        self.retry_seconds = tuple(retry_seconds) or (60.0,)
        self.sleep = sleep
        self.public_url = public_url  # every message links the incident's page under it (docs/ui.md)
        # One delivery at a time per incident, in the order the changes happened (asyncio locks are FIFO).
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._retries: dict[str, asyncio.Task[None]] = {}

    async def incident_changed(self, incident: Incident, previous: IncidentState | None) -> None:
        """Tell the channel what the change means; failures are logged and counted, never raised."""
        policy = self.policies.get(incident.policy)
        notices = notices_for(incident, previous, policy)
        channel = approval_channel(policy)
        if notices.empty:
            return
        if channel is None:
            log.debug("no Slack channel for this policy; not posted", extra={"incident_id": incident.id})
            return
        async with self._lock(incident.id):
            await self._deliver(incident, notices, channel, policy)

    async def incident_noted(self, incident: Incident, detail: str) -> None:
        """A canary step or shadow event as a thread reply, as it happens (``step_note`` decides which)."""
        policy = self.policies.get(incident.policy)
        note, channel = step_note(incident.id, detail), approval_channel(policy)
        if note is None or channel is None:
            return
        async with self._lock(incident.id):
            await self._deliver(incident, Notices(reply=note), channel, policy)

    async def start(self) -> None:
        """Post the proposals a previous run could not (restart-safe retries)."""
        for incident in self.store.unfinished():
            if incident.state is S.awaiting_approval and self.messages.find(incident.id) is None:
                self._retry_proposal(incident.id, first_delay=0.0)

    async def stop(self) -> None:
        """Cancel background retries (they resume at the next start)."""
        tasks = list(self._retries.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until no proposal retry is in flight (tests)."""
        while self._retries:
            await asyncio.gather(*self._retries.values(), return_exceptions=True)

    def _lock(self, incident_id: str) -> asyncio.Lock:
        lock = self._locks.get(incident_id)
        if lock is None:
            lock = self._locks[incident_id] = asyncio.Lock()
        return lock

    async def _deliver(self, incident: Incident, notices: Notices, channel: str, policy: Policy | None) -> None:
        parent = self.messages.find(incident.id)
        try:
            if notices.post and parent is None:
                parent = await self._post(incident.id, channel, notices.post)
            if notices.update:
                if parent is None:
                    parent = await self._post(incident.id, channel, notices.update)
                else:
                    update = replace(notices.update, page_url=self._page(incident.id))
                    await self.api.update_message(parent, fallback_text(update), message_blocks(update))
            if notices.reply:
                if parent is None:  # the first message was lost (Slack was down): start the thread now
                    first = MessageKind.failure if incident.state is S.failed else MessageKind.rollback
                    parent = await self._post(incident.id, channel, incident_message(incident, policy, first))
                reply = replace(notices.reply, page_url=self._page(incident.id))
                await self.api.post_message(
                    parent.channel, note_text(reply), thread_ts=parent.ts, broadcast=reply.broadcast
                )
        except AdapterError as exc:
            kind = notices.post.kind.value if notices.post else "update" if notices.update else "reply"
            log.error(
                "slack message not delivered", extra={"incident_id": incident.id, "kind": kind, "error": str(exc)}
            )
            if notices.post and notices.post.kind is MessageKind.proposal:
                SLACK_PROPOSAL_FAILURES.inc()
                self._retry_proposal(incident.id, first_delay=_delay_for(exc, self.retry_seconds[0]))
            else:
                SLACK_UNDELIVERED.labels(kind).inc()

    def _page(self, incident_id: str) -> str | None:
        return incident_page_url(self.public_url, incident_id)

    async def _post(self, incident_id: str, channel: str, message: IncidentMessage) -> Posted:
        message = replace(message, page_url=self._page(incident_id))
        posted = await self.api.post_message(channel, fallback_text(message), message_blocks(message))
        return self.messages.remember(incident_id, posted, message.kind.value, self.clock.now())

    def _retry_proposal(self, incident_id: str, first_delay: float) -> None:
        if incident_id in self._retries:
            return
        SLACK_PROPOSALS_PENDING.inc()
        task = asyncio.get_running_loop().create_task(self._keep_proposing(incident_id, first_delay))
        self._retries[incident_id] = task

        def done(_task: asyncio.Task[None]) -> None:
            self._retries.pop(incident_id, None)
            SLACK_PROPOSALS_PENDING.dec()

        task.add_done_callback(done)

    async def _keep_proposing(self, incident_id: str, delay: float) -> None:
        for attempt in itertools.count(1):
            await self.sleep(delay)
            incident = self.store.get(incident_id)
            if incident is None or incident.state is not S.awaiting_approval:
                return  # decided or expired meanwhile: that change posts its own message
            policy = self.policies.get(incident.policy)
            channel = approval_channel(policy)
            if channel is None or self.messages.find(incident_id) is not None:
                return
            next_delay = self.retry_seconds[min(attempt, len(self.retry_seconds) - 1)]
            try:
                async with self._lock(incident_id):
                    await self._post(incident_id, channel, incident_message(incident, policy, MessageKind.proposal))
                log.info("proposal posted after retrying", extra={"incident_id": incident_id, "attempt": attempt})
                return
            except AdapterError as exc:
                log.error(
                    "proposal still not posted; retrying",
                    extra={"incident_id": incident_id, "attempt": attempt, "error": str(exc)},
                )
                SLACK_PROPOSAL_FAILURES.inc()
                delay = _delay_for(exc, next_delay)


def _delay_for(exc: AdapterError, default: float) -> float:
    return max(default, exc.retry_after) if isinstance(exc, RateLimited) else default
