"""The bot token and the signing secret never appear in a log line, an error or an API answer."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rollbackbot.adapters.slack.api import SlackApi
from rollbackbot.errors import AdapterError
from rollbackbot.settings import load_settings
from rollbackbot.testing.slack import FakeSlack, create_app, in_process_client
from tests.slack.conftest import SECRET, STRANGER, SUPPORT, TOKEN, WEBHOOK_TOKEN, make_harness


async def test_a_full_slack_run_leaks_neither_token_nor_signing_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, including slack-sdk's and Bolt's debug lines
    harness, _ = await make_harness(tmp_path)
    await harness.service.start()
    seen: list[str] = []
    try:
        harness.fake.rate_limit("chat.postMessage", retry_after=1)
        incident_id = harness.fire(SUPPORT)
        await harness.settle()
        seen.append((await harness.click("approve_rollback", incident_id, secret="wrong-secret-0123456789")).text)
        seen.append((await harness.click("approve_rollback", incident_id, timestamp=1)).text)
        seen.append((await harness.click("approve_rollback", incident_id, STRANGER)).text)
        seen.append((await harness.click("approve_rollback", incident_id)).text)
        await harness.settle()
        auth = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        for path in ("/api/incidents", f"/api/incidents/{incident_id}", "/status", "/metrics", "/openapi.json"):
            seen.append((await harness.http.get(path, headers=auth)).text)
    finally:
        await harness.service.stop()
    seen.append(repr(harness.fake.calls))
    seen.append(caplog.text)
    seen.extend(str(record.__dict__) for record in caplog.records)
    everything = "\n".join(seen)
    assert "approved" in everything and "/slack/actions" in everything  # the run really happened
    for secret in (TOKEN, SECRET, TOKEN.removeprefix("xoxb-"), SECRET[:-1]):
        assert secret not in everything


async def test_slack_errors_name_the_call_and_slack_code_not_the_token() -> None:
    api = SlackApi(in_process_client(create_app(FakeSlack(token="xoxb-the-other-token")), TOKEN))
    with pytest.raises(AdapterError) as raised:
        await api.post_message("C0ML0NCALL", "hello")
    assert str(raised.value) == "slack chat.postMessage: invalid_auth"
    assert TOKEN not in repr(raised.value)


def test_settings_never_show_the_slack_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(
        git_url="file:///repo",
        git_allowed_signers="/signers",
        argocd_url="http://argocd",
        argocd_token="argocd-token",
        webhook_token="webhook-token-0123456789",
        slack_bot_token=TOKEN,
        slack_signing_secret=SECRET,
    )
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert TOKEN not in shown and SECRET not in shown
