"""Starting rollbackbot's own processes on loopback: used by the demo and the end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_announced(args: list[str], log: IO[bytes], name: str) -> tuple[subprocess.Popen[bytes], str]:
    """Run a fake that prints ``... listening on URL`` once ready; return the process and the URL."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if "listening on " not in line:
        proc.kill()
        raise RuntimeError(f"{name} did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[-1]


def start_fake_argocd(config_file: Path, log: IO[bytes]) -> tuple[subprocess.Popen[bytes], str]:
    """Run the fake Argo CD API server as its own process; return it and its base URL."""
    args = [sys.executable, "-m", "rollbackbot.testing.argocd", "--config", str(config_file), "--port", "0"]
    return start_announced(args, log, "fake Argo CD")


def service_env(
    *,
    git_url: str,
    allowed_signers: Path,
    policies: Path,
    argocd_url: str,
    argocd_token: str,
    webhook_token: str,
    state: Path,
    branch: str = "main",
    readiness_interval: float = 0,
) -> dict[str, str]:
    """ROLLBACKBOT_* settings for a service process keeping its clone, database and evidence in ``state``.

    The readiness schedule is off unless ``readiness_interval`` is given: its Argo CD reads would take
    the stand-in's injected faults (``failNext``) meant for an incident.
    """
    return {
        "ROLLBACKBOT_GIT_URL": git_url,
        "ROLLBACKBOT_GIT_BRANCH": branch,
        "ROLLBACKBOT_GIT_WORKDIR": str(state / "repo"),
        "ROLLBACKBOT_GIT_ALLOWED_SIGNERS": str(allowed_signers),
        "ROLLBACKBOT_POLICIES": str(policies),
        "ROLLBACKBOT_ARGOCD_URL": argocd_url,
        "ROLLBACKBOT_ARGOCD_TOKEN": argocd_token,
        "ROLLBACKBOT_WEBHOOK_TOKEN": webhook_token,
        "ROLLBACKBOT_DATABASE_URL": f"sqlite:///{state}/state.db",
        "ROLLBACKBOT_EVIDENCE_URL": f"file://{state}/evidence",
        "ROLLBACKBOT_READINESS_INTERVAL_SECONDS": f"{readiness_interval:g}",
    }


def start_service(env: dict[str, str], port: int, log: IO[bytes], cwd: Path) -> subprocess.Popen[bytes]:
    """Run ``rollbackbot serve`` as its own process with the given ROLLBACKBOT_* environment."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLBACKBOT_")} | env
    return subprocess.Popen(
        [sys.executable, "-m", "rollbackbot", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers 200, failing early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout:.0f}s")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate politely, then kill."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
