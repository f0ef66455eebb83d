"""The processes under test: the fake Argo CD and ``rollbackbot serve``, on loopback only.

Both are started through ``rollbackbot.procs`` exactly as the demo and the end-to-end tests
start them. The bench writes its own policies: one ``mode: auto`` policy for the reaction
alerts and one ``mode: notify`` policy for the ingest alerts, both templated on ``${labels.app}``.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.repo import BRANCH
from rollbackbot import procs

WEBHOOK_TOKEN = "bench-webhook-token-0123456789abcdef"
ARGOCD_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwcm9qOm1sLXByb2Q6cm9sbGJhY2tib3QifQ.YmVuY2g"
HEADERS = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
REACTION_ALERT = "ModelRefusalRateDrop"
INGEST_ALERT_PREFIX = "BenchIngest"
INGEST_POLICY = "bench-ingest"

_TARGET = """\
  target:
    argocdApps: ["${labels.app}"]
    project: ml-prod
    paths: ["apps/${labels.app}"]
    tags: "${labels.app}/v*"
    requireTrailers: [Model-Digest, Data-Version]
"""
# Reaction: roll back at once, every time (no debounce, cooldown or budget in the way).
AUTO_POLICY = f"""\
apiVersion: rollbackbot/v1
kind: RollbackPolicy
metadata: {{name: bench-auto}}
spec:
  matchers: ['alertname = "{REACTION_ALERT}"', 'app =~ "model-[0-9]+"']
{_TARGET}  mode: auto
  debounce: 0s
  cooldown: 0s
  budget: {{max: 1000, per: 24h}}
  sync: {{timeout: 1m, prune: true}}
  forensics: {{budget: 5s}}
"""
# Ingest: every alert opens its incident, which is decided (store reads and writes) and ends
# `notified` (or `suppressed` as a duplicate of the app's open incident) without touching git.
NOTIFY_POLICY = f"""\
apiVersion: rollbackbot/v1
kind: RollbackPolicy
metadata: {{name: {INGEST_POLICY}}}
spec:
  matchers: ['alertname =~ "{INGEST_ALERT_PREFIX}.+"', 'app =~ "model-[0-9]+"']
{_TARGET}  mode: notify
"""


class BenchError(RuntimeError):
    """The harness could not measure (a process died, an incident did not roll back, a count is off)."""


def write_policies(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "10-bench-auto.yaml").write_text(AUTO_POLICY)
    (directory / "20-bench-ingest.yaml").write_text(NOTIFY_POLICY)
    return directory


def write_argocd_config(path: Path, remote: Path, apps: list[str]) -> Path:
    """The fake's config: only the apps that get rolled back (its controller ticks over each)."""
    config = {
        "token": ARGOCD_TOKEN,
        "subject": "proj:ml-prod:rollbackbot",
        "repo": str(remote),
        "branch": BRANCH,
        "apps": [{"name": app, "project": "ml-prod", "path": f"apps/{app}"} for app in apps],
    }
    path.write_text(json.dumps(config))
    return path


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


@dataclass
class RssSampler:
    """Polls VmRSS of one process every ``interval`` seconds in a thread; peak per labelled phase."""

    pid: int
    interval: float = 0.02
    phase: str = "startup"
    peaks: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = rss_kib(self.pid)["VmRSS"]
            except (OSError, KeyError):
                return
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


@dataclass
class Stack:
    """A running fake Argo CD and service."""

    url: str
    argocd_url: str
    pid: int
    database: Path | str  # the SQLite file, or the PostgreSQL URL
    log: Path
    ready_seconds: float


def start_stack(
    stack: ExitStack, work: Path, remote: Path, signers: Path, apps: list[str], *, database_url: str | None = None
) -> Stack:
    """Start both processes (stopped when ``stack`` closes); returns once ``/readyz`` answers 200."""
    log_path = work / "processes.log"
    log = stack.enter_context(open(log_path, "wb"))
    config = write_argocd_config(work / "argocd.json", remote, apps)
    argo, argo_url = procs.start_fake_argocd(config, log)
    stack.callback(procs.stop, argo)
    state = work / "state"
    env = {
        "ROLLBACKBOT_GIT_URL": remote.resolve().as_uri(),
        "ROLLBACKBOT_GIT_BRANCH": BRANCH,
        "ROLLBACKBOT_GIT_WORKDIR": str(state / "repo"),
        "ROLLBACKBOT_GIT_ALLOWED_SIGNERS": str(signers),
        "ROLLBACKBOT_POLICIES": str(write_policies(work / "policies")),
        "ROLLBACKBOT_ARGOCD_URL": argo_url,
        "ROLLBACKBOT_ARGOCD_TOKEN": ARGOCD_TOKEN,
        "ROLLBACKBOT_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "ROLLBACKBOT_DATABASE_URL": database_url or f"sqlite:///{state}/state.db",
        "ROLLBACKBOT_EVIDENCE_URL": f"file://{state}/evidence",
        # Every app of the repository is guarded, so the scheduled readiness run checks them all.
        "ROLLBACKBOT_READINESS_MAX_TEMPLATED_APPS": "500",
    }
    port = procs.free_port()
    started = time.monotonic()
    service = procs.start_service(env, port, log, cwd=work)
    stack.callback(procs.stop, service)
    url = f"http://127.0.0.1:{port}"
    procs.wait_ready(f"{url}/readyz", service, timeout=120)
    database = database_url or state / "state.db"
    return Stack(url, argo_url, service.pid, database, log_path, time.monotonic() - started)


def wait_for_first_readiness(url: str, timeout: float = 300.0) -> float:
    """Seconds until the service's first scheduled readiness run has ended (``checked_at`` set).

    A service that has been up for a while has run it; measuring before it ends would time the
    start-up's background work (plans and signature checks of every guarded app) as well.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        answer = httpx.get(f"{url}/api/readiness", headers=HEADERS, timeout=10.0)
        if answer.status_code == 200 and answer.json().get("checked_at"):
            return time.monotonic() - started
        time.sleep(0.5)
    raise BenchError(f"the first readiness run did not end within {timeout:.0f}s")
