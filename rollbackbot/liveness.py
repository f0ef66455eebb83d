"""Liveness of the process's own state: the SQLite file it writes must still be the one on disk.

If the state directory is deleted (or the database file replaced) while the service runs, SQLite
keeps writing to the unlinked file and every incident recorded from then on is lost at the next
restart. ``StateFileCheck`` notices and ``/healthz`` answers 503, so Kubernetes restarts the pod
(which then opens, or creates, the database at its configured path) instead of the service
answering 202 for alerts it will forget.
"""

from __future__ import annotations

import os
from pathlib import Path


def sqlite_path(database_url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL; None for in-memory or other databases."""
    if not database_url.startswith("sqlite:///") or database_url.startswith("sqlite:///:memory:"):
        return None
    return Path(database_url.removeprefix("sqlite:///").split("?", 1)[0]).expanduser()


class StateFileCheck:
    """Remembers which file the database is at start; a problem once it is gone or replaced."""

    def __init__(self, database_url: str) -> None:
        self.path = sqlite_path(database_url)
        self._identity = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_dev, info.st_ino)

    def __call__(self) -> str | None:
        """None while the database file is the one opened at start; else what happened to it."""
        if self.path is None or self._identity is None:
            return None
        now = self._stat()
        if now is None:
            return f"state database {self.path} is gone (was its directory removed?); restart to recreate it"
        if now != self._identity:
            return f"state database {self.path} was replaced on disk; restart to open the new file"
        return None
