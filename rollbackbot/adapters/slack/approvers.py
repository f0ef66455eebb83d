"""Who may press Approve / Reject: the policy's ``approvers``, user ids and user groups.

User groups (``S…``) are resolved with ``usergroups.users.list`` and cached briefly, so a burst of
clicks costs one lookup and a membership change is seen within a minute. A failed lookup denies:
when in doubt, nobody gets to move production.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence

from rollbackbot.adapters.slack.api import SlackApi
from rollbackbot.clock import Clock
from rollbackbot.errors import AdapterError

log = logging.getLogger("rollbackbot.slack")
USERGROUP_CACHE_SECONDS = 60.0
_NAME_CHARS = re.compile(r"[^\w .'-]+")
MAX_NAME_LENGTH = 64


class ApproverCheck:
    """Whether a Slack user is one of a policy's approvers, directly or through a user group."""

    def __init__(self, api: SlackApi, clock: Clock, ttl_seconds: float = USERGROUP_CACHE_SECONDS) -> None:
        self.api = api
        self.clock = clock
        self.ttl_seconds = ttl_seconds
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    async def allows(self, user_id: str, approvers: Sequence[str]) -> bool:
        """True if ``user_id`` is listed or belongs to a listed user group."""
        if user_id in approvers:
            return True
        for group in (a for a in approvers if a.startswith("S")):
            if user_id in await self._members(group):
                return True
        return False

    async def _members(self, group: str) -> frozenset[str]:
        now = self.clock.monotonic()
        cached = self._groups.get(group)
        if cached and now - cached[0] < self.ttl_seconds:
            return cached[1]
        try:
            members = await self.api.usergroup_members(group)
        except AdapterError as exc:
            log.warning("user group lookup failed; denying", extra={"usergroup": group, "error": str(exc)})
            return frozenset()
        self._groups[group] = (now, members)
        return members


def safe_name(raw: str) -> str:
    """A display name fit for a commit trailer and an event: one line, plain characters, bounded."""
    printable = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in raw)
    return " ".join(_NAME_CHARS.sub(" ", printable).split())[:MAX_NAME_LENGTH].strip()
