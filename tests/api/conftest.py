"""Shared helpers of the HTTP tests: watching for child processes (git) spawned while a request runs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_watching: list[list[str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "subprocess.Popen" and _watching:
        _watching[-1].append(str(args[0]))  # the executable being started


sys.addaudithook(_audit)  # audit hooks cannot be removed; it only records while a test watches


@contextmanager
def processes_spawned() -> Iterator[list[str]]:
    """Collect every program started (subprocess.Popen, GitPython included) inside the block."""
    seen: list[str] = []
    _watching.append(seen)
    try:
        yield seen
    finally:
        _watching.remove(seen)
