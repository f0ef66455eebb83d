"""One incident per app acting on it (rolling_back or syncing), enforced by a partial unique index.

The decision reads the app's history first; two replicas deciding at the same moment could both
read "nobody acts" — the index makes the second save fail instead of a second rollback commit.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ACTING = "state IN ('rolling_back', 'syncing')"


def upgrade() -> None:
    if "ux_incidents_one_acting_per_app" in {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("incidents")}:
        return  # a database stamped by hand, or re-migrated after its version table was lost
    op.create_index(
        "ux_incidents_one_acting_per_app",
        "incidents",
        ["app"],
        unique=True,
        sqlite_where=sa.text(ACTING),
        postgresql_where=sa.text(ACTING),
    )


def downgrade() -> None:
    op.drop_index("ux_incidents_one_acting_per_app", table_name="incidents")
