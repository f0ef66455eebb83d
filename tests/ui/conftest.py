"""Incident pages on a real store, a real git clone and a real evidence bundle (in-process app)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rollbackbot.adapters.evidence import FileEvidenceSink
from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.core.incidents import AlertRef, Event, Incident, IncidentState, TagRef
from rollbackbot.ui import UiConfig, ui_router

TOKEN = "ui-test-api-token-0123456789abcdef"
T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>"\'><img src=x onerror=alert(1)>'
BIDI = "safe\u202etxt.exe\u2066"
LONG = "A" * 5000
SECRET_URL = "https://user:hunter2@observer.example/forensics?token=sekrit"
S = IncidentState


def _git(repo: Path, *args: str, message: str | None = None) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        input=message,
        capture_output=True,
        text=True,
        check=True,
        env={
            "GIT_AUTHOR_NAME": "rollbackbot",
            "GIT_AUTHOR_EMAIL": "rollbackbot@localhost",
            "GIT_COMMITTER_NAME": "rollbackbot",
            "GIT_COMMITTER_EMAIL": "rollbackbot@localhost",
            "HOME": str(repo),
            "PATH": "/usr/bin:/bin",
        },
    )
    return done.stdout.strip()


def make_commit(repo: Path, incident_id: str) -> str:
    """A rollback-like commit whose diff and message carry hostile text."""
    repo.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "-q", "-b", "main")
    (repo / "apps").mkdir(exist_ok=True)
    (repo / "apps" / "model.yaml").write_text(f"image: broken\nnote: {HOSTILE}\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-F", "-", message="release\n")
    (repo / "apps" / "model.yaml").write_text(f"image: good\nnote: {BIDI} {LONG}\n")
    (repo / "apps" / "new.yaml").write_text("kind: Added\n")
    _git(repo, "add", "-A")
    message = (
        f"rollback(fraud-llm): v2 -> v1 {HOSTILE}\n\nRestore apps.\n\n"
        f"Rollback-Incident: {incident_id}\nRollback-From: fraud-llm/v2\nRollback-To: fraud-llm/v1\n"
    )
    _git(repo, "commit", "-q", "-F", "-", message=message)
    return _git(repo, "rev-parse", "HEAD")


def hostile_incident(incident_id: str = "inc-0123456789abcdef") -> Incident:
    """A rolled-back incident whose every text field an attacker could influence is hostile."""
    alert = AlertRef(
        name="PromptInjectionSpike",
        fingerprint="5170146c6f828809",
        starts_at=T0,
        labels={"app": "fraud-llm", "severity": "critical", "evil": HOSTILE, "bidi": BIDI, "long": LONG},
        annotations={"summary": f"summary {HOSTILE}"},
        generator_url=SECRET_URL,
    )
    plan = {
        "app": "fraud-llm",
        "branch": "main",
        "head": "a" * 40,
        "current": {"name": "fraud-llm/v2", "commit": "a" * 40, "trailers": {"Model-Digest": "sha256:bad"}},
        "target": {
            "name": "fraud-llm/v1",
            "commit": "b" * 40,
            "trailers": {"Model-Digest": "sha256:good", "Data-Version": "ds-1"},
        },
        "skipped": [{"name": "fraud-llm/v1.5", "reason": f"signature does not verify {HOSTILE}"}],
        "diff_stat": "apps/model.yaml | 2 +-",
        "changed_paths": ["apps/model.yaml"],
        "no_target_reason": None,
        "head_is_rollback": False,
    }
    events = (
        Event(T0 + timedelta(seconds=30), S.received, f"alert fired {HOSTILE}"),
        Event(T0 + timedelta(seconds=31), S.received, "plan: current fraud-llm/v2, target fraud-llm/v1"),
        Event(T0 + timedelta(seconds=32), S.rolling_back, "fraud-llm/v2 -> fraud-llm/v1 (policy mode is auto)"),
        Event(T0 + timedelta(seconds=33), S.syncing, "commit pushed to main"),
        Event(T0 + timedelta(seconds=40), S.rolled_back, "fraud-llm Synced and Healthy after 7.0s"),
    )
    return Incident(
        id=incident_id,
        app="fraud-llm",
        policy="fraud-llm-injection",
        mode="auto",
        state=S.rolled_back,
        alert=alert,
        created_at=T0 + timedelta(seconds=30),
        from_ref=TagRef("fraud-llm/v2", "a" * 40),
        to_ref=TagRef("fraud-llm/v1", "b" * 40),
        reason="fraud-llm Synced and Healthy after 7.0s",
        plan=plan,
        evidence_missing=(f"snapshot.bin: fetch {SECRET_URL} failed",),
        trigger={
            "detectors": ["instruction_override", HOSTILE],
            "excerpt": f"IGNORE PREVIOUS INSTRUCTIONS {HOSTILE} {BIDI}",
            "flagged_requests": 7,
            "canary": True,
        },
        events=events,
    )


@dataclass
class UiWorld:
    client: TestClient
    store: SqlIncidentStore
    incident: Incident
    commit: str
    evidence_root: Path


def build_app(config: UiConfig) -> FastAPI:
    app = FastAPI()
    app.include_router(ui_router(config))
    return app


def login(client: TestClient, token: str = TOKEN) -> None:
    answer = client.post("/ui/login", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text


@pytest.fixture
def world(tmp_path: Path) -> Iterator[UiWorld]:
    store = SqlIncidentStore(f"sqlite:///{tmp_path}/state.db")
    incident = hostile_incident()
    commit = make_commit(tmp_path / "repo", incident.id)
    requests = "\n".join(
        [
            '{"input": "' + HOSTILE.replace('"', '\\"') + '", "token": "sk-live-123456"}',
            f'{{"input": "see {SECRET_URL}", "headers": {{"Authorization": "Bearer abc.def.ghi"}}}}',
            '{"input": "' + BIDI + '"}',
        ]
    ).encode()
    url = FileEvidenceSink(tmp_path / "evidence").write(incident.id, {"alert.json": b"{}", "requests.jsonl": requests})
    incident = replace(incident, rollback_commit=commit, evidence_url=url)
    store.create(incident)
    config = UiConfig(store=store, token=TOKEN, git_workdir=tmp_path / "repo", now=lambda: T0 + timedelta(hours=1))
    with TestClient(build_app(config), base_url="https://testserver") as client:
        yield UiWorld(client, store, incident, commit, tmp_path / "evidence" / incident.id)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's report on the test, so the browser fixture can screenshot failures."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)
