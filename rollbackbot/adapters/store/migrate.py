"""Schema migrations of the incident store: ``upgrade`` (at start, and ``rollbackbot db upgrade``) and ``current``.

Several replicas start at once against one PostgreSQL database: the upgrade runs in one transaction
holding a transaction-level advisory lock, so one replica migrates and the others wait, then find
nothing left to do. PostgreSQL's DDL is transactional: a failed upgrade leaves the schema as it was.
SQLite is the one-replica store; its upgrade takes the write lock first (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key: any constant the operator's other applications are unlikely to use.
UPGRADE_LOCK_KEY = 0x526F6C6C62616B  # "Rollbak"
# Alembic's ``op`` and ``context`` are module globals: one upgrade at a time in a process.
_IN_PROCESS = threading.Lock()
log = logging.getLogger("rollbackbot.store")
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)  # one line of ours, not six of its


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this version of rollbackbot ships."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    revision = ScriptDirectory.from_config(config).get_current_head()
    assert revision is not None
    return revision


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``, once, whatever number of replicas call this at the same time."""
    with _IN_PROCESS, engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK_KEY})
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock before looking: a second process waits
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(_config(conn), revision)
        after = MigrationContext.configure(conn).get_current_revision()
    if before != after:
        # A new database is not news; an existing one migrated is (the operator may want to know why).
        log.log(logging.INFO if before else logging.DEBUG, f"incident store schema upgraded: {before} -> {after}")


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
