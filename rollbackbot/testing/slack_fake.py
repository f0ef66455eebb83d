"""The state behind the fake Slack Web API: a workspace, its messages, and every call made to it.

Answers follow Slack's documented shapes (``{"ok": true, ...}``, errors as ``{"ok": false,
"error": code}`` with HTTP 200, rate limits as HTTP 429 with ``Retry-After``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

TEAM_ID = "T0FAKE0001"
BOT_USER_ID = "U0ROLLBOT1"
BOT_ID = "B0ROLLBOT1"
CHANNEL = re.compile(r"[CGD][A-Z0-9]{2,}")
FIRST_TS = 1_764_072_000  # deterministic message timestamps, one microsecond-ish step apart


@dataclass
class Answer:
    """One HTTP answer of the fake."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeSlack:
    """A fake workspace. ``token=None`` accepts any ``xoxb-`` token."""

    token: str | None = None
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # user id -> real name
    calls: list[dict[str, Any]] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # "channel/ts" -> message
    rate_limits: dict[str, list[float]] = field(default_factory=dict)  # method -> Retry-After of next 429s
    down: bool = False  # every API call answers 503
    unreachable: bool = False  # the in-process client fails to connect (a stopped Slack)
    _sequence: int = 0

    def rate_limit(self, method: str, times: int = 1, retry_after: float = 1.0) -> None:
        """Answer the next ``times`` calls of ``method`` with 429 and ``Retry-After``."""
        self.rate_limits.setdefault(method, []).extend([retry_after] * times)

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        """The recorded calls of one method, oldest first."""
        return [call for call in self.calls if call["method"] == method]

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The replies under a message, oldest first."""
        return [m for m in self.messages.values() if m["channel"] == channel and m.get("thread_ts") == ts]

    def top_level(self) -> list[dict[str, Any]]:
        """Messages that are not thread replies (or were broadcast), oldest first."""
        return [m for m in self.messages.values() if "thread_ts" not in m]

    def handle(self, method: str, args: dict[str, Any], token: str | None) -> Answer:
        """Answer one Web API call and record it (without the token)."""
        answer = self._answer(method, args, token)
        self.calls.append({"method": method, "args": args, "status": answer.status, "ok": answer.body.get("ok")})
        return answer

    def _answer(self, method: str, args: dict[str, Any], token: str | None) -> Answer:
        if self.down:
            return Answer(503, {"ok": False, "error": "service_unavailable"})
        pending = self.rate_limits.get(method)
        if pending:
            retry_after = pending.pop(0)
            return Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": f"{retry_after:g}"})
        if not token:
            return _error("not_authed")
        if (self.token is not None and token != self.token) or not token.startswith("xoxb-"):
            return _error("invalid_auth")
        handler = _METHODS.get(method)
        if handler is None:
            return Answer(404, {"ok": False, "error": "unknown_method", "req_method": method})
        return handler(self, args)

    def _next_ts(self) -> str:
        self._sequence += 1
        return f"{FIRST_TS + self._sequence // 1000}.{self._sequence % 1000 * 100:06d}"

    def _bot_message(self, args: dict[str, Any], ts: str) -> dict[str, Any]:
        message = {
            "type": "message",
            "subtype": "bot_message",
            "text": args.get("text", ""),
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "team": TEAM_ID,
            "ts": ts,
            "blocks": args.get("blocks") or [],
        }
        if args.get("thread_ts"):
            message["thread_ts"] = str(args["thread_ts"])
        return message


def _error(code: str) -> Answer:
    return Answer(200, {"ok": False, "error": code})


def _auth_test(fake: FakeSlack, _args: dict[str, Any]) -> Answer:
    body: dict[str, Any] = {
        "url": "https://rollbackbot-fake.slack.com/",
        "team": "Fake Workspace",
        "user": "rollbackbot",
    }
    body |= {"team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False}
    return Answer(200, {"ok": True, **body})


def _post_message(fake: FakeSlack, args: dict[str, Any]) -> Answer:
    channel = str(args.get("channel", ""))
    if not CHANNEL.fullmatch(channel):
        return _error("channel_not_found")
    if not args.get("text") and not args.get("blocks"):
        return _error("no_text")
    ts = fake._next_ts()
    message = fake._bot_message(args, ts)
    fake.messages[f"{channel}/{ts}"] = {**message, "channel": channel}
    if args.get("thread_ts") and args.get("reply_broadcast"):
        fake.messages[f"{channel}/{ts}"]["subtype"] = "thread_broadcast"
    return Answer(200, {"ok": True, "channel": channel, "ts": ts, "message": message})


def _update(fake: FakeSlack, args: dict[str, Any]) -> Answer:
    channel, ts = str(args.get("channel", "")), str(args.get("ts", ""))
    stored = fake.messages.get(f"{channel}/{ts}")
    if stored is None:
        return _error("message_not_found" if CHANNEL.fullmatch(channel) else "channel_not_found")
    stored.update({"text": args.get("text", stored["text"]), "blocks": args.get("blocks", stored["blocks"])})
    stored["edited"] = {"user": BOT_USER_ID, "ts": fake._next_ts()}
    message = {k: v for k, v in stored.items() if k != "channel"}
    return Answer(200, {"ok": True, "channel": channel, "ts": ts, "text": stored["text"], "message": message})


def _post_ephemeral(fake: FakeSlack, args: dict[str, Any]) -> Answer:
    if not CHANNEL.fullmatch(str(args.get("channel", ""))):
        return _error("channel_not_found")
    if not args.get("user"):
        return _error("user_not_found")
    return Answer(200, {"ok": True, "message_ts": fake._next_ts()})


def _usergroup_users(fake: FakeSlack, args: dict[str, Any]) -> Answer:
    group = str(args.get("usergroup", ""))
    if group not in fake.usergroups:
        return _error("no_such_subteam")
    return Answer(200, {"ok": True, "users": list(fake.usergroups[group])})


def _users_info(fake: FakeSlack, args: dict[str, Any]) -> Answer:
    user = str(args.get("user", ""))
    if user not in fake.users:
        return _error("user_not_found")
    name = fake.users[user]
    profile: dict[str, Any] = {"real_name": name, "display_name": name, "team": TEAM_ID}
    handle = name.lower().replace(" ", ".")
    body = {"id": user, "team_id": TEAM_ID, "name": handle, "real_name": name, "deleted": False, "profile": profile}
    return Answer(200, {"ok": True, "user": body})


_METHODS = {
    "auth.test": _auth_test,
    "chat.postMessage": _post_message,
    "chat.update": _update,
    "chat.postEphemeral": _post_ephemeral,
    "usergroups.users.list": _usergroup_users,
    "users.info": _users_info,
}
