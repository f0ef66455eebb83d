"""Settings: one clear line naming the bad variable, secrets never echoed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rollbackbot.errors import ConfigError
from rollbackbot.settings import load_settings

GOOD = {
    "ROLLBACKBOT_GIT_URL": "file:///srv/gitops.git",
    "ROLLBACKBOT_GIT_ALLOWED_SIGNERS": "/etc/rollbackbot/allowed_signers",
    "ROLLBACKBOT_ARGOCD_URL": "https://argocd.example",
    "ROLLBACKBOT_ARGOCD_TOKEN": "argocd-secret-token-value",
    "ROLLBACKBOT_WEBHOOK_TOKEN": "webhook-secret-token-value",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(__import__("os").environ):
        if key.startswith("ROLLBACKBOT_"):
            monkeypatch.delenv(key)
    for key, value in GOOD.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_good_settings_hide_secrets(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.git_branch == "main" and settings.database_url.startswith("sqlite:///")
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "argocd-secret-token-value" not in text and "webhook-secret-token-value" not in text


@pytest.mark.parametrize("variable", sorted(GOOD))
def test_missing_required_setting_is_named(env: pytest.MonkeyPatch, variable: str) -> None:
    env.delenv(variable)
    with pytest.raises(ConfigError, match=f"^{variable} is required but not set$"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ROLLBACKBOT_WEBHOOK_TOKEN", ""),
        ("ROLLBACKBOT_WEBHOOK_TOKEN", "short-secret"),
        ("ROLLBACKBOT_ARGOCD_TOKEN", "   "),
        ("ROLLBACKBOT_GIT_URL", ""),
        ("ROLLBACKBOT_GIT_ALLOWED_SIGNERS", ""),
        ("ROLLBACKBOT_API_TOKEN", "short-reader"),
        ("ROLLBACKBOT_RETENTION_DAYS", "0"),
    ],
)
def test_empty_or_weak_setting_is_named_without_its_value(env: pytest.MonkeyPatch, variable: str, value: str) -> None:
    env.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith(f"{variable} is invalid") and "\n" not in message
    if value.strip():
        assert value not in message


def test_api_token_and_retention_defaults(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.api_token is None and settings.retention_days == 90
    env.setenv("ROLLBACKBOT_API_TOKEN", "")
    assert load_settings().api_token is None  # empty means unset: the webhook token guards /api
    env.setenv("ROLLBACKBOT_API_TOKEN", "reader-secret-token-value")
    env.setenv("ROLLBACKBOT_RETENTION_DAYS", "30")
    settings = load_settings()
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "reader-secret-token-value"
    assert settings.retention_days == 30 and "reader-secret-token-value" not in repr(settings)


def test_forensics_token_is_optional_and_hidden(env: pytest.MonkeyPatch) -> None:
    assert load_settings().forensics_token is None
    env.setenv("ROLLBACKBOT_FORENSICS_TOKEN", "  ")
    assert load_settings().forensics_token is None  # blank means unset: no empty bearer header
    env.setenv("ROLLBACKBOT_FORENSICS_TOKEN", "observer-forensics-token-value")
    settings = load_settings()
    assert settings.forensics_token is not None
    assert settings.forensics_token.get_secret_value() == "observer-forensics-token-value"
    assert "observer-forensics-token-value" not in repr(settings)


def test_serve_refuses_to_start_with_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in GOOD.items()} | {"ROLLBACKBOT_WEBHOOK_TOKEN": "short", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "rollbackbot", "serve"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "rollbackbot: ROLLBACKBOT_WEBHOOK_TOKEN is invalid: Value error, must be at least 16 characters"
    ]
    assert "argocd-secret-token-value" not in result.stderr + result.stdout
