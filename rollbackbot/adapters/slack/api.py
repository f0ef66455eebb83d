"""The Slack Web API calls rollbackbot makes, best effort: Retry-After honoured on 429, bounded retries.

One narrow class over slack-sdk's ``AsyncWebClient`` so the chat and the button handlers share the
retry rules; sleeping is injected so tests never wait. Errors say which call failed and Slack's
error code, never the token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from rollbackbot.adapters.slack.metrics import SLACK_CALLS
from rollbackbot.dependencies import DEPENDENCIES
from rollbackbot.errors import PermanentError, TransientError

log = logging.getLogger("rollbackbot.slack")
Sleep = Callable[[float], Awaitable[None]]

# Slack's own words for "try again later" (https://api.slack.com/web#errors).
TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})


class RateLimited(TransientError):
    """Slack asked us to wait longer than we are willing to inline; ``retry_after`` says how long."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Posted:
    """Where a message landed: what chat.update and thread replies need."""

    channel: str
    ts: str


class SlackApi:
    """chat.postMessage, chat.update, chat.postEphemeral, usergroups.users.list, users.info."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        attempts: int = 4,
        backoff_seconds: float = 0.5,
        max_retry_after: float = 30.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.client = client
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.max_retry_after = max_retry_after
        self.sleep = sleep

    async def post_message(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        *,
        thread_ts: str | None = None,
        broadcast: bool = False,
    ) -> Posted:
        """Post to a channel, or into a thread when ``thread_ts`` is given."""
        body: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False, "unfurl_media": False}
        if blocks is not None:
            body["blocks"] = blocks
        if thread_ts:
            body |= {"thread_ts": thread_ts, "reply_broadcast": broadcast}
        data = await self._call("chat.postMessage", json=body)
        return Posted(str(data["channel"]), str(data["ts"]))

    async def update_message(self, posted: Posted, text: str, blocks: list[dict[str, Any]]) -> None:
        """Replace a message's text and blocks (buttons go when the blocks have none)."""
        await self._call(
            "chat.update", json={"channel": posted.channel, "ts": posted.ts, "text": text, "blocks": blocks}
        )

    async def post_ephemeral(self, channel: str, user: str, text: str) -> None:
        """A message only ``user`` sees."""
        await self._call("chat.postEphemeral", json={"channel": channel, "user": user, "text": text})

    async def usergroup_members(self, group_id: str) -> frozenset[str]:
        """User ids in a user group."""
        data = await self._call("usergroups.users.list", params={"usergroup": group_id}, http_verb="GET")
        return frozenset(str(user) for user in data.get("users", []))

    async def display_name(self, user_id: str) -> str | None:
        """The name people see for a user (display name, else real name), or None."""
        data = await self._call("users.info", params={"user": user_id}, http_verb="GET")
        user = data.get("user") or {}
        profile = user.get("profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or user.get("real_name") or user.get("name")
        return str(name) if name else None

    async def _call(
        self,
        method: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        http_verb: str = "POST",
    ) -> dict[str, Any]:
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self.client.api_call(
                    method,
                    http_verb=http_verb,
                    json=dict(json) if json is not None else None,
                    params=dict(params) if params is not None else None,
                )
            except SlackApiError as exc:
                delay = self._delay_after_error(method, exc, attempt)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                SLACK_CALLS.labels(method, "transient").inc()
                DEPENDENCIES.failed("slack", f"slack {method}: {type(exc).__name__}")
                if attempt == self.attempts:
                    raise TransientError(f"slack {method}: {type(exc).__name__}") from None
                delay = self.backoff_seconds * float(2 ** (attempt - 1))
                log.warning("slack unreachable, retrying", extra={"method": method, "attempt": attempt})
            else:
                SLACK_CALLS.labels(method, "ok").inc()
                DEPENDENCIES.succeeded("slack")
                data = response.data
                return dict(data) if isinstance(data, dict) else {}
            await self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - every last attempt returns or raises

    def _delay_after_error(self, method: str, exc: SlackApiError, attempt: int) -> float:
        response = exc.response
        status = int(getattr(response, "status_code", 0) or 0)
        data = response.data if isinstance(response.data, dict) else {}
        error = str(data.get("error") or f"HTTP {status}")
        if status == 429 or error == "ratelimited":
            SLACK_CALLS.labels(method, "rate_limited").inc()
            retry_after = _retry_after(response.headers)
            if attempt == self.attempts or retry_after > self.max_retry_after:
                raise RateLimited(f"slack {method}: rate limited, retry after {retry_after:g}s", retry_after)
            log.warning("slack rate limit, honouring Retry-After", extra={"method": method, "retry_after": retry_after})
            return retry_after
        if status >= 500 or error in TRANSIENT_ERRORS:
            SLACK_CALLS.labels(method, "transient").inc()
            if attempt == self.attempts:
                raise TransientError(f"slack {method}: {error}")
            log.warning("slack error, retrying", extra={"method": method, "error": error, "attempt": attempt})
            return self.backoff_seconds * float(2 ** (attempt - 1))
        SLACK_CALLS.labels(method, "error").inc()
        raise PermanentError(f"slack {method}: {error}")


def _retry_after(headers: Any) -> float:
    try:
        return max(0.0, float(str(headers.get("Retry-After", 1))))
    except (TypeError, ValueError, AttributeError):
        return 1.0
