"""The inbox table: accepted webhooks appended in one transaction per group, claimed oldest first.

SQLite (one replica): a claim is a plain read, the rows are deleted once decided. PostgreSQL
(several replicas): a claim holds ``SELECT ... FOR UPDATE SKIP LOCKED`` on its rows in an open
transaction until they are deleted, so two replicas never decide the same row in the normal case;
a replica that dies mid-claim releases its locks with its connection and another one takes the rows
(deciding again is idempotent).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update

from rollbackbot.adapters.store import schema
from rollbackbot.adapters.store.outage import store_call
from rollbackbot.ports import InboxRow

CHECKPOINT_SECONDS = 0.25
_t = schema.inbox
_c = _t.c
_PENDING = _c.error.is_(None)
_APPEND = insert(_t).returning(_c.seq)
_DEPTH = select(func.count(), func.min(_c.accepted_at)).where(_PENDING)
_POISONED = select(func.count()).select_from(_t).where(_c.error.is_not(None))
_OLDEST = select(func.min(_c.seq)).where(_PENDING)
_NEWEST = select(func.max(_c.seq))
_DONE = delete(_t).where(_c.seq.in_(bindparam("seqs", expanding=True)))
_FAILED = update(_t).where(_c.seq == bindparam("match_seq")).values(attempts=_c.attempts + 1, error=bindparam("poison"))


@dataclass
class InboxClaim:
    """Rows taken for deciding; on PostgreSQL their row locks are held by ``connection`` until finished."""

    rows: list[InboxRow]
    connection: Connection | None = field(default=None, repr=False)


@dataclass(frozen=True)
class InboxDepth:
    pending: int
    oldest: datetime | None
    poisoned: int


class SqlInbox:
    """The ``inbox`` table of the incident store's database."""

    def __init__(self, engine: Engine, checkpointed: Engine | None = None) -> None:
        """``checkpointed``: another SQLite database whose WAL the drainer copies back too (the incidents')."""
        self.engine = engine
        self._checkpointed = [e for e in (engine, checkpointed) if e is not None and e.dialect.name == "sqlite"]
        self._last_checkpoint = 0.0
        self._locking = engine.dialect.name == "postgresql"
        claim = select(_c.seq, _c.accepted_at, _c.body, _c.answer, _c.attempts).where(_PENDING)
        self._claim = claim.order_by(_c.seq).limit(bindparam("limit"))
        if self._locking:
            # A replica decides the rows it accepted; another one's only once they waited (that replica
            # died or stalls), and every row that was there when it started (a crash left them).
            mine = (
                _c.replica.is_(None)
                | (_c.replica == bindparam("replica"))
                | (_c.seq <= bindparam("backlog"))
                | (_c.accepted_at < bindparam("adopt_before"))
            )
            self._claim = claim.where(mine).order_by(_c.seq).limit(bindparam("limit")).with_for_update(skip_locked=True)

    @store_call
    def append(self, rows: list[tuple[datetime, bytes, list[str]]], replica: str | None = None) -> int:
        """Insert ``(accepted_at, body, answer)`` rows in one transaction; the highest seq given."""
        values = [
            {"accepted_at": at, "body": body, "answer": json.dumps(answer, separators=(",", ":")), "replica": replica}
            for at, body, answer in rows
        ]
        with self.engine.begin() as conn:
            return max(int(seq) for seq in conn.execute(_APPEND, values).scalars())

    @store_call
    def claim(
        self, limit: int, replica: str | None = None, backlog: int = 0, adopt_before: datetime | None = None
    ) -> InboxClaim:
        """The oldest pending rows nobody else is deciding (at most ``limit``); finish() the claim after.

        On PostgreSQL only rows ``replica`` accepted, rows up to ``backlog``, and rows accepted before
        ``adopt_before``; SQLite has one replica and takes every row.
        """
        params: dict[str, Any] = {"limit": limit, "replica": replica, "backlog": backlog}
        params["adopt_before"] = adopt_before or datetime.max.replace(tzinfo=UTC)
        conn = self.engine.connect()
        try:
            conn.begin()
            rows = [_row(r) for r in conn.execute(self._claim, params).all()]
            if not self._locking or not rows:
                conn.rollback()
                conn.close()
                return InboxClaim(rows)
            return InboxClaim(rows, conn)
        except BaseException:
            conn.close()
            raise

    @store_call
    def finish(self, claim: InboxClaim, done: list[int], failed: dict[int, str | None]) -> None:
        """Delete the ``done`` rows; count a failed attempt on each of ``failed`` (a text: kept aside as poison)."""
        conn = claim.connection
        try:
            if conn is None:
                with self.engine.begin() as own:
                    self._write(own, done, failed)
                self.checkpoint()
            else:
                self._write(conn, done, failed)
                conn.commit()
        finally:
            if conn is not None:
                conn.close()

    @store_call
    def checkpoint(self) -> None:
        """Copy the SQLite WALs back into their files here (the drainer's thread), at most every 0.25 s.

        SQLite's default checkpoints inside whichever commit crosses 1,000 pages: a webhook's append,
        or an incident step's save on the event loop, which then waited for the copy and its fsync
        (100-200 ms stalls in the burst). PASSIVE never waits for, or blocks, a writer.
        """
        if not self._checkpointed or time.monotonic() - self._last_checkpoint < CHECKPOINT_SECONDS:
            return
        self._last_checkpoint = time.monotonic()
        for engine in self._checkpointed:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def release(self, claim: InboxClaim) -> None:
        """Give the claimed rows back untouched (the store failed while deciding)."""
        if claim.connection is not None:
            claim.connection.close()  # rolls back: the row locks go

    @staticmethod
    def _write(conn: Connection, done: list[int], failed: dict[int, str | None]) -> None:
        if done:
            conn.execute(_DONE, {"seqs": done})
        if failed:
            conn.execute(_FAILED, [{"match_seq": seq, "poison": error} for seq, error in failed.items()])

    @store_call
    def depth(self) -> InboxDepth:
        """Pending rows, when the oldest was accepted, and poison rows kept aside."""
        with self.engine.connect() as conn:
            pending, oldest = conn.execute(_DEPTH).one()
            poisoned = conn.execute(_POISONED).scalar_one()
        return InboxDepth(int(pending), _aware(oldest), int(poisoned))

    @store_call
    def oldest_pending(self) -> int | None:
        """The seq of the oldest row not decided yet (whoever is deciding it), None when none is."""
        with self.engine.connect() as conn:
            value = conn.execute(_OLDEST).scalar()
        return None if value is None else int(value)

    @store_call
    def newest(self) -> int:
        """The highest seq in the table (0 when empty)."""
        with self.engine.connect() as conn:
            return int(conn.execute(_NEWEST).scalar() or 0)

    @store_call
    def poisoned(self) -> list[InboxRow]:
        """The rows kept aside, oldest first (for an operator)."""
        stmt = select(_c.seq, _c.accepted_at, _c.body, _c.answer, _c.attempts).where(_c.error.is_not(None))
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(stmt.order_by(_c.seq)).all()]


def _row(row: Any) -> InboxRow:
    return InboxRow(
        int(row.seq),
        _aware(row.accepted_at) or row.accepted_at,
        bytes(row.body),
        json.loads(row.answer),
        int(row.attempts),
    )


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
