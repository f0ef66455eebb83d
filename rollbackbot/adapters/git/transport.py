"""Talking to the GitOps remote: "stalled" ends a git process, "slow" never does.

A large repository's first clone can take minutes, so there is no short wall-clock timeout.
Instead each transport gets a stall detector:

- http(s): curl's own ``http.lowSpeedLimit``/``http.lowSpeedTime`` (below 1 byte/s for the
  stall time aborts the transfer);
- ssh: ``ServerAliveInterval``/``ServerAliveCountMax``, so a dead peer ends the connection;
- everything else (``file://``, ``git://``, local paths): a progress watchdog here. git runs
  with ``--progress`` and the process is killed when neither stdout nor stderr has moved for
  ``stall_seconds``.

A generous overall ceiling (``ceiling_seconds``) bounds every transport. Settings:
``ROLLBACKBOT_GIT_STALL_SECONDS`` (30) and ``ROLLBACKBOT_GIT_NETWORK_CEILING_SECONDS`` (1800).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

STALL_SECONDS = 30.0
CEILING_SECONDS = 1800.0
_READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class NetworkLimits:
    """When a git process talking to the remote is given up: stalled, or over the ceiling."""

    stall_seconds: float = STALL_SECONDS
    ceiling_seconds: float = CEILING_SECONDS


def transport_of(url: str) -> str:
    """``http``, ``ssh`` or ``other`` for a git remote URL (scp-like ``host:path`` is ssh)."""
    scheme, sep, _ = url.partition("://")
    if sep:
        scheme = scheme.lower()
        if scheme in ("http", "https"):
            return "http"
        return "ssh" if scheme in ("ssh", "git+ssh", "ssh+git") else "other"
    host, colon, _ = url.partition(":")
    return "ssh" if colon and "/" not in host and not Path(url).exists() else "other"


def network_environment(limits: NetworkLimits, inherited_ssh: str | None) -> dict[str, str]:
    """Environment for every git process: no prompts, curl low-speed abort, ssh keep-alives."""
    stall = max(1, round(limits.stall_seconds))
    alive = max(1, stall // 3)
    ssh = inherited_ssh or (
        f"ssh -o BatchMode=yes -o ConnectTimeout={stall} -o ServerAliveInterval={alive} -o ServerAliveCountMax=3"
    )
    return {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_SSH_COMMAND": ssh,
        "GIT_HTTP_LOW_SPEED_LIMIT": "1",
        "GIT_HTTP_LOW_SPEED_TIME": str(stall),
    }


@dataclass(frozen=True)
class Watched:
    """How a watched process ended: its exit status and output, or why it was killed."""

    status: int
    stdout: bytes
    stderr: str
    killed: str | None = None  # "stalled for 30s" / "still running after 1800s"


class _Activity:
    """The last time any output arrived, shared by the reader threads and the watchdog."""

    def __init__(self, streams: int) -> None:
        self.changed = threading.Condition()
        self.last = time.monotonic()
        self.open_streams = streams

    def touch(self) -> None:
        with self.changed:
            self.last = time.monotonic()
            self.changed.notify_all()


def _pump(stream: IO[bytes], into: bytearray, activity: _Activity) -> None:
    while chunk := os.read(stream.fileno(), _READ_CHUNK):
        into += chunk
        activity.touch()
    with activity.changed:
        activity.open_streams -= 1
        activity.changed.notify_all()


def run_watched(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    limits: NetworkLimits,
    watch_progress: bool,
) -> Watched:
    """Run ``args``; kill it when silent for ``stall_seconds`` (if watched) or past the ceiling."""
    proc = subprocess.Popen(
        list(args), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    activity = _Activity(streams=2)
    out, err = bytearray(), bytearray()
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, out, activity), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, err, activity), daemon=True),
    ]
    for reader in readers:
        reader.start()
    killed = _watch(proc, activity, limits, watch_progress)
    try:
        proc.wait(timeout=limits.stall_seconds)  # both pipes closed: the process is exiting
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for reader in readers:
        reader.join()
    proc.stdout.close()
    proc.stderr.close()
    return Watched(proc.returncode, bytes(out), err.decode("utf-8", "replace"), killed)


def _watch(proc: subprocess.Popen[bytes], activity: _Activity, limits: NetworkLimits, progress: bool) -> str | None:
    """Wait for ``proc``, waking on output; kill it and say why when it stalls or runs too long."""
    started = time.monotonic()
    with activity.changed:
        while activity.open_streams and proc.poll() is None:
            now = time.monotonic()
            if progress and now - activity.last >= limits.stall_seconds:
                proc.kill()
                return f"no progress for {limits.stall_seconds:g}s (stalled)"
            if now - started >= limits.ceiling_seconds:
                proc.kill()
                return f"still running after {limits.ceiling_seconds:g}s"
            deadline = min(
                activity.last + limits.stall_seconds if progress else now + 1.0, started + limits.ceiling_seconds
            )
            activity.changed.wait(timeout=min(max(deadline - now, 0.01), 0.5))
    return None
