"""The incident store on SQLAlchemy: SQLite by default (one replica), PostgreSQL for several.

Each incident is one row holding its JSON record plus the columns the rules query on; every update
is a compare-and-set on the previous state, which is what makes approvals and resumes act once.
The schema is Alembic's (``adapters/store/migrations``), brought up to date at start under a lock.
Alert de-duplication is the primary key (``INSERT ... ON CONFLICT DO NOTHING``); one incident per app
rolling back or syncing is a partial unique index, not a read before a write.

Outages (a file locked by another process past the busy timeout, a full disk, a lost PostgreSQL
connection) surface as ``StoreUnavailable``, which the service waits out with backoff until the
store is back. A file that is not a database stops start-up with ``ConfigError`` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)

from rollbackbot.adapters.store import migrate, schema
from rollbackbot.adapters.store.inbox import SqlInbox
from rollbackbot.adapters.store.leases import LeaseStatements
from rollbackbot.adapters.store.outage import outage_cause as _outage_cause
from rollbackbot.adapters.store.outage import store_call as _store_call
from rollbackbot.adapters.store.turns import TurnTakingConnection
from rollbackbot.core.decide import AppHistory, OtherIncident
from rollbackbot.core.incident_json import incident_from_record, incident_to_record
from rollbackbot.core.incidents import TERMINAL_STATES, Event, Incident, IncidentState
from rollbackbot.errors import ConfigError, TransientError, redact
from rollbackbot.ports import IncidentPage, Lease, LeaseLost, StaleIncident

metadata = schema.metadata
incidents = schema.incidents
_events = schema.incident_events

_ROLLBACK_STATES = (IncidentState.rolling_back, IncidentState.syncing, IncidentState.rolled_back)


def _rollback_started_at(incident: Incident) -> datetime | None:
    for ev in incident.events:
        if ev.state is IncidentState.rolling_back:
            return ev.at
    return None


def _own_events(incident: Incident) -> Incident:
    if not any(e.appended for e in incident.events):
        return incident
    return replace(incident, events=tuple(e for e in incident.events if not e.appended))


def _row_values(incident: Incident) -> dict[str, Any]:
    return {
        "app": incident.app,
        "state": incident.state.value,
        "rollback_started_at": _rollback_started_at(incident),
        # Appended events live in incident_events (insert only); the record keeps the steps' own.
        "record": json.dumps(incident_to_record(_own_events(incident)), separators=(",", ":")),
    }


BUSY_TIMEOUT_MS = 5000  # how long one SQLite statement waits for another process's lock


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the API read while the worker writes; busy_timeout waits out a second replica's write.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_MS)}")
    cur.close()


def _no_auto_checkpoint(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


_TERMINAL = [s.value for s in TERMINAL_STATES]
_NON_TERMINAL = [s.value for s in IncidentState if s not in TERMINAL_STATES]
_ROLLED = [s.value for s in _ROLLBACK_STATES]
_c = incidents.c

# Statements are built once: building SQLAlchemy expressions per call costs more than SQLite itself.
_INSERT = insert(incidents)
_ROW = (_c.record, _c.resolved_at, _c.version)  # what _load reads
_GET = select(*_ROW).where(_c.id == bindparam("id"))
_APPENDED = (
    select(_events.c.incident_id, _events.c.at, _events.c.state, _events.c.detail)
    .where(_events.c.incident_id.in_(bindparam("ids", expanding=True)))
    .order_by(_events.c.seq)
)
_STATE = select(_c.state).where(_c.id == bindparam("id"))
_APPEND = insert(_events)
_MARK_RESOLVED = (
    update(incidents)
    .where(_c.id == bindparam("match_id"), _c.resolved_at.is_(None))
    .values(resolved_at=bindparam("at"))
)
_TOUCH_NOTHING = update(incidents).where(_c.id == "").values(state=_c.state)  # takes the write lock only
_SAVE = (
    update(incidents)
    .where(_c.id == bindparam("match_id"), _c.state == bindparam("expected"), _c.version == bindparam("read_version"))
    .values(
        app=bindparam("app"),
        state=bindparam("state"),
        rollback_started_at=bindparam("rollback_started_at"),
        record=bindparam("record"),
        version=_c.version + 1,
    )
)
_OF_APP = (_c.app == bindparam("app")) & (_c.id != bindparam("exclude"))
# Only incidents opened before this one count as "the active one": two alerts arriving together
# must not each see the other and both stand down.
_OPENED_BEFORE = (_c.created_at < bindparam("created_at")) | (
    (_c.created_at == bindparam("created_at")) & (_c.id < bindparam("exclude"))
)
_ACTIVE = select(_c.id).where(_OF_APP, _OPENED_BEFORE, _c.state.not_in(_TERMINAL)).order_by(_c.created_at).limit(1)
_LAST_ROLLBACK = select(func.max(_c.rollback_started_at)).where(_OF_APP, _c.state.in_(_ROLLED))
_LAST_ROLLBACK_ID = select(_c.id).where(_OF_APP, _c.state.in_(_ROLLED)).order_by(_c.rollback_started_at.desc()).limit(1)
_OTHERS = (
    select(_c.id, _c.created_at, *_ROW)
    .where(_OF_APP, _c.state.not_in(_TERMINAL))
    .order_by(_c.created_at, _c.id)
    .limit(50)
)
_ROLLBACKS_SINCE = (
    select(func.count())
    .select_from(incidents)
    .where(_OF_APP, _c.state.in_(_ROLLED), _c.rollback_started_at >= bindparam("since"))
)


def _insert_values(incident: Incident) -> dict[str, Any]:
    return _row_values(incident) | {
        "id": incident.id,
        "fingerprint": incident.alert.fingerprint,
        "starts_at": incident.alert.starts_at,
        "created_at": incident.created_at,
    }


class SqlIncidentStore:
    """IncidentStore over a SQLAlchemy engine."""

    def __init__(self, url: str, *, leases: bool | None = None) -> None:
        """``leases``: record leases in the database; by default on PostgreSQL (several replicas) only.

        SQLite is the one-replica store: its one writer needs no lease, and three write transactions
        more per incident would hold its single write lock against intake. Without, a claim always
        succeeds in memory and saves compare state and version only.
        """
        self.engine: Engine = make_engine(url)
        self.leases_recorded = self.engine.dialect.name != "sqlite" if leases is None else leases
        try:
            migrate.upgrade(self.engine)
        except DatabaseError as exc:
            raise ConfigError(_unusable_database(url, exc)) from None
        self._insert_new = _insert_ignoring_duplicates(self.engine.dialect.name)
        self._leases = LeaseStatements(self.engine.dialect.name)
        self._save_leased = _SAVE.where(self._leases.holds())
        self.inbox_url = inbox_url(url)
        if self.inbox_url != url:  # SQLite: the drainer checkpoints both files (SqlInbox.checkpoint)
            event.listen(self.engine, "connect", _no_auto_checkpoint)
            self.engine.dispose()  # the migration's connection was made before the listener
            self.inbox = SqlInbox(self._inbox_engine(self.inbox_url), checkpointed=self.engine)
        else:
            self.inbox = SqlInbox(self.engine)

    @staticmethod
    def _inbox_engine(url: str) -> Engine:
        engine = make_engine(url)
        # No checkpoint inside a webhook's commit: the drainer checkpoints (SqlInbox.checkpoint).
        event.listen(engine, "connect", _no_auto_checkpoint)
        try:
            migrate.upgrade(engine)  # the same migrations: only its inbox table is used
        except DatabaseError as exc:
            raise ConfigError(_unusable_database(url, exc)) from None
        return engine

    def create(self, incident: Incident) -> bool:
        return incident.id in self.create_many([incident])

    @_store_call
    def create_many(self, new: list[Incident]) -> set[str]:
        """Insert the incidents not stored yet, in one transaction; return the ids inserted."""
        if not new:
            return set()
        unique = list({i.id: i for i in new}.values())
        try:
            with self.engine.begin() as conn:
                # The database decides which replica's insert wins; the others' rows are skipped, not errors.
                rows = conn.execute(self._insert_new, [_insert_values(i) for i in unique])
                return {row[0] for row in rows}
        except IntegrityError:
            return {i.id for i in unique if self._create_one(i)}  # another unique index (one acting per app)
        except (OperationalError, InterfaceError):
            raise  # StoreUnavailable, by _store_call
        except SQLAlchemyError as exc:
            raise TransientError(f"incident store: {type(exc).__name__}") from exc

    def _create_one(self, incident: Incident) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(_INSERT, [_insert_values(incident)])
        except IntegrityError:
            return False
        return True

    @_store_call
    def get(self, incident_id: str) -> Incident | None:
        with self.engine.connect() as conn:
            row = conn.execute(_GET, {"id": incident_id}).first()
            return _with_appended(conn, [_load(row)])[0] if row else None

    @_store_call
    def mark_resolved(self, incident_id: str, at: datetime) -> bool:
        """Record that the incident's alert resolved (first time only); never races a step's save."""
        with self.engine.begin() as conn:
            return bool(conn.execute(_MARK_RESOLVED, {"match_id": incident_id, "at": at}).rowcount)

    @_store_call
    def append_event(self, incident_id: str, at: datetime, detail: str) -> bool:
        """Insert-only: an event noted from outside the incident's steps never conflicts with a save."""
        with self.engine.begin() as conn:
            state = conn.execute(_STATE, {"id": incident_id}).scalar()
            if state is None:
                return False
            conn.execute(_APPEND, {"incident_id": incident_id, "at": at, "state": state, "detail": detail})
            return True

    @_store_call
    def save(self, incident: Incident, expected_state: IncidentState, lease: Lease | None = None) -> None:
        params = _row_values(incident) | {
            "match_id": incident.id,
            "expected": expected_state.value,
            "read_version": incident.version,
        }
        statement = _SAVE
        if lease is not None and self.leases_recorded:
            statement = self._save_leased
            params |= {"lease_owner": lease.owner, "lease_fence": lease.fence}
        try:
            with self.engine.begin() as conn:
                changed = conn.execute(statement, params).rowcount
                holder = (
                    conn.execute(self._leases.holder, {"id": incident.id}).first() if lease and not changed else None
                )
        except IntegrityError:
            # ux_incidents_one_acting_per_app: another incident of this app is rolling back or syncing.
            raise StaleIncident(f"another incident of {incident.app} is already acting on it") from None
        if changed == 1:
            return
        if (
            lease is not None
            and holder is not None
            and (holder[0], holder[1], bool(holder[2]))
            != (
                lease.owner,
                lease.fence,
                True,
            )
        ):
            raise LeaseLost(f"{incident.id}: lease {lease.fence} of {lease.owner} is no longer held; write refused")
        raise StaleIncident(f"{incident.id} changed since it was read (expected {expected_state.value})")

    # ---- leases (adapters/store/leases.py) ----

    @_store_call
    def claim(self, incident_ids: Sequence[str], owner: str, seconds: float, dead: Sequence[str] = ()) -> list[Lease]:
        """Take the free leases among ``incident_ids`` (FOR UPDATE SKIP LOCKED); the ones taken.

        Leases of ``dead`` owners count as free before they expire.
        """
        if not incident_ids:
            return []
        if not self.leases_recorded:
            return [Lease(incident_id, owner, 0) for incident_id in dict.fromkeys(incident_ids)]
        with self.engine.begin() as conn:
            return self._leases.claim(conn, incident_ids, owner, seconds, dead)

    @_store_call
    def renew(self, owner: str, incident_ids: Sequence[str], seconds: float) -> set[str]:
        """Heartbeat: push the expiry of ``owner``'s leases; the ids still held."""
        if not incident_ids or not self.leases_recorded:
            return set(incident_ids)
        with self.engine.begin() as conn:
            rows = conn.execute(self._leases.renew, {"holder": owner, "ids": list(incident_ids), "seconds": seconds})
            return {row[0] for row in rows}

    @_store_call
    def release(self, lease: Lease) -> None:
        if not self.leases_recorded:
            return
        with self.engine.begin() as conn:
            conn.execute(
                self._leases.release, {"match_id": lease.incident_id, "holder": lease.owner, "held_fence": lease.fence}
            )

    @_store_call
    def expired_leases(self) -> list[str]:
        if not self.leases_recorded:
            return []
        with self.engine.connect() as conn:
            return list(conn.execute(self._leases.expired).scalars())

    @_store_call
    def owners(self) -> dict[str, str]:
        if not self.leases_recorded:
            return {}
        with self.engine.connect() as conn:
            return dict(conn.execute(self._leases.owners).all())

    @_store_call
    def recent(self, limit: int = 100) -> list[Incident]:
        stmt = select(*_ROW, _c.id).order_by(_c.created_at.desc(), _c.id).limit(limit)
        return self._incidents(stmt)

    @_store_call
    def unfinished(self) -> list[Incident]:
        # IN over the non-terminal states (not NOT IN the terminal ones): an index range scan that
        # never visits the finished incidents, however many the table holds.
        return self._incidents(select(*_ROW).where(_c.state.in_(_NON_TERMINAL)).order_by(_c.created_at))

    @_store_call
    def find_by_alert(self, fingerprint: str, starts_at: datetime) -> list[Incident]:
        return self._incidents(select(*_ROW).where(_c.fingerprint == fingerprint, _c.starts_at == starts_at))

    def _incidents(self, stmt: Any) -> list[Incident]:
        with self.engine.connect() as conn:
            return _with_appended(conn, [_load(r) for r in conn.execute(stmt).all()])

    @_store_call
    def app_history(self, incident: Incident, budget_since: datetime) -> AppHistory:
        """The app's active incident opened before this one, its last rollback, and rollbacks since then."""
        params = {"app": incident.app, "exclude": incident.id, "created_at": incident.created_at}
        with self.engine.connect() as conn:
            active = conn.execute(_ACTIVE, params).scalar()
            last = conn.execute(_LAST_ROLLBACK, params).scalar()
            count = conn.execute(_ROLLBACKS_SINCE, params | {"since": budget_since}).scalar_one()
            last_id = conn.execute(_LAST_ROLLBACK_ID, params).scalar()
            others = tuple(_other(incident, row) for row in conn.execute(_OTHERS, params).all())
        return AppHistory(
            other_active_incident=active,
            last_rollback_at=_aware(last),
            rollbacks_in_budget_window=count,
            others=others,
            last_rollback_incident=last_id,
        )

    @_store_call
    def count_by_app_state(self) -> dict[tuple[str, str], int]:
        """Incidents per (app, state), for the metrics gauge."""
        stmt = select(_c.app, _c.state, func.count()).group_by(_c.app, _c.state)
        with self.engine.connect() as conn:
            return {(app, state): count for app, state, count in conn.execute(stmt).all()}

    @_store_call
    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def check_writable(self) -> None:
        """Raise unless a write transaction can be opened (readiness: intake needs to insert)."""
        with self.engine.begin() as conn:
            conn.execute(_TOUCH_NOTHING)

    # ---- paging, retention, counts (the incident API and housekeeping) ----

    def page(
        self,
        limit: int,
        after: tuple[datetime, str] | None = None,
        *,
        app: str | None = None,
        state: str | None = None,
        since: datetime | None = None,
    ) -> IncidentPage:
        """Newest first by (created, id); ``after`` is the last (created, id) of the previous page.

        Keyset paging: an incident inserted meanwhile lands before the cursor and never shifts a page.
        """
        stmt = select(*_ROW, _c.created_at).order_by(_c.created_at.desc(), _c.id.desc())
        if after is not None:
            created, last_id = after
            stmt = stmt.where((_c.created_at < created) | ((_c.created_at == created) & (_c.id < last_id)))
        if app is not None:
            stmt = stmt.where(_c.app == app)
        if state is not None:
            stmt = stmt.where(_c.state == state)
        if since is not None:
            stmt = stmt.where(_c.created_at >= since)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.limit(limit + 1)).all()
            found = _with_appended(conn, [_load(r) for r in rows[:limit]])
        last_created = _aware(rows[limit - 1].created_at) if len(rows) > limit else None
        return IncidentPage(found, (last_created, found[-1].id) if last_created is not None else None)

    def prune(self, created_before: datetime, batch: int = 500) -> int:
        """Delete terminal incidents opened before ``created_before``, in small batches; how many went."""
        doomed = select(_c.id).where(_c.created_at < created_before, _c.state.in_(_TERMINAL)).limit(batch)
        removed = 0
        while True:
            with self.engine.begin() as conn:
                ids = list(conn.execute(doomed).scalars())
                conn.execute(delete(_events).where(_events.c.incident_id.in_(ids)))
                count = conn.execute(delete(incidents).where(_c.id.in_(ids))).rowcount
            removed += count
            if count < batch:
                return removed

    def count_active(self) -> int:
        """Incidents not in a terminal state."""
        stmt = select(func.count()).select_from(incidents).where(_c.state.not_in(_TERMINAL))
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())


def _insert_ignoring_duplicates(dialect: str) -> Any:
    """``INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id``: only the rows this call inserted come back."""
    from sqlalchemy.dialects import postgresql, sqlite

    if dialect == "postgresql":
        return postgresql.insert(incidents).on_conflict_do_nothing(index_elements=["id"]).returning(incidents.c.id)
    return sqlite.insert(incidents).on_conflict_do_nothing(index_elements=["id"]).returning(incidents.c.id)


def _other(mine: Incident, row: Any) -> OtherIncident:
    """What deciding about ``mine`` needs to know of another unfinished incident of its app.

    Read from the record's few keys, not loaded as a whole incident: in an alert storm each incident
    of an app looks at up to 50 others, and building each one in full was most of deciding's time.
    """
    record = json.loads(row.record)
    created = _aware(row.created_at)
    assert created is not None
    opened_before = created < mine.created_at or (created == mine.created_at and row.id < mine.id)
    deciding = record["state"] == IncidentState.received.value and not record.get("plan")
    waiting = record.get("not_before") if deciding else None
    return OtherIncident(
        id=row.id,
        opened_before=opened_before,
        waiting_until=datetime.fromisoformat(waiting) if waiting else None,
        acting=not deciding,
    )


def _load(row: Any) -> Incident:
    """An incident from a row selected with ``_ROW`` (record, resolved_at, version)."""
    incident = replace(incident_from_record(json.loads(row.record)), version=row.version)
    resolved = _aware(row.resolved_at)
    if resolved is not None and incident.resolved_at is None:
        incident = replace(incident, resolved_at=resolved)
    return incident


def _with_appended(conn: Any, found: list[Incident]) -> list[Incident]:
    """Merge in the events of incident_events, in time order (one query for all of ``found``)."""
    if not found:
        return found
    appended: dict[str, list[Event]] = {}
    for incident_id, at, state, detail in conn.execute(_APPENDED, {"ids": [i.id for i in found]}):
        event = Event(_aware(at) or at, IncidentState(state), detail, appended=True)
        appended.setdefault(incident_id, []).append(event)
    if not appended:
        return found
    return [
        replace(i, events=tuple(sorted((*i.events, *appended[i.id]), key=lambda e: e.at))) if i.id in appended else i
        for i in found
    ]


def _aware(value: datetime | None) -> datetime | None:
    from datetime import UTC

    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # SQLite drops the zone; we only ever store UTC
    return value


def _unusable_database(url: str, exc: DatabaseError) -> str:
    """One line for an operator: which file, what is wrong, what to do."""
    if url.startswith("sqlite:///"):
        where = Path(url.removeprefix("sqlite:///")).expanduser()
        return (
            f"incident store {where} is not usable ({_outage_cause(exc)}): move the file aside or restore it "
            "from a backup, then start again (ROLLBACKBOT_DATABASE_URL)"
        )
    return f"incident store {redact(url)} is not usable ({_outage_cause(exc)}): check ROLLBACKBOT_DATABASE_URL"


def inbox_url(url: str) -> str:
    """Where the inbox lives: on SQLite a file of its own beside the state file, else the same database.

    SQLite has one write lock per file: a webhook's append waiting behind the incidents' writes
    (and SQLite's busy handler sleeping 1, 2, 5, 10 ms between tries) cost ~40 ms at p99; with a
    file of its own an append only ever waits for the drainer's short deletes.
    """
    if not url.startswith("sqlite:///") or url.startswith("sqlite:///:memory:"):
        return url
    path, _, query = url.removeprefix("sqlite:///").partition("?")
    stem, dot, suffix = path.rpartition(".") if "." in Path(path).name else (path, "", "")
    sidecar = f"{stem}-inbox{dot}{suffix}" if dot else f"{path}-inbox"
    return f"sqlite:///{sidecar}" + (f"?{query}" if query else "")


def make_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite's parent directory made, WAL and busy timeout set; pre-ping."""
    options: dict[str, Any] = {}
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"factory": TurnTakingConnection}  # writers of this process take turns
    try:
        engine = create_engine(url, future=True, pool_pre_ping=True, **options)
    except ModuleNotFoundError as exc:  # postgresql+psycopg without the driver installed
        raise ConfigError(
            f"incident store {redact(url)} needs the Python package {exc.name}: pip install 'rollbackbot[postgresql]'"
        ) from None
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(
            f"ROLLBACKBOT_DATABASE_URL is not a database URL: {redact(url)} ({redact(str(exc))})"
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine
