"""The SQL store under outages and damage: StoreUnavailable while locked, ConfigError for a file that is no database."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.core.decide import OtherIncident
from rollbackbot.core.incidents import AlertRef, Incident, IncidentState, new_incident
from rollbackbot.errors import ConfigError, StoreUnavailable

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
S = IncidentState


def _incident(fp: str, at: datetime = NOW) -> Incident:
    alert = AlertRef("PromptInjectionSpike", fp, at - timedelta(minutes=1), {"app": "docsum-llm"})
    return new_incident(app="docsum-llm", policy="p", mode="auto", alert=alert, target={}, now=at)


def test_a_file_that_is_no_database_stops_start_up_naming_it(tmp_path: Path) -> None:
    database = tmp_path / "state.db"
    database.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(ConfigError) as raised:
        SqlIncidentStore(f"sqlite:///{database}")
    assert str(database) in str(raised.value) and "move the file aside" in str(raised.value)


def test_a_locked_database_is_store_unavailable_without_sql_or_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rollbackbot.adapters.store_sql.BUSY_TIMEOUT_MS", 50)
    store = SqlIncidentStore(f"sqlite:///{tmp_path}/state.db")
    incident = _incident("aa")
    store.create(incident)
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable) as raised:
            store.save(incident.with_event(NOW, "x"), S.received)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert str(raised.value) == "incident store unavailable: OperationalError: database is locked"
    store.save(incident.with_event(NOW, "x"), S.received)  # back: the same store object works again
    assert store.get(incident.id).version == 1  # type: ignore[union-attr]


def test_app_history_tells_waiting_from_acting_incidents(tmp_path: Path) -> None:
    store = SqlIncidentStore(f"sqlite:///{tmp_path}/state.db")
    waiting = _incident("aa").with_not_before(NOW + timedelta(seconds=60))
    acting = _incident("bb", NOW + timedelta(seconds=1)).with_state(S.rolling_back, NOW, "go")
    mine = _incident("cc", NOW + timedelta(seconds=2))
    for incident in (waiting, acting, mine):
        store.create(incident)
    history = store.app_history(mine, NOW - timedelta(hours=1))
    assert history.others == (
        OtherIncident(waiting.id, opened_before=True, waiting_until=NOW + timedelta(seconds=60), acting=False),
        OtherIncident(acting.id, opened_before=True, waiting_until=None, acting=True),
    )
    assert history.other_active_incident == waiting.id  # the oldest unfinished one, as before
