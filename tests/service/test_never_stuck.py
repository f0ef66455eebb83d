"""Never stuck: store outages are waited out, unexpected errors end ``failed``, orphans are adopted.

The SQLite lock is real: another process holds ``BEGIN EXCLUSIVE`` on the incident database.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from rollbackbot.adapters.evidence import FileEvidenceSink
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.api import create_app
from rollbackbot.clock import FakeClock
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.incidents import AlertRef, IncidentState, new_incident
from rollbackbot.core.policy import Policy
from rollbackbot.metrics import REGISTRY
from rollbackbot.policy_files import load_policies
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from tests.service.fakes import FakeArgo, FakeGit

REPO = Path(__file__).resolve().parents[2]
DOCSUM = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}
DOCSUM_TARGET = {
    "apps": ["docsum-llm"],
    "project": "ml-prod",
    "paths": ["apps/docsum-llm"],
    "tag_pattern": "docsum-llm/v*",
    "require_trailers": ["Model-Digest", "Data-Version"],
}

LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


@contextmanager
def _locked(database: Path) -> Iterator[None]:
    """Another process holds the SQLite write lock (``BEGIN EXCLUSIVE``) until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(database)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=10)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _service(tmp_path: Path, policies: list[Policy], clock: FakeClock, git: Any, **kwargs: Any) -> Service:
    return Service(
        store=SqlIncidentStore(f"sqlite:///{tmp_path}/state.db"),
        git=git,
        argocd=FakeArgo(),
        policies=policies,
        clock=clock,
        evidence=FileEvidenceSink(tmp_path / "evidence"),
        **kwargs,
    )


def _payload(labels: dict[str, str], clock: FakeClock, ago: float = 120) -> AlertmanagerPayload:
    body = notification([alert(labels, clock.now() - timedelta(seconds=ago))])
    return AlertmanagerPayload.model_validate(body)


async def _eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_locked_store_is_waited_out_and_the_incident_completes(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, abuse_report
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("rollbackbot.adapters.store_sql.BUSY_TIMEOUT_MS", 100)
    git = FakeGit()
    service = _service(tmp_path, load_policies(REPO / "policies"), clock, git, store_backoff_max=0.1)
    incident_id = service.receive(_payload(DOCSUM, clock)).incidents[0]  # scheduled, not run yet
    with _locked(tmp_path / "state.db"):
        with caplog.at_level(logging.WARNING, logger="rollbackbot.service"):
            await _eventually(lambda: sum("store unavailable" in r.message for r in caplog.records) >= 2)
        stored = service.store.get(incident_id)  # WAL: reads go on while another process holds the write lock
        assert stored is not None and stored.state.value == "received"
    await asyncio.wait_for(service.idle(), timeout=20)  # no restart: the same worker carries on
    done = service.store.get(incident_id)
    assert done is not None and done.state.value == "rolled_back", done.reason
    assert len(git.commits) == 1
    abuse_report.settled(incidents=1, stuck=int(not done.state.terminal))


async def test_webhook_answers_503_while_the_store_is_locked_and_loses_nothing(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rollbackbot.adapters.store_sql.BUSY_TIMEOUT_MS", 100)
    git = FakeGit()
    service = _service(tmp_path, load_policies(REPO / "policies"), clock, git)
    service.store.ping()  # the database exists before the other process locks it
    token = "test-webhook-token-0123456789"
    app = create_app(service, SecretStr(token))
    body = notification([alert(DOCSUM, clock.now() - timedelta(minutes=2))])
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rollbackbot") as http:
        # The webhook writes to the inbox (on SQLite a file of its own): locked, nothing can be taken.
        with _locked(tmp_path / "state-inbox.db"):
            refused = await http.post("/webhook/alertmanager", json=body, headers=headers)
        assert refused.status_code == 503 and "deliver again later" in refused.json()["detail"]
        assert service.store.inbox.depth().pending == 0 and service.store.recent() == []  # nothing recorded
        # The incidents' file locked: the alert is taken all the same, and decided once it is free.
        with _locked(tmp_path / "state.db"):
            accepted = await http.post("/webhook/alertmanager", json=body, headers=headers)  # Alertmanager's retry
            assert accepted.status_code == 202
    await asyncio.wait_for(service.idle(), timeout=10)
    incident = service.store.get(accepted.json()["incidents"][0])
    assert incident is not None and incident.state.value == "rolled_back" and len(git.commits) == 1


def _policy(**forensics: str) -> Policy:
    return Policy.from_document(
        {
            "apiVersion": "rollbackbot/v1",
            "kind": "RollbackPolicy",
            "metadata": {"name": "docsum"},
            "spec": {
                "matchers": ['app = "docsum-llm"'],
                "target": {
                    "argocdApps": ["docsum-llm"],
                    "project": "ml-prod",
                    "paths": ["apps/docsum-llm"],
                    "tags": "docsum-llm/v*",
                },
                "mode": "auto",
                "cooldown": "0s",
                "forensics": dict(forensics),
            },
        }
    )


async def test_unexpected_error_ends_failed_and_does_not_block_the_app(
    tmp_path: Path, clock: FakeClock, abuse_report
) -> None:  # type: ignore[no-untyped-def]
    # The policy loads, but httpx refuses the URL when the evidence step fetches it (httpx.InvalidURL).
    bad = _policy(requestsUrl="http://[::1/forensics/requests?token=s3cr3t")
    git = FakeGit()
    service = _service(tmp_path, [bad], clock, git)
    first = service.receive(_payload(DOCSUM, clock)).incidents[0]
    await asyncio.wait_for(service.idle(), timeout=10)
    failed = service.store.get(first)
    assert failed is not None and failed.state.value == "failed"
    assert failed.reason.startswith("unexpected error: InvalidURL: ")
    assert "s3cr3t" not in failed.reason

    # The next alert of the app is not suppressed as a duplicate of a dead incident.
    service.replace_policies([_policy()])  # fixed in Git and reloaded
    clock.advance(60)
    second = service.receive(_payload({**DOCSUM, "alertname": "ModelCanaryLeak"}, clock)).incidents[0]
    await asyncio.wait_for(service.idle(), timeout=10)
    rolled = service.store.get(second)
    assert rolled is not None and rolled.state.value == "rolled_back", rolled.reason
    abuse_report.settled(incidents=2, stuck=sum(not i.state.terminal for i in (failed, rolled)))


class ParseErrorGit(FakeGit):
    """A git adapter that trips over something it cannot parse (a bug, not an outage)."""

    def plan(self, target):  # type: ignore[no-untyped-def]
        raise ValueError("unexpected tag line: 'garbage'")


async def test_parse_error_in_a_step_ends_failed_with_class_and_message(
    tmp_path: Path, clock: FakeClock, abuse_report
) -> None:  # type: ignore[no-untyped-def]
    service = _service(tmp_path, [_policy()], clock, ParseErrorGit())
    incident_id = service.receive(_payload(DOCSUM, clock)).incidents[0]
    await asyncio.wait_for(service.idle(), timeout=10)
    incident = service.store.get(incident_id)
    assert incident is not None and incident.state.value == "failed"
    assert incident.reason == "unexpected error: ValueError: unexpected tag line: 'garbage'"
    abuse_report.settled(incidents=1, stuck=int(not incident.state.terminal))


def _orphan(store: SqlIncidentStore, clock: FakeClock) -> str:
    """An incident another replica opened and then died with: unfinished, no worker anywhere."""
    ref = AlertRef("PromptInjectionSpike", "f00dfeed", clock.now() - timedelta(minutes=2), dict(DOCSUM))
    incident = new_incident(
        app="docsum-llm", policy="docsum", mode="auto", alert=ref, target=DOCSUM_TARGET, now=clock.now()
    )
    assert store.create(incident)
    return incident.id


def _stalled_gauge() -> float | None:
    return REGISTRY.get_sample_value("rollbackbot_incidents_stalled")


async def test_watchdog_drives_an_orphaned_incident_without_a_restart(
    tmp_path: Path, clock: FakeClock, abuse_report
) -> None:  # type: ignore[no-untyped-def]
    git = FakeGit()
    service = _service(tmp_path, [_policy()], clock, git, watchdog_seconds=0.02, watchdog_grace=0)
    await service.start()
    try:
        orphan = _orphan(SqlIncidentStore(f"sqlite:///{tmp_path}/state.db"), clock)  # e.g. a replica that died

        def done() -> bool:
            incident = service.store.get(orphan)
            return incident is not None and incident.state.terminal

        await _eventually(done)
        await asyncio.wait_for(service.idle(), timeout=10)
    finally:
        await service.stop()
    incident = service.store.get(orphan)
    assert incident is not None and incident.state.value == "rolled_back", incident.reason
    assert list(git.commits) == [orphan]
    abuse_report.settled(incidents=1, stuck=int(not incident.state.terminal))


async def test_stalled_incidents_are_counted_in_the_gauge(tmp_path: Path, clock: FakeClock) -> None:
    service = _service(tmp_path, [_policy()], clock, FakeGit(), watchdog_seconds=None, watchdog_grace=60)
    _orphan(service.store, clock)
    clock.advance(59)
    assert service.adopt_stalled() == 0  # maybe another replica is on it: nothing recorded for only 59s
    assert _stalled_gauge() == 0
    clock.advance(1)
    assert service.adopt_stalled() == 1
    assert _stalled_gauge() == 1
    await asyncio.wait_for(service.idle(), timeout=10)
    assert service.adopt_stalled() == 0
    assert _stalled_gauge() == 0


async def test_watchdog_reads_the_store_off_the_event_loop(tmp_path: Path, clock: FakeClock) -> None:
    """After a storm the watchdog reads and parses thousands of unfinished incidents: never on the loop,
    where every webhook would wait for it once per interval."""
    service = _service(tmp_path, [_policy()], clock, FakeGit(), watchdog_seconds=0.02, watchdog_grace=0)
    readers: list[int] = []
    unfinished = service.store.unfinished

    def recording_unfinished() -> list[Any]:
        readers.append(threading.get_ident())
        return unfinished()

    await service.start()
    try:
        orphan = _orphan(service.store, clock)
        await _eventually(lambda: (service.store.get(orphan) or _never()).state.terminal)  # adopted, driven
        await asyncio.wait_for(service.idle(), timeout=10)
        service.store.unfinished = recording_unfinished  # type: ignore[method-assign]
        await _eventually(lambda: len(readers) >= 3)  # nothing else is running: these are the watchdog's
    finally:
        await service.stop()
    assert threading.get_ident() not in readers  # the test runs on the event loop's thread


def _never() -> Any:
    raise AssertionError("incident vanished")


@pytest.mark.parametrize("webhooks_arriving", [True, False])
async def test_incident_store_calls_leave_the_loop_while_webhooks_arrive(
    tmp_path: Path, clock: FakeClock, webhooks_arriving: bool
) -> None:
    """In a storm a step's store calls would hold the loop every webhook waits on; when intake is
    quiet they stay on the loop (a thread hop per call would only slow a rollback)."""
    service = _service(tmp_path, [_policy()], clock, FakeGit())
    assert service.inbox is not None
    loop_thread = threading.get_ident()
    threads: dict[str, set[int]] = {"get": set(), "app_history": set(), "save": set()}
    for name in threads:
        real = getattr(service.store, name)

        def recording(*args: Any, _real: Any = real, _name: str = name) -> Any:
            threads[_name].add(threading.get_ident())
            return _real(*args)

        setattr(service.store, name, recording)
    orphan = _orphan(service.store, clock)
    service.inbox.in_flight = 1 if webhooks_arriving else 0  # a webhook handler between its body and its 202
    try:
        done = await service.run_incident(orphan, follow_verification=False)
    finally:
        service.inbox.in_flight = 0
    assert done is not None and done.state is IncidentState.rolled_back, done
    assert all(threads.values()), threads
    on_loop = {name for name, seen in threads.items() if loop_thread in seen}
    assert on_loop == (set() if webhooks_arriving else set(threads))
