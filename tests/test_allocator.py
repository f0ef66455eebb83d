"""``rollbackbot serve`` caps glibc's malloc arenas before it starts threads (rollbackbot/allocator.py).

Checked in a child process, with glibc's own report (``malloc_stats`` prints one block per arena):
eight threads allocating at once get arenas of their own unless the cap is set.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rollbackbot.allocator import _glibc

CHILD = """
import ctypes, sys, threading
from rollbackbot.allocator import limit_arenas, _glibc
if sys.argv[1] == "capped":
    print(limit_arenas(2), flush=True)
libc = _glibc()
libc.malloc.restype = ctypes.c_void_p
barrier = threading.Barrier(8)
held = []
def work():
    barrier.wait()
    for _ in range(200):
        held.append(libc.malloc(4096))
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
libc.malloc_stats()
"""

pytestmark = pytest.mark.skipif(_glibc() is None, reason="glibc's allocator only")


def _arenas(mode: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=60, env=clean, check=True
    )
    return done.stdout.strip(), done.stderr.count("Arena ")


def test_threads_get_arenas_of_their_own_without_the_cap() -> None:
    assert _arenas("default")[1] > 2


def test_the_cap_holds_every_thread_to_two_arenas() -> None:
    answer, arenas = _arenas("capped")
    assert answer == "True"
    assert arenas <= 2


def test_malloc_arena_max_in_the_environment_wins() -> None:
    answer, arenas = _arenas("capped", MALLOC_ARENA_MAX="1")
    assert answer == "False"  # not overridden
    assert arenas == 1
