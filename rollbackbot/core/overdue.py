"""When a non-terminal incident is stuck: past its deadline (alert RollbackbotIncidentStuck).

An incident moves on by itself in every non-terminal state but one, so its deadline is the moment
it entered its current state (or the end of the wait it was told to do), plus what that state may
legitimately take, plus a grace period:

- ``received``: the end of its debounce wait (``not_before``) when it has one, else entering it;
- ``awaiting_approval``: the approval deadline (``not_before``), after which the bot itself decides;
- ``syncing``: entering it plus the policy's ``sync.timeout``, after which it fails by itself;
- ``approved``, ``rolling_back``: entering it.

The grace (``ROLLBACKBOT_INCIDENT_STUCK_GRACE_SECONDS``) covers the capture budget, retries and
backoff of a healthy run; an incident still non-terminal after it is stuck, whatever the cause.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from rollbackbot.core.incidents import Incident, IncidentState

S = IncidentState


def entered_state_at(incident: Incident) -> datetime:
    """When the incident entered its current state (events that do not change it do not count)."""
    entered = incident.created_at
    for event in reversed(incident.events):
        if event.state is not incident.state:
            break
        entered = event.at
    return entered


def deadline(incident: Incident, *, sync_timeout: timedelta, grace: timedelta) -> datetime | None:
    """The latest time the incident should have left its state; None when it is terminal."""
    if incident.state.terminal:
        return None
    due = entered_state_at(incident)
    if incident.state in (S.received, S.awaiting_approval) and incident.not_before is not None:
        due = max(due, incident.not_before)
    if incident.state is S.syncing:
        due += sync_timeout
    return due + grace


def overdue_by_state(
    incidents: Iterable[Incident],
    sync_timeouts: Mapping[str, timedelta],
    *,
    now: datetime,
    grace: timedelta,
    default_sync_timeout: timedelta = timedelta(minutes=5),
) -> dict[str, int]:
    """How many of ``incidents`` are past their deadline, by state (policy name → its sync timeout)."""
    counts: dict[str, int] = {}
    for incident in incidents:
        sync_timeout = sync_timeouts.get(incident.policy, default_sync_timeout)
        due = deadline(incident, sync_timeout=sync_timeout, grace=grace)
        if due is not None and due < now:
            counts[incident.state.value] = counts.get(incident.state.value, 0) + 1
    return counts
