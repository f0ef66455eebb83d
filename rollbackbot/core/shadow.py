"""How long a shadow lives: purely computational, no side effects, no clock reads.

The incident's events are the record: ``shadow on: …`` when the mirror went in (the canary step
machine writes it with the commit), ``shadow off: …`` when one commit took the mirror and the
sandbox out, ``shadow end requested by …`` when a person asked for that (Slack *End shadow now*),
and ``shadow not removed: …`` when a removal attempt failed (the next one waits ``RETRY_AFTER``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from rollbackbot.core.incidents import Event

SHADOW_ON = "shadow on:"
SHADOW_NOT_STARTED = "shadow not started:"
SHADOW_OFF = "shadow off:"
END_REQUESTED = "shadow end requested by"
NOT_REMOVED = "shadow not removed:"
RETRY_AFTER = timedelta(minutes=5)


def shadow_on_since(events: Sequence[Event]) -> datetime | None:
    """When the mirror went in, unless a removal is recorded after it (then None)."""
    since: datetime | None = None
    for event in events:
        if event.detail.startswith(SHADOW_ON):
            since = event.at
        elif event.detail.startswith(SHADOW_OFF):
            since = None
    return since


def shadow_off_due(events: Sequence[Event], ttl: timedelta) -> datetime | None:
    """When the live shadow must be removed: at ``ttl``, or at once when a person asked; None if none is live.

    After a failed removal the next attempt waits ``RETRY_AFTER``, so a Git or Argo CD outage is not
    hammered; the removal is never given up.
    """
    since = shadow_on_since(events)
    if since is None:
        return None
    due = since + ttl
    for event in events:
        if event.at < since:
            continue
        if event.detail.startswith(END_REQUESTED):
            due = min(due, event.at)
        elif event.detail.startswith(NOT_REMOVED):
            due = max(due, event.at + RETRY_AFTER)
    return due
