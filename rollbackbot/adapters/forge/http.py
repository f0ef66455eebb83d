"""One exchange with a forge's REST API: token auth, rate limits, retries of transient failures.

- Transport errors and 5xx are ``TransientError``, retried with jittered backoff (tenacity).
- A rate limit (429, or 403 with ``X-RateLimit-Remaining: 0`` or ``Retry-After``) waits as long as the
  forge asks (``Retry-After``, else until ``X-RateLimit-Reset``), capped, then retries.
- 401 (bad token) is permanent. Other answers go back to the caller, which knows what 404, 405, 409 or
  422 mean for its call. The token is never logged or put in an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from rollbackbot.errors import PermanentError, TransientError
from rollbackbot.metrics import observe_call
from rollbackbot.redact import redact_urls

log = logging.getLogger("rollbackbot.forge")

MAX_RATE_LIMIT_WAIT = 60.0


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any


class RateLimited(TransientError):
    """The forge asked us to slow down; ``wait`` is how long it asked for."""

    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message)
        self.wait = wait


class ForgeHTTP:
    """JSON calls to one forge API base URL with a token header."""

    def __init__(
        self,
        base_url: str,
        auth_headers: Mapping[str, str],
        *,
        forge: str,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        attempts: int = 4,
        wait_max: float = 8.0,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.forge = forge
        self._attempts = max(1, attempts)
        self._wait_max = wait_max
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            transport=transport,
            timeout=timeout,
            headers={**auth_headers, "Accept": "application/json", "User-Agent": "rollbackbot"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None) -> Reply:
        """One request, retried while it fails transiently; the final answer (any non-5xx status)."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self._attempts),
            wait=self._wait,
            before_sleep=_log_retry,
            reraise=True,
            sleep=self._sleep or asyncio.sleep,
        )
        async for attempt in retrying:
            with attempt:
                return await self._once(method, path, params, body)
        raise AssertionError("tenacity stopped without an outcome")  # unreachable: reraise=True

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RateLimited):
            return min(error.wait, MAX_RATE_LIMIT_WAIT)
        return float(wait_exponential_jitter(max=self._wait_max)(state))

    async def _once(self, method: str, path: str, params: Mapping[str, str] | None, body: Any) -> Reply:
        endpoint = f"{method} {path.split('?', maxsplit=1)[0]}"
        started = time.monotonic()
        try:
            answer = await self._http.request(method, path.lstrip("/"), params=params, json=body)
        except httpx.HTTPError as exc:
            observe_call(self.forge, method.lower(), time.monotonic() - started, False, reachable=False)
            raise TransientError(f"{self.forge} {endpoint}: {type(exc).__name__}: {redact_urls(str(exc))}") from None
        status = answer.status_code
        observe_call(
            self.forge,
            method.lower(),
            time.monotonic() - started,
            status < 400,
            reachable=status < 500 and status != 401,
        )
        limited = _rate_limit_wait(answer)
        if limited is not None:
            raise RateLimited(f"{self.forge} {endpoint}: rate limited ({status})", limited)
        if status >= 500:
            raise TransientError(f"{self.forge} {endpoint}: HTTP {status}")
        if status == 401:
            raise PermanentError(f"{self.forge} {endpoint}: 401, the forge token was refused")
        return Reply(status, _json(answer))


def _rate_limit_wait(answer: httpx.Response) -> float | None:
    """Seconds to wait when the answer is a rate limit, else None."""
    if answer.status_code not in (403, 429):
        return None
    headers = answer.headers
    if "retry-after" in headers:
        try:
            return max(0.0, float(headers["retry-after"]))
        except ValueError:
            return 1.0
    if headers.get("x-ratelimit-remaining") == "0":
        reset = headers.get("x-ratelimit-reset", "")
        return max(0.0, float(reset) - time.time()) if reset.isdigit() else 1.0
    return 1.0 if answer.status_code == 429 else None


def _json(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return {"message": answer.text[:200]}


def message_of(reply: Reply) -> str:
    """The forge's error message, one line, bounded."""
    body = reply.body
    text = body.get("message", "") if isinstance(body, dict) else str(body)
    return " ".join(str(text).split())[:300]


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning("forge call failed, retrying", extra={"attempt": state.attempt_number, "error": str(error)})
