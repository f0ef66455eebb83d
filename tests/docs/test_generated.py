"""Generated documentation matches the code: policy reference, OpenAPI, settings, CLI, routes."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import pytest

from rollbackbot.core.policy import policy_json_schema
from tests.docs.conftest import DOCS, REPO


def test_generated_docs_are_up_to_date(gen: ModuleType) -> None:
    stale = [
        str(path.relative_to(REPO))
        for path, content in gen.generated().items()
        if not path.exists() or path.read_text(encoding="utf-8") != content
    ]
    assert not stale, f"{', '.join(stale)} differ from what scripts/gen_docs.py generates now: run make docs"


def test_check_mode_reports_a_stale_file(gen: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    monkeypatch.setattr(gen, "REPO", tmp_path)
    monkeypatch.setattr(gen, "DOCS", docs)
    assert gen.main(["--check"]) == 0
    cli = docs / "cli.md"
    cli.write_text(cli.read_text().replace("### `rollbackbot serve`", "### `rollbackbot serv`", 1))
    assert gen.main(["--check"]) == 1
    assert "### `rollbackbot serv`" in cli.read_text()  # --check writes nothing
    assert gen.main([]) == 0
    assert "### `rollbackbot serve`" in cli.read_text()
    assert gen.main(["--check"]) == 0


def test_hand_written_prose_survives_regeneration(gen: ModuleType) -> None:
    for path in (DOCS / "configuration.md", DOCS / "cli.md", DOCS / "http-api.md"):
        text = path.read_text(encoding="utf-8")
        before = text.split("<!-- BEGIN GENERATED:")[0]
        assert len(before.strip().splitlines()) > 3, f"{path.name} has no hand-written introduction"
        assert gen.generated()[path].split("<!-- BEGIN GENERATED:")[0] == before


def test_every_policy_field_is_described(gen: ModuleType) -> None:
    fields = gen.policy_fields(policy_json_schema())
    missing = [name for name in fields if name not in gen.POLICY_FIELDS]
    assert not missing, f"describe these policy fields in POLICY_FIELDS of scripts/gen_docs.py: {missing}"
    stale = sorted(set(gen.POLICY_FIELDS) - set(fields))
    assert not stale, f"POLICY_FIELDS describes fields the schema no longer has: {stale}"


def test_every_setting_is_described(gen: ModuleType) -> None:
    from rollbackbot.settings import Settings

    undescribed = [row[0] for row in gen.setting_rows() if row[3] == "(not described yet)"]
    assert not undescribed, f"give these settings a Field(description=...) in rollbackbot/settings.py: {undescribed}"
    stale = sorted(set(gen.SETTING_NOTES) - set(Settings.model_fields))
    assert not stale, f"SETTING_NOTES describes settings that no longer exist: {stale}"


def test_secret_defaults_are_never_printed(gen: ModuleType) -> None:
    for variable, kind, default, _meaning in gen.setting_rows():
        if "secret" in kind:
            assert default in ("required", "unset", "(set)"), variable


def test_openapi_document_lists_every_route(gen: ModuleType) -> None:
    paths = gen.openapi_document()["paths"]
    assert {"/webhook/alertmanager", "/slack/actions", "/api/incidents", "/healthz", "/readyz", "/metrics"} <= set(
        paths
    )
