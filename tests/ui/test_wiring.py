"""The pages are mounted only with ROLLBACKBOT_UI=true; the public URL and proxy ranges are checked at start-up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rollbackbot.errors import ConfigError
from rollbackbot.metrics import INCIDENTS
from rollbackbot.settings import load_settings
from rollbackbot.wiring import build_app
from tests.slack.conftest import SECRET, TOKEN

WEBHOOK = "webhook-token-0123456789"


@pytest.fixture(autouse=True)
def _keep_metrics_source() -> Iterator[None]:
    saved = INCIDENTS.count  # build() points the gauge at its store; later tests must not scrape ours
    yield
    INCIDENTS.count = saved


def _settings(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    signers = tmp_path / "allowed_signers"
    signers.write_text("")
    return {
        "git_url": f"file://{tmp_path}/remote.git",
        "git_workdir": str(tmp_path / "clone"),
        "git_allowed_signers": str(signers),
        "policies": str(Path(__file__).resolve().parents[2] / "policies"),
        "argocd_url": "http://127.0.0.1:9",
        "argocd_token": "argocd-token-for-wiring",
        "webhook_token": WEBHOOK,
        "database_url": f"sqlite:///{tmp_path}/state.db",
        "slack_bot_token": TOKEN,
        "slack_signing_secret": SECRET,
        **extra,
    }


def test_the_pages_are_off_by_default(tmp_path: Path) -> None:
    with TestClient(build_app(load_settings(**_settings(tmp_path))), base_url="https://testserver") as client:
        for path in ("/ui/login", "/ui/incidents", "/ui/static/ui.css"):
            assert client.get(path, follow_redirects=False).status_code == 404
        assert client.post("/ui/login", data={"token": WEBHOOK}).status_code == 404


def test_with_ui_true_the_pages_are_served_and_the_webhook_token_signs_in(tmp_path: Path) -> None:
    app = build_app(load_settings(**_settings(tmp_path, ui="true")))
    with TestClient(app, base_url="https://testserver") as client:
        assert client.get("/ui/incidents", follow_redirects=False).status_code == 303
        assert client.post("/ui/login", data={"token": WEBHOOK}, follow_redirects=False).status_code == 303
        assert client.get("/ui/incidents").status_code == 200
        assert client.get("/ui/login").status_code == 200


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"public_url": "ftp://rollbackbot.example.com"}, "ROLLBACKBOT_PUBLIC_URL"),
        ({"public_url": "https://user:pw@rollbackbot.example.com"}, "ROLLBACKBOT_PUBLIC_URL"),
        ({"public_url": "https://rollbackbot.example.com/?token=x"}, "ROLLBACKBOT_PUBLIC_URL"),
        ({"ui_trusted_proxies": "10.0.0.0/8, not-a-range"}, "ROLLBACKBOT_UI_TRUSTED_PROXIES"),
    ],
)
def test_bad_ui_settings_stop_start_up_without_echoing_secrets(
    tmp_path: Path, extra: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(**_settings(tmp_path, **extra))
    assert str(raised.value).startswith(f"{variable} is invalid")
    assert "pw@" not in str(raised.value) and "token=x" not in str(raised.value)


def test_the_public_url_loses_its_trailing_slash(tmp_path: Path) -> None:
    settings = load_settings(**_settings(tmp_path, public_url=" https://rollbackbot.example.com/ "))
    assert settings.public_url == "https://rollbackbot.example.com"
