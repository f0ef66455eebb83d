"""The durable inbox: one row per accepted Alertmanager webhook, until the drainer has decided it.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("inbox"):
        return  # a database re-migrated after its version table was lost
    op.create_table(
        "inbox",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("replica", sa.String(128), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=True),
        sqlite_autoincrement=True,  # seq never reused after a delete: read-your-writes compares seqs
    )


def downgrade() -> None:
    op.drop_table("inbox")
