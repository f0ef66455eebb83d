"""How long the forge client waits on a rate limit: as long as the forge asks, in GitHub's or GitLab's words."""

from __future__ import annotations

import time

import httpx
import pytest

from rollbackbot.adapters.forge.http import MAX_RATE_LIMIT_WAIT, ForgeHTTP


async def _waits(limited: httpx.Response) -> list[float]:
    """The sleeps between a rate-limited answer and the 200 that follows it."""
    answers = [limited, httpx.Response(200, json={"ok": True})]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    transport = httpx.MockTransport(lambda request: answers.pop(0))
    http = ForgeHTTP("http://forge", {}, forge="gitlab", transport=transport, sleep=sleep)
    try:
        assert (await http.call("GET", "projects/1/merge_requests")).status == 200
    finally:
        await http.aclose()
    return slept


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (429, {"Retry-After": "7"}),
        (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{reset}"}),  # GitHub primary limit
        (429, {"RateLimit-Remaining": "0", "RateLimit-Reset": "{reset}"}),  # GitLab, without Retry-After
    ],
)
async def test_the_client_waits_as_long_as_the_forge_asks(status: int, headers: dict[str, str]) -> None:
    reset = str(int(time.time()) + 8)
    limited = httpx.Response(status, headers={k: v.format(reset=reset) for k, v in headers.items()})
    [slept] = await _waits(limited)
    assert 6 <= slept <= 8


async def test_a_far_reset_is_capped() -> None:
    far = str(int(time.time()) + 3600)
    [slept] = await _waits(httpx.Response(429, headers={"RateLimit-Remaining": "0", "RateLimit-Reset": far}))
    assert slept == MAX_RATE_LIMIT_WAIT
