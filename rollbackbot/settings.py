"""Service settings (docs/configuration.md): environment variables with the ROLLBACKBOT_ prefix.

Settings are an object built once at start-up and passed down; nothing reads the environment at import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rollbackbot.errors import ConfigError

MIN_WEBHOOK_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    """Everything the service needs to run; secrets are SecretStr and never printed."""

    model_config = SettingsConfigDict(env_prefix="ROLLBACKBOT_", extra="ignore", frozen=True)

    git_url: str = Field(min_length=1)
    git_branch: str = Field(default="main", min_length=1)
    git_workdir: Path = Path(".rollbackbot/repo")
    git_allowed_signers: Path
    git_push_budget_seconds: float = Field(
        default=120.0,
        gt=0,
        description="How long a rollback keeps retrying a push that loses races (jittered exponential backoff).",
    )
    git_stall_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A git transfer with no progress for this long is aborted as stalled (a slow one is not).",
    )
    git_network_ceiling_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="Upper bound on any single git network command, however steadily it progresses.",
    )
    policies: Path = Path("policies")
    argocd_url: str = Field(min_length=1)
    argocd_token: SecretStr
    webhook_token: SecretStr
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    database_url: str = "sqlite:///.rollbackbot/state.db"
    evidence_url: str = "file://.rollbackbot/evidence"

    @field_validator("argocd_token")
    @classmethod
    def _token_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("webhook_token")
    @classmethod
    def _webhook_token_strong(cls, value: SecretStr) -> SecretStr:
        # A guessable token would let anyone on the network trigger rollbacks.
        if len(value.get_secret_value().strip()) < MIN_WEBHOOK_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_WEBHOOK_TOKEN_LENGTH} characters")
        return value

    @field_validator("git_allowed_signers", mode="before")
    @classmethod
    def _path_not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment; raise ConfigError naming the first bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        variable = f"ROLLBACKBOT_{field.upper()}"
        if first["type"] == "missing":
            raise ConfigError(f"{variable} is required but not set") from None
        # Never echo the input: it may be a secret.
        raise ConfigError(f"{variable} is invalid: {first['msg']}") from None
