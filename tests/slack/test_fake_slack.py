"""The fake Slack answers in Slack's shapes, through the real slack-sdk client; its signatures verify."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from rollbackbot import procs
from rollbackbot.testing.slack import FakeSlack, block_actions, create_app, in_process_client, signed_request
from tests.slack.conftest import SECRET, TOKEN


def test_signed_request_verifies_with_slack_sdk_and_carries_the_payload() -> None:
    payload = block_actions("approve_rollback", "inc-0123456789abcdef", "U012ABC")
    body, headers = signed_request(SECRET, payload)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid_request(body, headers)
    assert not SignatureVerifier("other-secret").is_valid_request(body, headers)
    form = urllib.parse.parse_qs(body.decode())
    assert json.loads(form["payload"][0])["actions"][0]["value"] == "inc-0123456789abcdef"


async def test_answers_have_slack_shapes() -> None:
    fake = FakeSlack(token=TOKEN, usergroups={"S0SECOPS": ["U1", "U2"]}, users={"U012ABC": "Dana Ops"})
    client = in_process_client(create_app(fake), TOKEN)
    auth = await client.auth_test()
    assert auth["ok"] and {"url", "team", "user", "team_id", "user_id", "bot_id"} <= set(auth.data)
    posted = await client.chat_postMessage(channel="C0ML0NCALL", text="hi", blocks=[{"type": "divider"}])
    assert posted["channel"] == "C0ML0NCALL" and posted["message"]["ts"] == posted["ts"]
    reply = await client.chat_postMessage(channel="C0ML0NCALL", text="in thread", thread_ts=posted["ts"])
    assert reply["message"]["thread_ts"] == posted["ts"]
    updated = await client.chat_update(channel="C0ML0NCALL", ts=posted["ts"], text="changed", blocks=[])
    assert updated["ts"] == posted["ts"] and updated["message"]["text"] == "changed"
    ephemeral = await client.chat_postEphemeral(channel="C0ML0NCALL", user="U012ABC", text="psst")
    assert ephemeral["message_ts"]
    assert (await client.usergroups_users_list(usergroup="S0SECOPS"))["users"] == ["U1", "U2"]
    assert (await client.users_info(user="U012ABC"))["user"]["profile"]["display_name"] == "Dana Ops"
    for call, code in (
        (client.chat_update(channel="C0ML0NCALL", ts="1.2", text="x"), "message_not_found"),
        (client.usergroups_users_list(usergroup="S0NOPE"), "no_such_subteam"),
        (client.chat_postMessage(channel="#general", text="x"), "channel_not_found"),
    ):
        with pytest.raises(SlackApiError) as raised:
            await call
        assert raised.value.response["error"] == code
    assert [c["method"] for c in fake.calls][:2] == ["auth.test", "chat.postMessage"]
    assert TOKEN not in json.dumps(fake.calls)


async def test_rate_limit_and_wrong_token() -> None:
    fake = FakeSlack(token=TOKEN)
    fake.rate_limit("chat.postMessage", retry_after=7)
    client = in_process_client(create_app(fake), TOKEN)
    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="C0ML0NCALL", text="x")
    assert raised.value.response.status_code == 429 and raised.value.response.headers["Retry-After"] == "7"
    assert (await client.chat_postMessage(channel="C0ML0NCALL", text="x"))["ok"]
    with pytest.raises(SlackApiError) as wrong:
        await in_process_client(create_app(fake), "xoxb-someone-else").auth_test()
    assert wrong.value.response["error"] == "invalid_auth"


@pytest.mark.network
def test_runs_as_its_own_process() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rollbackbot.testing.slack", "--port", "0", "--usergroup", "S0SECOPS=U1,U2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("fake-slack listening on http://127.0.0.1:")
        base = line.rsplit(" ", 1)[-1]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        answer = httpx.post(f"{base}/api/usergroups.users.list", data={"usergroup": "S0SECOPS"}, headers=headers)
        assert answer.json() == {"ok": True, "users": ["U1", "U2"]}
        httpx.post(f"{base}/_fake/rate_limit", json={"method": "auth.test", "retry_after": 2})
        limited = httpx.post(f"{base}/api/auth.test", headers=headers)
        assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
        assert [c["method"] for c in httpx.get(f"{base}/_fake/calls").json()] == ["usergroups.users.list", "auth.test"]
    finally:
        procs.stop(proc)
