"""Writers to one SQLite file in this process take turns on a lock before SQLite's own.

SQLite has one write lock per file. A connection that finds it taken does not wait for its release:
its busy handler sleeps 1, 2, 5, 10, 15, 20 ms … between tries, so a writer can sleep 30–50 ms
behind a holder that needed 2, and a thread writing back to back (the inbox drainer inserting a
storm's incidents) takes the lock again before the sleeper looks. Measured in the ingest bench:
incident saves on the event loop waited 9, 18, 33 and 54 ms, the busy handler's sums.

Here every connection of the process to the same file takes one ``threading.Lock`` before the
statement that begins its write transaction and gives it back when the transaction ends (commit,
rollback, close, or a statement that failed before it began one). A waiting thread is woken the
moment the holder is done. SQLite's busy handler still arbitrates between processes (a CLI
``rollbackbot rollback`` beside ``serve``, a second replica on the same file); a turn not granted
within the busy timeout is not an error here: the statement goes on and SQLite decides.

Only file databases take turns (``make_engine`` passes ``TurnTakingConnection`` as the
``sqlite3.connect`` factory); ``:memory:`` databases are private to their connection.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")

_turns: dict[str, threading.Lock] = {}
_turns_guard = threading.Lock()


def turn_for(database: str) -> threading.Lock:
    """The process-wide writer lock of one database file."""
    key = os.path.realpath(database)
    with _turns_guard:
        return _turns.setdefault(key, threading.Lock())


def _begins_write(sql: str) -> bool:
    """Whether the statement makes Python's sqlite3 begin a write transaction (its legacy implicit BEGIN)."""
    head = sql.lstrip()[:8].upper()
    return head.startswith(_WRITES) or head.startswith("BEGIN")


class TurnTakingConnection(sqlite3.Connection):
    """A ``sqlite3.Connection`` that holds its file's turn from its first write to the transaction's end."""

    wait_seconds = 5.0  # then let SQLite's busy handler decide (another process may hold the file)

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._turn = turn_for(os.fsdecode(database))
        self._holding = False

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or TurnTakingCursor)

    def take_turn(self, sql: str) -> None:
        if not self._holding and not self.in_transaction and _begins_write(sql):
            self._holding = self._turn.acquire(timeout=self.wait_seconds)

    def give_back_unless_writing(self) -> None:
        if self._holding and not self.in_transaction:
            self._holding = False
            self._turn.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.give_back_unless_writing()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.give_back_unless_writing()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._holding:
                self._holding = False
                self._turn.release()


class TurnTakingCursor(sqlite3.Cursor):
    connection: TurnTakingConnection

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        self.connection.take_turn(sql)
        try:
            return super().execute(sql, parameters)
        finally:
            self.connection.give_back_unless_writing()

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any:
        self.connection.take_turn(sql)
        try:
            return super().executemany(sql, seq_of_parameters)
        finally:
            self.connection.give_back_unless_writing()
