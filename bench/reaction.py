"""Reaction time: alert sent -> rollback commit pushed, for the service and for the shell floor.

The service is measured from its incident events (``GET /api/incidents/{id}``): the ``syncing``
event is stamped right after the push returned. Incidents run one at a time, each waited out to
``rolled_back`` so the previous sync does not overlap the next measurement; after each, the floor
script does the same rollback of the same app on its own copy of the repository.
"""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.repo import BRANCH, app_name, platform_commit
from bench.stack import HEADERS, REACTION_ALERT, BenchError
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.gitops import run_git

FLOOR_SCRIPT = Path(__file__).resolve().parent / "floor.sh"
REACTION_APPS = [app_name(i) for i in range(5, 200, 10)]  # 20 apps spread over the repository
WARMUP_APP = app_name(0)
TERMINAL = {"suppressed", "rejected", "expired", "rolled_back", "failed", "notified"}


@dataclass
class ServiceRun:
    """One incident's timings in milliseconds."""

    app: str
    incident: str
    send_to_pushed: float  # client send -> `syncing` event (commit pushed): the headline figure
    received_to_pushed: float  # `received` event -> `syncing` event
    answer: float  # webhook round trip seen by the client
    to_rolling_back: float  # received -> rolling_back (decide, plan: fetch, tags, verify; evidence)
    commit_push: float  # rolling_back -> syncing (fetch, commit, push)
    pushed_to_healthy: float  # syncing -> rolled_back (Argo CD sync, informational)
    events: list[tuple[float, str, str]] = field(default_factory=list)  # ms after `received`, state, detail
    git_steps: dict[str, float] = field(default_factory=dict)  # the git adapter's own per-step timings (ms)


@dataclass
class FloorRun:
    app: str
    total: float  # wall time of `bash floor.sh`, milliseconds
    steps: dict[str, float] = field(default_factory=dict)


def _at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()


def _webhook(labels: dict[str, str], started: datetime, ended: datetime | None = None) -> bytes:
    fired = alert(labels, started, ends_at=ended, annotations={"summary": "refusal rate down 60%"})
    return json.dumps(notification([fired])).encode()


async def _wait_terminal(client: httpx.AsyncClient, incident_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        incident: dict[str, Any] = (await client.get(f"/api/incidents/{incident_id}")).json()
        if incident.get("state") in TERMINAL:
            return incident
        await asyncio.sleep(0.05)
    raise BenchError(f"incident {incident_id} not finished after {timeout:.0f}s")


async def _resolve(client: httpx.AsyncClient, incident: dict[str, Any], body: bytes) -> None:
    """Send the alert's resolution, as Alertmanager does once the rollback cured the model.

    A rolled-back incident waits out its verification window (``verify.within``) in one of the
    service's worker slots; the resolution ends that wait, so the next incident gets a slot.
    """
    answer = await client.post("/webhook/alertmanager", content=body, headers=HEADERS)
    if answer.status_code != 202:
        raise BenchError(f"resolution of {incident['id']} answered {answer.status_code}: {answer.text[:200]}")
    if "verification" not in incident:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (await client.get(f"/api/incidents/{incident['id']}")).json().get("verification"):
            return
        await asyncio.sleep(0.02)
    raise BenchError(f"incident {incident['id']} did not take its alert's resolution")


async def service_incident(client: httpx.AsyncClient, app: str) -> ServiceRun:
    """Fire one reaction alert for ``app`` and time it from the incident's events."""
    labels = {"alertname": REACTION_ALERT, "app": app, "severity": "critical", "namespace": "ml-prod"}
    started = datetime.now(UTC) - timedelta(minutes=2)
    sent = time.time()
    answer = await client.post("/webhook/alertmanager", content=_webhook(labels, started), headers=HEADERS)
    answered = time.time()
    if answer.status_code != 202:
        raise BenchError(f"webhook for {app} answered {answer.status_code}: {answer.text[:200]}")
    ids = answer.json().get("incidents") or []
    if len(ids) != 1:
        raise BenchError(f"webhook for {app} opened {ids!r}, expected one incident (do the bench policies load?)")
    incident_id = ids[0]
    incident = await _wait_terminal(client, incident_id)
    if incident["state"] != "rolled_back":
        raise BenchError(f"incident {incident_id} of {app} ended {incident['state']}: {incident['reason']}")
    await _resolve(client, incident, _webhook(labels, started, datetime.now(UTC)))
    first: dict[str, float] = {}
    for event in incident["events"]:
        first.setdefault(event["state"], _at(event))
    received, rolling, pushed, healthy = (first[s] for s in ("received", "rolling_back", "syncing", "rolled_back"))
    timeline = [(round(1000 * (_at(e) - received), 1), e["state"], e["detail"][:80]) for e in incident["events"]]
    return ServiceRun(
        app=app,
        incident=incident_id,
        send_to_pushed=1000 * (pushed - sent),
        received_to_pushed=1000 * (pushed - received),
        answer=1000 * (answered - sent),
        to_rolling_back=1000 * (rolling - received),
        commit_push=1000 * (pushed - rolling),
        pushed_to_healthy=1000 * (healthy - pushed),
        events=timeline,
    )


def service_steps(log: Path) -> dict[str, dict[str, float]]:
    """Incident id -> the git adapter's per-step timings (ms), from its "rollback planned" and
    "rollback commit pushed" log lines (``timings_ms``) in the service's JSON log."""
    steps: dict[str, dict[str, float]] = {}
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{") or '"timings_ms"' not in line:
            continue
        record = json.loads(line)
        incident, timings = record.get("incident_id"), record["timings_ms"]
        if isinstance(timings, str):  # the JSON formatter writes extra fields it cannot encode as their str()
            timings = ast.literal_eval(timings)
        if incident:
            steps.setdefault(incident, {}).update(timings)
    return steps


def floor_clone(remote: Path, dest: Path) -> Path:
    """The floor's own bare clone of ``remote`` (like the service's, made before timing starts)."""
    run_git(["clone", "--bare", "--quiet", remote.resolve().as_uri(), str(dest)], dest.parent)
    run_git(["pack-refs", "--all"], dest)
    return dest


def floor_run(local: Path, app: str, signers: Path) -> FloorRun:
    """``bash bench/floor.sh`` for one app; wall time and the script's own step breakdown."""
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", str(FLOOR_SCRIPT), str(local), app, str(signers), BRANCH],
        capture_output=True,
        text=True,
        check=False,
    )
    total = 1000 * (time.perf_counter() - started)
    if done.returncode != 0:
        raise BenchError(f"floor.sh {app} exited {done.returncode}: {done.stderr.strip()[-400:]}")
    steps = {}
    for line in done.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "step":
            name, micros = rest.split()
            steps[name] = int(micros) / 1000
    return FloorRun(app, total, steps)


@dataclass
class ReactionResult:
    """(service, floor) per app; the first pair is the warm-up, not counted."""

    pairs: list[tuple[ServiceRun, FloorRun]]

    @property
    def service(self) -> list[ServiceRun]:
        return [s for s, _ in self.pairs[1:]]

    @property
    def floor(self) -> list[FloorRun]:
        return [f for _, f in self.pairs[1:]]


async def run_reaction(url: str, remotes: tuple[Path, Path], floor_git_dir: Path, signers: Path) -> ReactionResult:
    """A warm-up incident (not counted), then 20 incidents, each followed by the floor on that app.

    Before each alert a platform-team commit lands on both remotes (service's, floor's), as in a
    busy GitOps repository: both then fetch a moved branch. It also keeps the branch head from
    being a rollback commit, which would turn the next auto rollback into a proposal.
    """
    runs: list[tuple[ServiceRun, FloorRun]] = []
    auth = {"Authorization": HEADERS["Authorization"]}  # the incident API wants the token too
    async with httpx.AsyncClient(base_url=url, timeout=30.0, headers=auth) as client:
        for number, app in enumerate([WARMUP_APP, *REACTION_APPS]):
            for remote in remotes:
                platform_commit(remote, number)
            measured = await service_incident(client, app)
            runs.append((measured, await asyncio.to_thread(floor_run, floor_git_dir, app, signers)))
    return ReactionResult(runs)
