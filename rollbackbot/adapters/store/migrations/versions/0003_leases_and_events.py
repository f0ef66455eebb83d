"""Several replicas: a row version, a lease (owner, expiry on the database clock, fencing counter) per
incident, and an insert-only table of the events noted from outside an incident's own steps.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    # Each part only when missing: a database re-migrated after its version table was lost upgrades too.
    if "version" not in {column["name"] for column in inspector.get_columns("incidents")}:
        _add_lease_columns()
    if not inspector.has_table("incident_events"):
        _create_events()


def _add_lease_columns() -> None:
    with op.batch_alter_table("incidents") as batch:
        # Every save compares and bumps it: a write based on an older read is refused.
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("owner", sa.String(128), nullable=True))
        # Seconds since the epoch on the database's clock: replicas' own clocks never decide a lease.
        batch.add_column(sa.Column("lease_expires", sa.Float, nullable=True))
        # Incremented by every claim: a write carrying an older fence is from a replica that lost the lease.
        batch.add_column(sa.Column("fence", sa.Integer, nullable=False, server_default="0"))


def _create_events() -> None:
    op.create_table(
        "incident_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_incident_events_incident", "incident_events", ["incident_id", "seq"])


def downgrade() -> None:
    op.drop_table("incident_events")
    with op.batch_alter_table("incidents") as batch:
        for column in ("fence", "lease_expires", "owner", "version"):
            batch.drop_column(column)
