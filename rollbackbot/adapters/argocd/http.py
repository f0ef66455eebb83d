"""One exchange with the Argo CD API server: auth, exact headers, error mapping, retries, logging.

Wire facts (docs/argocd-wire.md §1, §7.4): success is always 200 + JSON; errors are JSON
``{"error","code","message"}`` except 404/405/415 from the gateway, which are text/plain; every
non-GET request must carry exactly ``Content-Type: application/json`` or the server answers 415.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from rollbackbot.errors import PermanentError, TransientError
from rollbackbot.metrics import observe_call
from rollbackbot.redact import redact_urls

log = logging.getLogger("rollbackbot.argocd")

T = TypeVar("T")
Params = Mapping[str, str]

OPERATION_IN_PROGRESS = "another operation is already in progress"
_FAILED_PRECONDITION = 9  # gRPC code Argo CD uses for the sync conflict (HTTP 400, not 412)
_MAX_MESSAGE = 500


class OperationInProgress(PermanentError):
    """400 code 9 "another operation is already in progress": Argo CD never queues; wait it out."""


class ArgoHTTP:
    """Authenticated JSON calls to Argo CD; TransientError is retried, everything else is not."""

    def __init__(
        self,
        base_url: str,
        token: SecretStr,
        *,
        transport: httpx.AsyncBaseTransport | None,
        request_timeout: float,
        retry_attempts: int,
        retry_wait_max: float,
        sleep: Callable[[float], Awaitable[None]],
        monotonic: Callable[[], float],
    ) -> None:
        self._token = token
        self._attempts = max(1, retry_attempts)
        self._wait_max = retry_wait_max
        self._sleep = sleep
        self._monotonic = monotonic
        self._request_timeout = request_timeout
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            timeout=request_timeout,
            headers={
                "Authorization": f"Bearer {token.get_secret_value()}",
                "Accept": "application/json",
                "User-Agent": "rollbackbot",
            },
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def get_json(
        self, path: str, params: Params, *, timeout: float | None = None, attempts: int | None = None
    ) -> dict[str, Any]:
        """GET a JSON object, retrying transient failures up to ``attempts`` times."""
        return await self._retrying(lambda: self._exchange("GET", path, params, None, timeout), attempts)

    async def post_json(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a JSON body and read the JSON object answered."""
        return await self._retrying(lambda: self._exchange("POST", path, {}, body, None), None)

    async def get_stream(
        self, path: str, params: Params, consume: Callable[[AsyncIterator[str], str], Awaitable[T]]
    ) -> T:
        """GET a streaming endpoint and hand its lines to ``consume``; the whole read is retried."""
        return await self._retrying(lambda: self._stream(path, params, consume), None)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]], attempts: int | None) -> T:
        limit = attempts or self._attempts
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(limit),
            wait=wait_exponential_jitter(max=self._wait_max),  # 1s, 2s, 4s… plus up to 1s jitter
            sleep=self._sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for try_once in retrying:
                with try_once:
                    return await attempt()
        except TransientError as exc:
            if limit == 1:
                raise
            raise TransientError(f"{exc} (gave up after {limit} attempts)") from exc
        raise AssertionError("tenacity stopped without an outcome")  # unreachable: reraise=True

    async def _exchange(
        self, method: str, path: str, params: Params, body: Mapping[str, Any] | None, timeout: float | None
    ) -> dict[str, Any]:
        endpoint = f"{method} {path}"
        headers: dict[str, str] = {}
        content: bytes | None = None
        if method != "GET":
            # Built by hand so the header is exactly "application/json": Argo CD compares the whole
            # value, and "application/json; charset=utf-8" is answered with 415.
            headers["Content-Type"] = "application/json"
            content = json.dumps(body or {}).encode()
        started = self._monotonic()
        # Errors below are raised "from None": their text names the cause, and the original httpx
        # exception is not redacted (nor is the request it carries, headers included).
        limit = timeout if timeout is not None else self._request_timeout
        try:
            # httpx bounds each connect/read; wait_for bounds the whole exchange, so a server that
            # trickles bytes (or an in-process transport, which has no socket timeouts) cannot hang us.
            response = await asyncio.wait_for(
                self._http.request(method, path, params=params, content=content, headers=headers, timeout=limit),
                timeout=limit,
            )
        except TimeoutError:
            self._log_call(endpoint, "timeout", started)
            raise TransientError(f"Argo CD {endpoint} timed out after {limit:g}s") from None
        except httpx.TimeoutException as exc:
            self._log_call(endpoint, "timeout", started)
            raise TransientError(f"Argo CD {endpoint} timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            self._log_call(endpoint, "transport error", started)
            raise TransientError(f"Argo CD {endpoint} failed: {self._redact(_describe(exc))}") from None
        self._log_call(endpoint, response.status_code, started)
        self._raise_for_status(endpoint, response)
        return self._json_object(endpoint, response)

    async def _stream(self, path: str, params: Params, consume: Callable[[AsyncIterator[str], str], Awaitable[T]]) -> T:
        endpoint = f"GET {path}"
        started = self._monotonic()
        try:
            async with self._http.stream("GET", path, params=params) as response:
                self._log_call(endpoint, response.status_code, started)
                if response.status_code >= httpx.codes.BAD_REQUEST:
                    await response.aread()
                    self._raise_for_status(endpoint, response)
                return await consume(response.aiter_lines(), endpoint)
        except httpx.TimeoutException as exc:
            raise TransientError(f"Argo CD {endpoint} timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransientError(f"Argo CD {endpoint} failed: {self._redact(_describe(exc))}") from None

    def _raise_for_status(self, endpoint: str, response: httpx.Response) -> None:
        status = response.status_code
        if status < httpx.codes.BAD_REQUEST:
            return
        message, code = self._argo_error(response)
        if status >= httpx.codes.INTERNAL_SERVER_ERROR or status in (
            httpx.codes.TOO_MANY_REQUESTS,
            httpx.codes.REQUEST_TIMEOUT,  # gRPC Canceled; proxies use it for slow upstreams too
        ):
            raise TransientError(f"Argo CD {endpoint} failed: HTTP {status}: {message}")
        if status == httpx.codes.UNAUTHORIZED:
            raise ArgoRefused(f"Argo CD rejected the token (401): {message} [{endpoint}]", status)
        # Matched on the text, and on the code when one is given: the only 400 that means "wait".
        busy = code in (_FAILED_PRECONDITION, None) and OPERATION_IN_PROGRESS in message.lower()
        if status == httpx.codes.BAD_REQUEST and busy:
            raise OperationInProgress(f"Argo CD {endpoint}: {message}")
        raise ArgoRefused(f"Argo CD {endpoint} failed: HTTP {status}: {message}", status)

    def _argo_error(self, response: httpx.Response) -> tuple[str, int | None]:
        """Argo's ``message`` and gRPC ``code`` from a JSON error body, else the text body."""
        text = response.text.strip()
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if isinstance(body, dict):
            message = body.get("message") or body.get("error")
            code = body.get("code")
            if isinstance(message, str) and message:
                return self._clip(message), code if isinstance(code, int) else None
        return self._clip(text or response.reason_phrase or "no body"), None

    def _json_object(self, endpoint: str, response: httpx.Response) -> dict[str, Any]:
        # A 200 that is not a JSON object is what a proxy's or SSO login page looks like; it may pass.
        try:
            body = response.json()
        except ValueError:
            # from None: the decoder's error text would quote the body a second time.
            snippet = self._clip(response.text.strip()[:120])
            raise TransientError(
                f"Argo CD {endpoint} answered {response.status_code} without JSON: {snippet!r}"
            ) from None
        if not isinstance(body, dict):
            raise TransientError(f"Argo CD {endpoint} answered a JSON {type(body).__name__}, not an object")
        return body

    def stream_error(self, endpoint: str, error: Any) -> TransientError | PermanentError:
        """Map a mid-stream ``{"error":{grpc_code,http_code,message}}`` object to our error tree."""
        fields = error if isinstance(error, dict) else {}
        http_code = fields.get("http_code")
        message = self._clip(str(fields.get("message") or error))
        text = f"Argo CD {endpoint} stream failed: HTTP {http_code}: {message}"
        if not isinstance(http_code, int) or http_code >= httpx.codes.INTERNAL_SERVER_ERROR or http_code == 429:
            return TransientError(text)
        return PermanentError(text)

    def _clip(self, text: str) -> str:
        text = self._redact(text)
        return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"

    def _redact(self, text: str) -> str:
        # Argo CD does not echo tokens, but a proxy or a future server might; never let one through.
        secret = self._token.get_secret_value()
        return redact_urls(text.replace(secret, "***") if secret else text)

    def _log_call(self, endpoint: str, outcome: int | str, started: float) -> None:
        elapsed = self._monotonic() - started
        ok = isinstance(outcome, int) and outcome < 400
        # Reached: any answer but a 5xx (a proxy's 502/503 too) or refused credentials.
        reachable = isinstance(outcome, int) and outcome < 500 and outcome not in (401, 403)
        observe_call("argocd", endpoint.split(" ", 1)[0] + " " + _route(endpoint), elapsed, ok, reachable=reachable)
        log.debug("argocd %s -> %s in %.0f ms", endpoint, outcome, elapsed * 1000)


class ArgoRefused(PermanentError):
    """A 4xx answer that retrying will not change; ``status`` tells a 401/403 from a 404."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _route(endpoint: str) -> str:
    """The endpoint without the app name, so metric label values stay bounded."""
    parts = endpoint.split(" ", 1)[-1].split("/")
    if len(parts) > 4 and parts[3] == "applications":
        parts[4] = "{name}"
    if len(parts) > 5 and parts[3:5] == ["account", "can-i"]:
        parts[5:] = ["{resource}", "{action}", "{subresource}"]
    return "/".join(parts)


def _describe(exc: httpx.TransportError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.info("argocd retry %d after %s; waiting %.1fs", state.attempt_number, error, wait)
