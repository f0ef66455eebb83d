"""This replica's leases: which incidents it drives, kept alive by a heartbeat.

Any replica accepts alerts and clicks; only the holder of an incident's lease runs its steps
(``Service.run_incident``). A lease is claimed before the first step, released when the incident
finishes or waits on a timer or a human, and renewed every third of its length while held. A lease
the heartbeat could not renew is lost: the worker's next save is refused by the fence, and the
incident is another replica's. Times are the database's (``adapters/store/leases.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from datetime import datetime

from rollbackbot.errors import describe
from rollbackbot.metrics import LEASE_RENEWALS, LEASE_TAKEOVERS, LEASES_LOST
from rollbackbot.ports import IncidentStore, Lease

log = logging.getLogger("rollbackbot.leasing")

DEFAULT_LEASE_SECONDS = 30.0


def replica_name() -> str:
    """A name unique to this process: host (the pod name in Kubernetes), pid and a random suffix."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


def exited_here(owner: str, me: str) -> bool:
    """Whether ``owner`` names an earlier process on this host that is gone (a crash, then a restart).

    Its leases need not be waited out. A pid equal to ours (a restarted container is often pid 1
    again) with another suffix is an earlier incarnation too.
    """
    host, _, rest = owner.partition("/")
    pid_text, _, suffix = rest.partition("/")
    if host != socket.gethostname() or not pid_text.isdigit() or not suffix or owner == me:
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


class Leases:
    """The leases this replica holds, and the heartbeat that renews them."""

    def __init__(self, store: IncidentStore, owner: str | None = None, seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.store = store
        self.owner = owner or replica_name()
        self.seconds = seconds
        self.held: dict[str, Lease] = {}
        self.dead: set[str] = set()  # earlier processes on this host, found at start (forget_dead_here)
        self._heartbeat: asyncio.Task[None] | None = None

    def claim(self, incident_id: str, at: datetime) -> Lease | None:
        """Take the incident's lease unless another replica holds a live one; None then."""
        if (held := self.held.get(incident_id)) is not None:
            return held
        taken = self.store.claim([incident_id], self.owner, self.seconds, sorted(self.dead))
        if not taken:
            return None
        lease = taken[0]
        self.held[incident_id] = lease
        if lease.previous_owner not in (None, self.owner, *self.dead):
            LEASE_TAKEOVERS.inc()
            detail = f"taken over by replica {self.owner} (lease of {lease.previous_owner} expired)"
            log.warning(detail, extra={"incident_id": incident_id, "fence": lease.fence})
            self.store.append_event(incident_id, at, detail)
        self._ensure_heartbeat()
        return lease

    def find_dead_here(self) -> set[str]:
        """At start: owners of live leases that were earlier processes on this host (their leases are free)."""
        self.dead = {owner for owner in set(self.store.owners().values()) if exited_here(owner, self.owner)}
        return self.dead

    def release(self, incident_id: str) -> None:
        """Give the lease back; an unreachable store lets it expire instead."""
        lease = self.held.pop(incident_id, None)
        if lease is None:
            return
        try:
            self.store.release(lease)
        except Exception as exc:
            log.warning(
                "could not release a lease; it expires", extra={"incident_id": incident_id, "error": describe(exc)}
            )

    def lost(self, incident_id: str) -> None:
        """The store refused a write under this lease: forget it."""
        if self.held.pop(incident_id, None) is not None:
            LEASES_LOST.inc()

    def renew(self) -> None:
        """One heartbeat: extend every lease held; forget the ones another replica took."""
        if not self.held:
            return
        ids = list(self.held)
        still = self.store.renew(self.owner, ids, self.seconds)
        LEASE_RENEWALS.inc(len(still))
        for incident_id in ids:
            if incident_id not in still and self.held.pop(incident_id, None) is not None:
                LEASES_LOST.inc()
                log.warning("lease lost: another replica drives the incident now", extra={"incident_id": incident_id})

    def _ensure_heartbeat(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # claimed outside the event loop (a tool, a test): whoever drives it renews (renew())
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = loop.create_task(self._beat())

    async def _beat(self) -> None:
        while self.held:
            await asyncio.sleep(self.seconds / 3)
            try:
                self.renew()
            except Exception as exc:  # the store is down: the leases may expire; the fence keeps writes safe
                log.warning("lease heartbeat failed", extra={"error": describe(exc)})

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
