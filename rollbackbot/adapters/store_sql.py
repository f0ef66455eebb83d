"""The incident store on SQLAlchemy: SQLite by default, PostgreSQL works the same.

Each incident is one row holding its JSON record plus the columns the rules query on; every update
is a compare-and-set on the previous state, which is what makes approvals and resumes act once.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Index,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from rollbackbot.core.decide import AppHistory
from rollbackbot.core.incident_json import incident_from_record, incident_to_record
from rollbackbot.core.incidents import TERMINAL_STATES, Incident, IncidentState
from rollbackbot.errors import TransientError
from rollbackbot.ports import StaleIncident

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
    Index("ix_incidents_app_state", "app", "state"),
    Index("ix_incidents_alert", "fingerprint", "starts_at"),
    Index("ix_incidents_created", "created_at"),
)

_ROLLBACK_STATES = (IncidentState.rolling_back, IncidentState.syncing, IncidentState.rolled_back)


def _rollback_started_at(incident: Incident) -> datetime | None:
    for ev in incident.events:
        if ev.state is IncidentState.rolling_back:
            return ev.at
    return None


def _row_values(incident: Incident) -> dict[str, Any]:
    return {
        "app": incident.app,
        "state": incident.state.value,
        "rollback_started_at": _rollback_started_at(incident),
        "record": json.dumps(incident_to_record(incident), separators=(",", ":")),
    }


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the API read while the worker writes; busy_timeout waits out a second replica's write.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class SqlIncidentStore:
    """IncidentStore over a SQLAlchemy engine."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = _make_engine(url)
        metadata.create_all(self.engine)

    def create(self, incident: Incident) -> bool:
        values = _row_values(incident) | {
            "id": incident.id,
            "fingerprint": incident.alert.fingerprint,
            "starts_at": incident.alert.starts_at,
            "created_at": incident.created_at,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(incidents).values(**values))
        except IntegrityError:
            return False
        except SQLAlchemyError as exc:
            raise TransientError(f"incident store: {type(exc).__name__}") from exc
        return True

    def get(self, incident_id: str) -> Incident | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(incidents.c.record).where(incidents.c.id == incident_id)).first()
        return incident_from_record(json.loads(row[0])) if row else None

    def save(self, incident: Incident, expected_state: IncidentState) -> None:
        stmt = (
            update(incidents)
            .where(incidents.c.id == incident.id, incidents.c.state == expected_state.value)
            .values(**_row_values(incident))
        )
        with self.engine.begin() as conn:
            result = conn.execute(stmt)
        if result.rowcount != 1:
            raise StaleIncident(f"{incident.id} is no longer {expected_state.value}")

    def recent(self, limit: int = 100) -> list[Incident]:
        stmt = select(incidents.c.record).order_by(incidents.c.created_at.desc(), incidents.c.id).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [incident_from_record(json.loads(r[0])) for r in rows]

    def unfinished(self) -> list[Incident]:
        terminal = [s.value for s in TERMINAL_STATES]
        stmt = select(incidents.c.record).where(incidents.c.state.not_in(terminal)).order_by(incidents.c.created_at)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [incident_from_record(json.loads(r[0])) for r in rows]

    def find_by_alert(self, fingerprint: str, starts_at: datetime) -> list[Incident]:
        stmt = select(incidents.c.record).where(
            incidents.c.fingerprint == fingerprint, incidents.c.starts_at == starts_at
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [incident_from_record(json.loads(r[0])) for r in rows]

    def app_history(self, app: str, exclude_id: str, budget_since: datetime) -> AppHistory:
        terminal = [s.value for s in TERMINAL_STATES]
        rolled = [s.value for s in _ROLLBACK_STATES]
        of_app = (incidents.c.app == app) & (incidents.c.id != exclude_id)
        with self.engine.connect() as conn:
            active = conn.execute(
                select(incidents.c.id)
                .where(of_app, incidents.c.state.not_in(terminal), incidents.c.created_at.is_not(None))
                .order_by(incidents.c.created_at)
                .limit(1)
            ).scalar()
            last = conn.execute(
                select(func.max(incidents.c.rollback_started_at)).where(of_app, incidents.c.state.in_(rolled))
            ).scalar()
            count = conn.execute(
                select(func.count())
                .select_from(incidents)
                .where(of_app, incidents.c.state.in_(rolled), incidents.c.rollback_started_at >= budget_since)
            ).scalar_one()
        return AppHistory(other_active_incident=active, last_rollback_at=_aware(last), rollbacks_in_budget_window=count)

    def count_by_app_state(self) -> dict[tuple[str, str], int]:
        """Incidents per (app, state), for the metrics gauge."""
        stmt = select(incidents.c.app, incidents.c.state, func.count()).group_by(incidents.c.app, incidents.c.state)
        with self.engine.connect() as conn:
            return {(app, state): count for app, state, count in conn.execute(stmt).all()}

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))


def _aware(value: datetime | None) -> datetime | None:
    from datetime import UTC

    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # SQLite drops the zone; we only ever store UTC
    return value


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine
