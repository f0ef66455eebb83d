"""The incident table as the first releases made it (create_all): created here when missing.

A database written before migrations existed already has the table; it is kept as it is and only the
indexes a later release added are created, so such a database upgrades in place.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_incidents_app_state": ["app", "state"],
    "ix_incidents_alert": ["fingerprint", "starts_at"],
    "ix_incidents_created": ["created_at"],
    "ix_incidents_state_created": ["state", "created_at"],
    "ix_incidents_created_id": ["created_at", "id"],
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("incidents"):
        op.create_table(
            "incidents",
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("app", sa.String(255), nullable=False),
            sa.Column("state", sa.String(32), nullable=False),
            sa.Column("fingerprint", sa.String(64), nullable=False),
            sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("rollback_started_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("record", sa.Text, nullable=False),
            sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        )
    existing = {index["name"] for index in inspector.get_indexes("incidents")}
    for name, columns in _INDEXES.items():
        if name not in existing:
            op.create_index(name, "incidents", columns)
    if not inspector.has_table("incident_messages"):
        op.create_table(
            "incident_messages",
            sa.Column("incident_id", sa.String(64), primary_key=True),
            sa.Column("channel", sa.String(32), nullable=False),
            sa.Column("ts", sa.String(32), nullable=False),
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        )


def downgrade() -> None:
    op.drop_table("incident_messages")
    op.drop_table("incidents")
