"""Several ``rollbackbot serve`` processes on one PostgreSQL database: every replica accepts, one executes.

The same alerts reach every replica (as two or more Alertmanagers would deliver them), Slack clicks
land on different replicas, and each incident still gets one evidence capture, one rollback commit,
one Argo CD sync and one Slack message. A replica stopped past its lease is taken over, and its late
write is refused by the fence.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from rollbackbot import procs
from rollbackbot.testing import slack as fake_slack
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.gitops import GitOpsSandbox, build_sandbox
from rollbackbot.testing.postgres import find_bin_dir, postgres_cluster
from tests.e2e.conftest import (
    API_AUTH,
    ARGOCD_TOKEN,
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
    SLACK_USERS,
    WEBHOOK_TOKEN,
    docsum_releases,
    service_env,
    slack_env,
    support_llm_releases,
)

pytestmark = [pytest.mark.e2e, pytest.mark.network]
APPS = [
    {"name": name, "project": "ml-prod", "path": f"apps/{name}"}
    for name in ("docsum-llm", "badge-vision", "badge-vision-features", "support-llm")
]
TERMINAL = {"suppressed", "rejected", "expired", "rolled_back", "failed", "notified"}


@dataclass
class Replicas:
    """N service processes sharing one database, the fake Argo CD and the fake Slack."""

    sandbox: GitOpsSandbox
    env: dict[str, str]
    work: Path
    log: IO[bytes]
    argocd_url: str
    slack_url: str
    ports: list[int]
    procs: list[subprocess.Popen[bytes] | None]

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.ports[n]}"

    def start(self, n: int, **settings: str) -> None:
        env = self.env | {"ROLLBACKBOT_GIT_WORKDIR": str(self.work / f"replica-{n}" / "repo")}
        env |= {"ROLLBACKBOT_REPLICA_NAME": f"replica-{n}"} | settings
        (self.work / f"replica-{n}").mkdir(exist_ok=True)
        self.procs[n] = procs.start_service(env, self.ports[n], self.log, cwd=self.work / f"replica-{n}")
        procs.wait_ready(f"{self.url(n)}/readyz", self.procs[n])  # type: ignore[arg-type]

    def deliver(self, n: int, body: dict[str, Any]) -> list[str]:
        auth = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        answer = httpx.post(f"{self.url(n)}/webhook/alertmanager", json=body, headers=auth, timeout=30)
        assert answer.status_code == 202, answer.text
        return list(answer.json()["incidents"])

    def click(self, n: int, action: str, incident_id: str) -> httpx.Response:
        payload = fake_slack.block_actions(action, incident_id, "U012ABC", user_name="dana.ops")
        body, headers = fake_slack.signed_request(SLACK_SIGNING_SECRET, payload)
        return httpx.post(f"{self.url(n)}/slack/actions", content=body, headers=headers, timeout=10)

    def incident(self, incident_id: str, n: int = 0) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url(n)}/api/incidents/{incident_id}", headers=API_AUTH, timeout=10).json())

    def wait(self, ids: list[str], states: set[str], n: int = 0, timeout: float = 120.0) -> dict[str, dict[str, Any]]:
        deadline, seen = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            seen = {i: self.incident(i, n) for i in ids}
            if all(data.get("state") in states for data in seen.values()):
                return seen
            time.sleep(0.2)
        stuck = {i: d.get("state") for i, d in seen.items() if d.get("state") not in states}
        raise AssertionError(f"not {states} in time: {stuck}\n{self.log_text()[-6000:]}")

    def argocd_syncs(self) -> Counter[str]:
        requests = httpx.get(f"{self.argocd_url}/_fake/requests", timeout=10).json()
        return Counter(
            str(r["path"]).split("/")[-2] for r in requests if r["method"] == "POST" and r["path"].endswith("/sync")
        )

    def slack_posts(self) -> list[dict[str, Any]]:
        calls = httpx.get(f"{self.slack_url}/_fake/calls", timeout=10).json()
        return [c for c in calls if c["method"] == "chat.postMessage" and not c["args"].get("thread_ts")]

    def rollback_commits(self, since: str) -> list[str]:
        """The Rollback-Incident trailer of every commit on the deploy branch after ``since``."""
        out = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.sandbox.remote_path),
                "log",
                "--format=%(trailers:key=Rollback-Incident,valueonly)%x00",
                f"{since}..main",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [chunk.strip() for chunk in out.split("\0") if chunk.strip()]

    def log_text(self) -> str:
        self.log.flush()
        return (self.work / "processes.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def database_cluster() -> Iterator[Any]:
    if find_bin_dir() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL server binaries missing: .ci/run must apt-get install postgresql")
        pytest.skip("PostgreSQL server binaries missing (apt-get install postgresql)")
    with postgres_cluster() as cluster:
        yield cluster


@contextmanager
def replicas(
    tmp_path: Path, cluster: Any, count: int, started: int | None = None, **settings: str
) -> Iterator[Replicas]:
    sandbox = build_sandbox(tmp_path / "gitops", [*docsum_releases(), support_llm_releases()])
    config = tmp_path / "argocd.json"
    config.write_text(
        json.dumps({"token": ARGOCD_TOKEN, "repo": str(sandbox.remote_path), "branch": "main", "apps": APPS})
    )
    database = cluster.create_database(f"replicas_{tmp_path.name[-12:].lower().replace('-', '_')}")
    with open(tmp_path / "processes.log", "wb") as log:
        argo, argo_url = procs.start_fake_argocd(config, log)
        slack, slack_url = fake_slack.start_process(log, token=SLACK_BOT_TOKEN, users=SLACK_USERS)
        env = service_env(sandbox.remote_url, sandbox.allowed_signers, argo_url, tmp_path / "state") | slack_env(
            slack_url
        )
        env |= {"ROLLBACKBOT_DATABASE_URL": database, "ROLLBACKBOT_EVIDENCE_URL": f"file://{tmp_path}/evidence"}
        env |= settings
        group = Replicas(
            sandbox, env, tmp_path, log, argo_url, slack_url, [procs.free_port() for _ in range(count)], [None] * count
        )
        try:
            for n in range(count if started is None else started):
                group.start(n)
            yield group
        finally:
            for proc in group.procs:
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
                procs.stop(proc)
            procs.stop(slack)
            procs.stop(argo)


def _alerts() -> list[dict[str, Any]]:
    """40 firing alerts over three apps, each a distinct alert (its own fingerprint)."""
    started = datetime.now(UTC) - timedelta(minutes=5)  # past badge-vision's 60s debounce
    kinds = [
        ("docsum-llm", "PromptInjectionSpike"),
        ("badge-vision", "ModelFalseNegativeSpike"),
        ("support-llm", "ModelRefusalRateDrop"),
    ]
    return [
        alert({"alertname": name, "app": app, "severity": "critical", "pod": f"p{n}"}, started)
        for n in range(40)
        for app, name in [kinds[n % 3]]
    ]


def test_every_replica_accepts_and_each_incident_is_executed_once(tmp_path: Path, database_cluster: Any) -> None:
    with replicas(tmp_path, database_cluster, 4, started=3) as group:
        head = group.sandbox.head()
        docsum = f"{group.argocd_url}/_fake/apps/docsum-llm/faults"
        httpx.post(docsum, json={"healthOverride": "Progressing"}).raise_for_status()  # its sync waits for us
        bodies = [notification([a]) for a in _alerts()]
        barrier = threading.Barrier(3)

        def alertmanager(n: int) -> list[str]:
            barrier.wait()
            return [i for body in bodies for i in group.deliver(n, body)]

        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(alertmanager, range(3)))
        assert answers[0] == answers[1] == answers[2]  # every replica maps the alerts to the same incidents
        ids = list(dict.fromkeys(answers[0]))
        assert len(ids) == 40

        # A replica starting now resumes every unfinished incident: the ones another replica drives stay its.
        group.wait([i for i in ids if group.incident(i)["app"] == "docsum-llm"], TERMINAL | {"syncing"})
        group.start(3)
        time.sleep(2)
        httpx.post(docsum, json={"healthOverride": None}).raise_for_status()
        proposals = group.wait(ids, TERMINAL | {"awaiting_approval"})
        [proposal] = [i for i, d in proposals.items() if d["state"] == "awaiting_approval"]
        with ThreadPoolExecutor(2) as pool:  # the approver double-clicks, and each click lands on another replica
            clicks = list(pool.map(lambda n: group.click(n, "approve_rollback", proposal), [1, 3]))
        assert [c.status_code for c in clicks] == [200, 200]

        final = group.wait(ids, TERMINAL, n=2)
        by_state = Counter(d["state"] for d in final.values())
        rolled = sorted(i for i, d in final.items() if d["state"] == "rolled_back")
        unexpected = {i: d for i, d in final.items() if d["state"] not in {"rolled_back", "suppressed"}}
        assert by_state == {"rolled_back": 3, "suppressed": 37}, (by_state, unexpected, group.log_text()[-8000:])
        assert {final[i]["app"] for i in rolled} == {"docsum-llm", "badge-vision", "support-llm"}

        # One commit, one sync per Argo CD application, one evidence bundle, one top-level Slack message each.
        assert sorted(group.rollback_commits(head)) == rolled
        assert group.argocd_syncs() == {
            "docsum-llm": 1,
            "badge-vision": 1,
            "badge-vision-features": 1,
            "support-llm": 1,
        }
        assert sorted(p.name for p in (tmp_path / "evidence").iterdir()) == rolled
        for incident_id in rolled:
            events = [e["detail"] for e in final[incident_id]["events"]]
            assert sum(d.startswith("evidence captured") for d in events) == 1, events
            assert sum(d.startswith("approved by") for d in events) == (incident_id == proposal)
        posts = Counter(i for p in group.slack_posts() for i in ids if i in json.dumps(p["args"]))
        assert all(count == 1 for count in posts.values()), posts
        # badge-vision's policy names no Slack channel: its rollback is not posted.
        assert {final[i]["app"] for i in posts if i in rolled} == {"docsum-llm", "support-llm"}
        time.sleep(1.0)  # nothing left to do anywhere: no late duplicate
        assert group.argocd_syncs()["docsum-llm"] == 1 and len(group.rollback_commits(head)) == 3


def _metric(group: Replicas, n: int, name: str) -> float:
    for line in httpx.get(f"{group.url(n)}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_killed_and_a_stopped_replica_are_taken_over_and_the_late_write_is_refused(
    tmp_path: Path, database_cluster: Any
) -> None:
    fast = {"ROLLBACKBOT_LEASE_SECONDS": "3", "ROLLBACKBOT_WATCHDOG_SECONDS": "0.5"}
    with replicas(tmp_path, database_cluster, 3, **fast) as group:
        head = group.sandbox.head()
        for app in (
            "docsum-llm",
            "badge-vision",
        ):  # each app stays Progressing after its sync until we let it be Healthy
            httpx.post(
                f"{group.argocd_url}/_fake/apps/{app}/faults", json={"healthOverride": "Progressing"}
            ).raise_for_status()
        started = datetime.now(UTC) - timedelta(minutes=5)
        labels = [
            {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"},
            {"alertname": "ModelFalseNegativeSpike", "app": "badge-vision", "severity": "critical"},
        ]
        # Replica 0 drives docsum-llm, replica 1 badge-vision: each alert reaches only that one.
        [killed_id] = group.deliver(0, notification([alert(labels[0], started)]))
        [stopped_id] = group.deliver(1, notification([alert(labels[1], started)]))
        group.wait([killed_id, stopped_id], {"syncing"}, n=2, timeout=60)
        status = httpx.get(f"{group.url(2)}/status", headers=API_AUTH, timeout=10).json()
        assert status["replicas"]["leases"] == {killed_id: "replica-0", stopped_id: "replica-1"}, group.log_text()[
            -5000:
        ]

        group.procs[0].send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        group.procs[1].send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # replica 2 takes both over once the leases expire
            owners = httpx.get(f"{group.url(2)}/status", headers=API_AUTH, timeout=10).json()["replicas"]["leases"]
            if owners == {killed_id: "replica-2", stopped_id: "replica-2"}:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no takeover: {owners}\n{group.log_text()[-6000:]}")
        for app in ("docsum-llm", "badge-vision"):
            httpx.post(f"{group.argocd_url}/_fake/apps/{app}/faults", json={"healthOverride": None}).raise_for_status()
        final = group.wait([killed_id, stopped_id], TERMINAL, n=2, timeout=60)
        assert {i: d["state"] for i, d in final.items()} == {killed_id: "rolled_back", stopped_id: "rolled_back"}

        group.procs[1].send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        wait_log = time.monotonic() + 20
        while time.monotonic() < wait_log and _metric(group, 1, "rollbackbot_leases_lost_total") < 1:
            time.sleep(0.2)
        assert _metric(group, 1, "rollbackbot_leases_lost_total") >= 1
        refused = "lease lost while a step ran; its outcome is refused"
        # The woken replica's worker polls Argo CD, sees the app Healthy, and tries to save: the fence refuses.
        while time.monotonic() < wait_log + 20 and refused not in group.log_text():
            time.sleep(0.2)
        assert refused in group.log_text()
        assert _metric(group, 2, "rollbackbot_lease_takeovers_total") == 2

        after = {i: group.incident(i, n=1) for i in (killed_id, stopped_id)}
        for data in after.values():
            details = [e["detail"] for e in data["events"]]
            states = [e["state"] for e in data["events"]]
            moves = [now for before, now in zip([None, *states], states, strict=False) if now != before]
            assert moves == ["received", "rolling_back", "syncing", "rolled_back"], details
            assert sum(d.startswith("evidence captured") for d in details) == 1, details
            assert sum(d.startswith("taken over by replica replica-2") for d in details) == 1, details
        assert sorted(group.rollback_commits(head)) == sorted([killed_id, stopped_id])


def test_postgresql_restarting_mid_run_leaves_no_incident_stuck_or_duplicated(
    tmp_path: Path, database_cluster: Any
) -> None:
    fast = {"ROLLBACKBOT_LEASE_SECONDS": "3", "ROLLBACKBOT_WATCHDOG_SECONDS": "0.5"}
    with replicas(tmp_path, database_cluster, 2, **fast) as group:
        head = group.sandbox.head()
        holds = ("docsum-llm", "badge-vision")
        for app in holds:  # both stay Progressing after their sync while the database goes away
            faults = f"{group.argocd_url}/_fake/apps/{app}/faults"
            httpx.post(faults, json={"healthOverride": "Progressing"}).raise_for_status()
        bodies = [notification([a]) for a in _alerts()[:12]]
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda n: [i for b in bodies for i in group.deliver(n, b)], range(2)))
        ids = list(dict.fromkeys(answers[0]))
        assert answers[0] == answers[1] and len(ids) == 12
        acting = [i for i in ids if group.incident(i)["app"] in holds]
        group.wait(acting, TERMINAL | {"syncing"})

        database_cluster.stop("immediate")  # a crash: every connection dies
        time.sleep(4)  # longer than a lease: heartbeats fail meanwhile, leases run out
        database_cluster.start()
        for app in holds:
            faults = f"{group.argocd_url}/_fake/apps/{app}/faults"
            httpx.post(faults, json={"healthOverride": None}).raise_for_status()

        proposals = group.wait(ids, TERMINAL | {"awaiting_approval"}, timeout=90)
        [proposal] = [i for i, d in proposals.items() if d["state"] == "awaiting_approval"]
        assert group.click(1, "approve_rollback", proposal).status_code == 200
        final = group.wait(ids, TERMINAL, n=1, timeout=90)
        rolled = sorted(i for i, d in final.items() if d["state"] == "rolled_back")
        assert Counter(d["state"] for d in final.values()) == {"rolled_back": 3, "suppressed": 9}
        assert sorted(group.rollback_commits(head)) == rolled
        assert sorted(p.name for p in (tmp_path / "evidence").iterdir()) == rolled
        for incident_id in rolled:
            details = [e["detail"] for e in final[incident_id]["events"]]
            assert sum(d.startswith("evidence captured") for d in details) == 1, details
            assert sum(d.startswith("commit ") for d in details) == 1, details
