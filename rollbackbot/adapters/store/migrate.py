"""Schema migrations of the incident store: ``upgrade`` (at start, and ``rollbackbot db upgrade``) and ``current``.

Several replicas start at once against one PostgreSQL database: the upgrade runs in one transaction
holding a transaction-level advisory lock, so one replica migrates and the others wait, then find
nothing left to do. PostgreSQL's DDL is transactional: a failed upgrade leaves the schema as it was.
SQLite is the one-replica store; its upgrade takes the write lock first (``BEGIN IMMEDIATE``).

A database already at ``HEAD`` (every start but the first after an upgrade) is recognised with one
query, without importing Alembic (and Mako): ~10 MB of a long-running service's memory.
``HEAD`` is checked against Alembic's own head by the tests.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DatabaseError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0004"  # the newest revision in migrations/versions (tests/store: equals Alembic's head)
# pg_advisory_xact_lock key: any constant the operator's other applications are unlikely to use.
UPGRADE_LOCK_KEY = 0x526F6C6C62616B  # "Rollbak"
# Alembic's ``op`` and ``context`` are module globals: one upgrade at a time in a process.
_IN_PROCESS = threading.Lock()
log = logging.getLogger("rollbackbot.store")
logging.getLogger("alembic").setLevel(logging.WARNING)  # one line of ours, not its plugin and step lines


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this version of rollbackbot ships (Alembic's reading of the scripts)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    revision = ScriptDirectory.from_config(config).get_current_head()
    assert revision is not None
    return revision


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``, once, whatever number of replicas call this at the same time."""
    if revision in ("head", HEAD) and _at_head(engine):
        return
    from alembic import command
    from alembic.runtime.migration import MigrationContext

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


def _at_head(engine: Engine) -> bool:
    """The database's recorded revision is ``HEAD`` (a missing table or database: not at head)."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
    except DatabaseError:
        return False


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
