"""The SQL incident store, on a real SQLite file and on a real PostgreSQL 15 server (``db_url`` is parametrised)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.core.incidents import AlertRef, Incident, IncidentState, new_incident
from rollbackbot.ports import StaleIncident

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
S = IncidentState


def _incident(app: str = "docsum-llm", fp: str = "a509e5702057cd45", at: datetime = NOW) -> Incident:
    alert = AlertRef("PromptInjectionSpike", fp, at - timedelta(minutes=1), {"app": app})
    return new_incident(app=app, policy="p", mode="auto", alert=alert, target={}, now=at)


pytestmark = pytest.mark.network  # the PostgreSQL half talks to a server on 127.0.0.1


def test_create_is_idempotent(db_url: str) -> None:
    store = SqlIncidentStore(db_url)
    inc = _incident()
    assert store.create(inc) is True
    assert store.create(inc) is False
    assert len(store.recent()) == 1


def test_survives_a_restart(db_url: str) -> None:
    inc = _incident().with_state(S.rolling_back, NOW, "go")
    SqlIncidentStore(db_url).create(inc)
    reopened = SqlIncidentStore(db_url)
    assert reopened.get(inc.id) == inc
    assert [i.id for i in reopened.unfinished()] == [inc.id]


def test_save_is_compare_and_set(db_url: str) -> None:
    store = SqlIncidentStore(db_url)
    inc = _incident()
    store.create(inc)
    store.save(inc.with_state(S.awaiting_approval, NOW), S.received)
    first = store.get(inc.id)
    assert first is not None and first.version == 1
    approved = first.with_state(S.approved, NOW)
    store.save(approved, S.awaiting_approval)
    # A second click computed from the same awaiting_approval record must lose.
    with pytest.raises(StaleIncident):
        store.save(first.with_state(S.rejected, NOW), S.awaiting_approval)
    assert store.get(inc.id) == approved


def test_a_save_based_on_an_older_read_is_refused_even_in_the_same_state(db_url: str) -> None:
    """Compare-and-set on the version: two writers that read the same state cannot both record a plan."""
    store = SqlIncidentStore(db_url)
    inc = _incident()
    store.create(inc)
    read_by_one, read_by_other = store.get(inc.id), store.get(inc.id)
    assert read_by_one is not None and read_by_other is not None
    store.save(read_by_one.with_event(NOW, "plan: by one"), S.received)
    with pytest.raises(StaleIncident):
        store.save(read_by_other.with_event(NOW, "plan: by the other"), S.received)
    stored = store.get(inc.id)
    assert stored is not None and [e.detail for e in stored.events][-1] == "plan: by one"


def test_an_appended_event_survives_a_concurrent_step(db_url: str) -> None:
    """An event noted while a step runs (another alert, a refused click) is neither lost nor a conflict."""
    store = SqlIncidentStore(db_url)
    inc = _incident()
    store.create(inc)
    in_flight = store.get(inc.id)
    assert in_flight is not None
    assert store.append_event(inc.id, NOW + timedelta(seconds=1), "also fired: X") is True
    assert store.append_event("no-such-incident", NOW, "x") is False
    store.save(in_flight.with_state(S.rolling_back, NOW + timedelta(seconds=2), "go"), S.received)
    stored = store.get(inc.id)
    assert stored is not None
    assert [(e.state, e.detail) for e in stored.events][-2:] == [(S.received, "also fired: X"), (S.rolling_back, "go")]
    saved_again = stored.with_state(S.syncing, NOW + timedelta(seconds=3), "pushed")
    store.save(saved_again, S.rolling_back)  # the appended event is not copied into the record
    final = store.get(inc.id)
    assert final is not None and [e.detail for e in final.events].count("also fired: X") == 1
    assert [i.id for i in store.recent()] == [inc.id] and "also fired: X" in str(store.recent()[0].events)


def test_list_is_newest_first_and_find_by_alert(db_url: str) -> None:
    store = SqlIncidentStore(db_url)
    old, new = _incident(fp="aa", at=NOW), _incident(fp="bb", at=NOW + timedelta(minutes=5))
    store.create(old)
    store.create(new)
    assert [i.id for i in store.recent()] == [new.id, old.id]
    assert [i.id for i in store.find_by_alert("aa", old.alert.starts_at)] == [old.id]
    assert store.find_by_alert("aa", new.alert.starts_at) == []


def test_app_history(db_url: str) -> None:
    store = SqlIncidentStore(db_url)
    done = _incident(fp="01", at=NOW - timedelta(hours=2))
    done = (
        done.with_state(S.rolling_back, NOW - timedelta(hours=2))
        .with_state(S.syncing, NOW)
        .with_state(S.rolled_back, NOW)
    )
    store.create(done)
    active = _incident(fp="02")
    store.create(active)
    other_app = _incident(app="badge-vision", fp="03").with_state(S.rolling_back, NOW)
    store.create(other_app)
    mine = _incident(fp="04", at=NOW + timedelta(minutes=1))
    history = store.app_history(mine, NOW - timedelta(hours=24))
    assert history.other_active_incident == active.id
    assert history.last_rollback_at == NOW - timedelta(hours=2)
    assert history.rollbacks_in_budget_window == 1
    assert store.app_history(mine, NOW - timedelta(hours=1)).rollbacks_in_budget_window == 0


def test_only_an_earlier_incident_is_the_active_one(db_url: str) -> None:
    store = SqlIncidentStore(db_url)
    first, second = _incident(fp="0a"), _incident(fp="0b")  # opened in the same instant
    assert store.create_many([first, second]) == {first.id, second.id}
    earlier, later = sorted([first, second], key=lambda i: i.id)
    assert store.app_history(later, NOW).other_active_incident == earlier.id
    assert store.app_history(earlier, NOW).other_active_incident is None


def test_create_many_skips_existing_and_repeats(db_url: str) -> None:
    store = SqlIncidentStore(db_url)
    a, b = _incident(fp="0a"), _incident(fp="0b")
    assert store.create_many([a]) == {a.id}
    assert store.create_many([a, b, b]) == {b.id}
    assert store.create_many([]) == set()
    assert len(store.recent()) == 2


def test_counts_for_the_incident_gauge(db_url: str) -> None:
    from rollbackbot.metrics import INCIDENTS

    store = SqlIncidentStore(db_url)
    store.create(_incident(fp="01"))
    store.create(_incident(fp="02").with_state(S.suppressed, NOW, "cooldown"))
    store.create(_incident(app="badge-vision", fp="03"))
    assert store.count_by_app_state() == {
        ("docsum-llm", "received"): 1,
        ("docsum-llm", "suppressed"): 1,
        ("badge-vision", "received"): 1,
    }
    INCIDENTS.count = store.count_by_app_state
    try:
        samples = {tuple(s.labels.values()): s.value for m in INCIDENTS.collect() for s in m.samples}
    finally:
        INCIDENTS.count = None
    assert samples[("docsum-llm", "suppressed")] == 1


def test_resolution_survives_a_concurrent_step(db_url: str) -> None:
    store = SqlIncidentStore(db_url)
    inc = _incident().with_state(S.rolling_back, NOW)
    store.create(inc)
    in_flight = store.get(inc.id)  # a worker read it, then works for a while
    assert in_flight is not None
    assert store.mark_resolved(inc.id, NOW + timedelta(minutes=1)) is True
    assert store.mark_resolved(inc.id, NOW + timedelta(minutes=2)) is False  # first resolution wins
    store.save(in_flight.with_state(S.syncing, NOW), S.rolling_back)  # its save knows nothing of it
    stored = store.get(inc.id)
    assert stored is not None and stored.state is S.syncing
    assert stored.resolved_at == NOW + timedelta(minutes=1)


def test_unfinished_reads_only_non_terminal_rows_through_an_index(db_url: str) -> None:
    """Resume and the overdue gauge (every scrape) never scan the finished incidents."""
    if not db_url.startswith("sqlite"):
        pytest.skip("reads SQLite's query plan")
    from sqlalchemy import text

    store = SqlIncidentStore(db_url)
    open_one = _incident(fp="open")
    done = _incident(fp="done")
    store.create_many([open_one, done])
    store.save(done.with_state(IncidentState.suppressed, NOW, "cooldown"), IncidentState.received)
    assert [i.id for i in store.unfinished()] == [open_one.id]
    with store.engine.connect() as conn:
        statement = "SELECT record FROM incidents WHERE state IN ('received', 'syncing') ORDER BY created_at"
        plan = " ".join(str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {statement}")))
    assert "ix_incidents_state_created" in plan and "SCAN incidents" not in plan, plan


def test_an_existing_database_gets_the_new_index(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    store = SqlIncidentStore(f"sqlite:///{path}")
    store.create(_incident())
    store.engine.dispose()
    with sqlite3.connect(path) as conn:  # as a database made before the index (and migrations) existed
        conn.execute("DROP INDEX ix_incidents_state_created")
        conn.execute("DROP INDEX ux_incidents_one_acting_per_app")
        conn.execute("DROP TABLE alembic_version")
    SqlIncidentStore(f"sqlite:///{path}").engine.dispose()
    with sqlite3.connect(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('index', 'table')")}
    assert {"ix_incidents_state_created", "ux_incidents_one_acting_per_app", "alembic_version"} <= names


def test_the_migrated_schema_is_the_one_the_code_reads(db_url: str) -> None:
    """Alembic's own comparison: the migrations and the tables the code declares describe the same schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import MetaData

    from rollbackbot.adapters.slack.store import incident_messages
    from rollbackbot.adapters.store.schema import metadata

    declared = MetaData()
    for table in [*metadata.tables.values(), incident_messages]:
        table.to_metadata(declared)
    store = SqlIncidentStore(db_url)
    with store.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), declared)
    assert [d for d in differences if not (d[0] == "remove_table" and d[1].name == "alembic_version")] == []
