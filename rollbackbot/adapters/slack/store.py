"""Where each incident's Slack message lives (channel, ts), in the incident store's database.

Kept durable so that after a restart the decision still updates the original proposal and the
outcome still lands in its thread. The first message recorded for an incident wins.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from rollbackbot.adapters.slack.api import Posted
from rollbackbot.errors import TransientError

metadata = MetaData()

incident_messages = Table(
    "incident_messages",
    metadata,
    Column("incident_id", String(64), primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("ts", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("posted_at", DateTime(timezone=True), nullable=False),
)


class SlackMessageStore:
    """incident id → the top-level Slack message of that incident."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    def remember(self, incident_id: str, posted: Posted, kind: str, at: datetime) -> Posted:
        """Record the incident's message; if one was recorded first (another replica), return that one."""
        values = {"incident_id": incident_id, "channel": posted.channel, "ts": posted.ts, "kind": kind, "posted_at": at}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(incident_messages).values(**values))
        except IntegrityError:
            return self.find(incident_id) or posted
        except SQLAlchemyError as exc:
            raise TransientError(f"slack message store: {type(exc).__name__}") from exc
        return posted

    def find(self, incident_id: str) -> Posted | None:
        """The incident's message, if one was posted."""
        stmt = select(incident_messages.c.channel, incident_messages.c.ts).where(
            incident_messages.c.incident_id == incident_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return Posted(row[0], row[1]) if row else None
