"""Leases on incidents: which replica drives which incident, decided by the database alone.

A lease is (owner, expiry on the database's clock, fencing counter) on the incident's row. Claiming
locks the candidate rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite, the
one-replica store, takes its write lock first), so replicas looking at the same incidents at the
same moment each take different ones and never wait for each other. Every claim increments the
fence; a save names the owner and fence it holds and is refused once another replica has claimed.
Times come from the database (``clock_timestamp()`` / ``julianday('now')``): replicas' clocks may
disagree, the database's is the one all of them read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Float, bindparam, literal_column, select, update
from sqlalchemy.sql.elements import ColumnElement

from rollbackbot.adapters.store.schema import incidents
from rollbackbot.core.incidents import TERMINAL_STATES, IncidentState
from rollbackbot.ports import Lease

_c = incidents.c
# Unfinished, or rolled back with the verification window still open: work a replica may drive.
_DRIVEN = [s.value for s in IncidentState if s not in TERMINAL_STATES or s is IncidentState.rolled_back]


def db_now(dialect: str) -> ColumnElement[float]:
    """Now, in seconds since the epoch, on the database server's clock."""
    if dialect == "postgresql":
        return literal_column("extract(epoch from clock_timestamp())", Float)
    return literal_column("((julianday('now') - 2440587.5) * 86400.0)", Float)


class LeaseStatements:
    """The lease statements of one dialect, built once."""

    def __init__(self, dialect: str) -> None:
        now = db_now(dialect)
        self.sqlite = dialect == "sqlite"
        self.now = now
        # Free, expired, or already ours (a release lost to an outage): names are unique per process,
        # and a process drives an incident in one worker at a time.
        # ``dead``: owners the caller knows have exited (an earlier process on the same host).
        free = (
            _c.owner.is_(None)
            | (_c.lease_expires < now)
            | (_c.owner == bindparam("new_owner"))
            | _c.owner.in_(bindparam("dead", expanding=True))
        )
        self.candidates = (
            select(_c.id, _c.owner)
            .where(_c.id.in_(bindparam("ids", expanding=True)), free)
            .order_by(_c.id)  # a fixed order: two claimers never lock each other's rows crosswise
            .with_for_update(skip_locked=True)
        )
        self.take = (
            update(incidents)
            .where(_c.id.in_(bindparam("locked", expanding=True)), free)
            .values(
                owner=bindparam("new_owner"), fence=_c.fence + 1, lease_expires=now + bindparam("seconds", type_=Float)
            )
            .returning(_c.id, _c.fence)
        )
        self.renew = (
            update(incidents)
            .where(_c.owner == bindparam("holder"), _c.id.in_(bindparam("ids", expanding=True)))
            .values(lease_expires=now + bindparam("seconds", type_=Float))
            .returning(_c.id)
        )
        self.release = (
            update(incidents)
            .where(_c.id == bindparam("match_id"), _c.owner == bindparam("holder"), _c.fence == bindparam("held_fence"))
            .values(owner=None, lease_expires=None)
        )
        self.expired = select(_c.id).where(_c.owner.is_not(None), _c.lease_expires < now, _c.state.in_(_DRIVEN))
        self.owners = select(_c.id, _c.owner).where(_c.owner.is_not(None), _c.lease_expires >= now)
        self.holder = select(_c.owner, _c.fence, _c.lease_expires >= now).where(_c.id == bindparam("id"))

    def holds(self) -> ColumnElement[bool]:
        """The WHERE clause of a save under a lease: still ours, same fence, not expired."""
        return (
            (_c.owner == bindparam("lease_owner"))
            & (_c.fence == bindparam("lease_fence"))
            & (_c.lease_expires >= self.now)
        )

    def claim(
        self, conn: Connection, ids: Sequence[str], owner: str, seconds: float, dead: Sequence[str] = ()
    ) -> list[Lease]:
        """In the caller's transaction: lock the free rows among ``ids`` (skipping locked ones) and take them."""
        if self.sqlite:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock before reading: no upgrade deadlock
        previous: dict[str, Any] = dict(
            conn.execute(self.candidates, {"ids": list(ids), "new_owner": owner, "dead": list(dead)}).all()
        )
        if not previous:
            return []
        rows = conn.execute(
            self.take, {"locked": list(previous), "new_owner": owner, "seconds": seconds, "dead": list(dead)}
        ).all()
        return [Lease(row[0], owner, int(row[1]), previous.get(row[0])) for row in rows]
