"""The incident page shows the app's rollback readiness from the last run, escaped like everything else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.ui import UiConfig
from tests.ui.conftest import HOSTILE, TOKEN, build_app, hostile_incident, login

PAGE = "/ui/incidents/inc-0123456789abcdef"


def _page(tmp_path: Path, readiness: dict[str, Any] | None) -> str:
    store = SqlIncidentStore(f"sqlite:///{tmp_path}/state.db")
    store.create(hostile_incident())
    config = UiConfig(
        store=store,
        token=TOKEN,
        git_workdir=tmp_path / "repo",
        readiness=lambda app: readiness if readiness and readiness["app"] == app else None,
    )
    with TestClient(build_app(config), base_url="https://testserver") as client:
        login(client)
        answer = client.get(PAGE)
    assert answer.status_code == 200
    return answer.text


def test_page_shows_blockers_with_their_fix(tmp_path: Path) -> None:
    blocker = {
        "reason": "unsigned",
        "detail": f"fraud-llm/v1: signature does not verify {HOSTILE}",
        "remedy": "sign it",
    }
    readiness = {"app": "fraud-llm", "ready": False, "checked_at": "2026-12-05T10:00:00+00:00", "blockers": [blocker]}
    text = _page(tmp_path, readiness)
    assert "Rollback readiness now" in text and "<strong>not ready</strong>" in text
    assert "<code>unsigned</code>" in text and "(fix: sign it)" in text
    assert "<script>alert" not in text  # the detail is escaped


def test_no_section_without_a_report(tmp_path: Path) -> None:
    assert "Rollback readiness now" not in _page(tmp_path, None)
