"""Writers of one process to one SQLite file take turns on a lock, not SQLite's sleeping busy handler.

SQLite's busy handler sleeps 1, 2, 5, 10 ms … between tries: a writer waiting behind a short
transaction slept tens of milliseconds (the incident saves on the event loop, behind the inbox
drainer's inserts). With ``busy_timeout=0`` a connection that finds the lock taken fails at once,
so these tests show who waits where: on the turn, the second writer simply goes after the first.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from rollbackbot.adapters.store.turns import TurnTakingConnection, turn_for
from rollbackbot.adapters.store_sql import make_engine


def _connect(path: Path, factory: type[sqlite3.Connection]) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=0, check_same_thread=False, factory=factory)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    return path


def _second_writer_while_first_holds(
    database: Path, factory: type[sqlite3.Connection], end_first: Callable[[sqlite3.Connection], None]
) -> list[BaseException]:
    """Thread 1 writes and holds its transaction; thread 2 writes meanwhile; thread 1 ends it."""
    first, second = _connect(database, factory), _connect(database, factory)
    first.cursor().execute("INSERT INTO t (v) VALUES ('first')")
    errors: list[BaseException] = []
    started = threading.Event()

    def write() -> None:
        started.set()
        try:
            second.cursor().execute("INSERT INTO t (v) VALUES ('second')")
            second.commit()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    started.wait()
    thread.join(0.2)  # the second writer is waiting now (or has failed)
    end_first(first)
    thread.join(5)
    assert not thread.is_alive()
    first.close(), second.close()
    return errors


def _rows(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        return [v for (v,) in conn.execute("SELECT v FROM t ORDER BY id")]


def test_without_turns_the_second_writer_meets_the_lock(database: Path) -> None:
    errors = _second_writer_while_first_holds(database, sqlite3.Connection, lambda c: c.commit())
    assert [type(e) for e in errors] == [sqlite3.OperationalError]  # "database is locked", at once


@pytest.mark.parametrize(
    "end", [lambda c: c.commit(), lambda c: c.rollback(), lambda c: c.close()], ids=["commit", "rollback", "close"]
)
def test_the_second_writer_waits_for_the_turn_and_goes_on(database: Path, end: Callable[..., None]) -> None:
    errors = _second_writer_while_first_holds(database, TurnTakingConnection, end)
    assert errors == []
    assert _rows(database)[-1] == "second"


def test_a_failed_first_write_gives_the_turn_back(database: Path) -> None:
    conn = _connect(database, TurnTakingConnection)
    with pytest.raises(sqlite3.OperationalError):
        conn.cursor().execute("INSERT INTO missing (v) VALUES (1)")  # fails before any transaction began
    assert not turn_for(str(database)).locked()  # else every other writer would wait out its timeout
    conn.cursor().execute("INSERT INTO t (v) VALUES ('after')")
    assert turn_for(str(database)).locked()
    conn.commit()
    assert not turn_for(str(database)).locked()
    assert _rows(database) == ["after"]


def test_readers_do_not_wait_for_a_writer(database: Path) -> None:
    writer, reader = _connect(database, TurnTakingConnection), _connect(database, TurnTakingConnection)
    writer.cursor().execute("INSERT INTO t (v) VALUES ('uncommitted')")
    done = threading.Event()

    def read() -> None:
        reader.cursor().execute("SELECT COUNT(*) FROM t").fetchone()
        done.set()

    threading.Thread(target=read).start()
    assert done.wait(2)  # WAL: a reader never needs the write lock, nor the turn
    writer.commit()


def test_the_store_engine_takes_turns_on_a_file(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/state.db")
    with engine.connect() as conn:
        assert isinstance(conn.connection.dbapi_connection, TurnTakingConnection)
    memory = make_engine("sqlite:///:memory:")
    with memory.connect() as conn:
        assert not isinstance(conn.connection.dbapi_connection, TurnTakingConnection)
