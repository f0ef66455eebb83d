"""Slack's reachability reaches the dependency board behind /status, without credentials."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from rollbackbot.adapters.slack.api import SlackApi
from rollbackbot.dependencies import DEPENDENCIES
from rollbackbot.errors import TransientError
from rollbackbot.testing.slack import FakeSlack, in_process_client
from rollbackbot.testing.slack import create_app as fake_slack_app
from tests.slack.conftest import TOKEN


async def test_slack_calls_feed_the_status_board(monkeypatch: pytest.MonkeyPatch) -> None:
    async def unreachable(*_args: Any, **_kwargs: Any) -> Any:
        raise aiohttp.ClientConnectionError("Cannot connect to host slack.example:443")

    DEPENDENCIES.clear()
    try:
        down = AsyncWebClient(token=TOKEN, base_url="https://slack.example/api/")
        monkeypatch.setattr(down, "api_call", unreachable)
        with pytest.raises(TransientError):
            await SlackApi(down, attempts=1).post_message("C0ML0NCALL", "hello")
        failed = DEPENDENCIES.snapshot()["slack"]
        assert not failed.ok and failed.last_error and "chat.postMessage" in failed.last_error
        assert TOKEN not in failed.last_error
        up = SlackApi(in_process_client(fake_slack_app(FakeSlack(token=TOKEN)), TOKEN))
        await up.post_message("C0ML0NCALL", "hi")
        assert DEPENDENCIES.snapshot()["slack"].ok
    finally:
        DEPENDENCIES.clear()
