"""The incident store's tables as the code reads them; ``migrations/`` makes the database match.

Kept equal to the newest migration (tests/store compare a migrated database with this metadata).
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, Index, Integer, LargeBinary, MetaData, String, Table, Text, text

metadata = MetaData()

incidents = Table(
    "incidents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("app", String(255), nullable=False),
    Column("state", String(32), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("rollback_started_at", DateTime(timezone=True), nullable=True),
    Column("record", Text, nullable=False),
    # Kept out of the JSON record: a resolution arriving while a step runs must not be overwritten
    # by that step's save.
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    # Compare-and-set: every save names the version it read and bumps it.
    Column("version", Integer, nullable=False, server_default="0"),
    # The lease of the replica driving the incident (adapters/store/leases.py).
    Column("owner", String(128), nullable=True),
    Column("lease_expires", Float, nullable=True),  # seconds since the epoch, on the database's clock
    Column("fence", Integer, nullable=False, server_default="0"),
    Index("ix_incidents_app_state", "app", "state"),
    Index("ix_incidents_alert", "fingerprint", "starts_at"),
    Index("ix_incidents_created", "created_at"),
    # unfinished() (resume at start, and the overdue gauge at every scrape) reads non-terminal rows only.
    Index("ix_incidents_state_created", "state", "created_at"),
)
Index("ix_incidents_created_id", incidents.c.created_at, incidents.c.id)
ACTING = text("state IN ('rolling_back', 'syncing')")  # kept equal to migration 0002
Index("ux_incidents_one_acting_per_app", incidents.c.app, unique=True, sqlite_where=ACTING, postgresql_where=ACTING)

# Insert-only: events noted from outside an incident's own steps (Event.appended).
incident_events = Table(
    "incident_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("state", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_incident_events_incident", "incident_id", "seq"),
)

# The durable inbox (rollbackbot/inbox.py): one row per accepted webhook, its raw body as received,
# committed before the 202; the drainer decides it into incidents and deletes it. ``error`` set:
# a poison row kept aside after ``attempts`` failures (never retried, never blocking the others).
inbox = Table(
    "inbox",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("accepted_at", DateTime(timezone=True), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("answer", Text, nullable=False),  # the incident ids the webhook answered (JSON list)
    Column("replica", String(128), nullable=True),  # which replica accepted it (decides it first)
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("error", Text, nullable=True),
    sqlite_autoincrement=True,  # seq never reused after a delete: read-your-writes compares seqs
)
