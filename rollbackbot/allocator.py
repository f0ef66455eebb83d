"""glibc's allocator, kept small for a process with a few busy threads.

glibc gives each thread that allocates while another holds the main arena an arena of its own, up
to eight per CPU, and memory freed in one arena is not reused by another. ``rollbackbot serve``
allocates in several threads at once (the event loop, the inbox writer and drainer, git and store
helpers): in the ingest bench an alert storm left 50–90 MB of high water spread over a dozen
arenas, most of it free. Two arenas hold the same work: peak RSS 180–200 → 135 MB, with no
slower answers (bench/README.md, "Memory").

``MALLOC_ARENA_MAX`` in the environment wins (glibc reads it at start); on other C libraries
(musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("rollbackbot.allocator")

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's arenas for the threads started from now on; True when the cap was set here."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    libc = _glibc()
    if libc is None or libc.mallopt(_M_ARENA_MAX, arenas) != 1:
        return False
    log.debug("malloc arenas capped", extra={"arenas": arenas})
    return True
