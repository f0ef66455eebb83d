"""Service settings (docs/configuration.md): environment variables with the ROLLBACKBOT_ prefix.

Settings are an object built once at start-up and passed down; nothing reads the environment at import.
"""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

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
    evidence_object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = Field(
        default="GOVERNANCE",
        description="S3 Object Lock mode of evidence objects in a bucket with Object Lock: COMPLIANCE "
        "binds everyone including the root user; GOVERNANCE can be lifted by principals with "
        "s3:BypassGovernanceRetention",
    )
    incident_stuck_grace_seconds: float = Field(
        default=900,
        gt=0,
        description="How long past its deadline (rollbackbot.core.overdue) a non-terminal incident counts "
        "as stuck in the gauge rollbackbot_incidents_overdue",
    )
    shutdown_grace_seconds: float = Field(
        default=25.0,
        ge=0,
        description="After SIGTERM: how long steps in flight may run before the process exits "
        "(keep it below the pod's terminationGracePeriodSeconds)",
    )
    policy_poll_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How often the policy directory is checked for changes (0: only on SIGHUP)",
    )
    retry_budget_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How long one attempt of an incident retries transient errors (policy retry.budget overrides)",
    )
    retry_attempts: int = Field(
        default=3,
        ge=1,
        description="Attempts per incident: a failed-on-transient incident is re-opened when its alert is "
        "delivered again while still firing, up to this many attempts in all (policy retry.attempts overrides)",
    )
    retry_backoff_seconds: float = Field(
        default=1.0, gt=0, description="First backoff delay of a transient retry; doubles up to 60s, with jitter"
    )
    watchdog_seconds: float = Field(
        default=30.0, gt=0, description="How often the watchdog looks for unfinished incidents no worker drives"
    )
    watchdog_grace_seconds: float = Field(
        default=120.0,
        ge=0,
        description="An unfinished incident counts as stalled once it is due and nothing was recorded on it "
        "for this long (plus the policy's sync timeout while syncing); then the watchdog drives it",
    )
    lease_seconds: float = Field(
        default=30.0,
        ge=1,
        description="How long a replica's lease on an incident lasts without a heartbeat (renewed every third); "
        "an incident whose replica died is taken over by another once it expires",
    )
    replica_name: str | None = Field(
        default=None,
        description="This replica's name in leases, events and /status (default: host name, pid and a random suffix)",
    )
    api_token: SecretStr | None = Field(
        default=None, description="bearer token for /api/* and /status (defaults to the webhook token)"
    )
    forensics_token: SecretStr | None = Field(
        default=None,
        description="bearer token sent with the policies' forensics.requestsUrl and snapshotUrl fetches (the "
        "observer's ROLLBACKBOT_OBSERVER_FORENSICS_TOKEN); unset: fetched without credentials",
    )
    retention_days: int = Field(
        default=90, ge=1, description="terminal incidents opened longer ago than this many days are pruned"
    )
    ui: bool = Field(
        default=False,
        description="Serve the incident pages under `/ui/` (docs/ui.md): `true` or `false`.",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL people reach rollbackbot at, e.g. `https://rollbackbot.example.com`; every Slack "
        "message links its incident's page under it.",
    )
    ui_trusted_proxies: str = Field(
        default="",
        description="Comma-separated address ranges (CIDR) of an authenticating proxy whose user header "
        "signs people in to the incident pages; empty: none is trusted.",
    )
    ui_user_header: str = Field(
        default="X-Forwarded-User",
        description="The header in which a trusted authenticating proxy names the signed-in user.",
    )
    readiness_interval_seconds: float = Field(
        default=600.0,
        ge=0,
        description="How often the rollback readiness check runs (docs/readiness.md), also once at start and "
        "after each policy reload; 0 turns the schedule off (`rollbackbot readiness` still works).",
    )
    readiness_max_templated_apps: int = Field(
        default=50,
        ge=1,
        description="At most this many apps per templated policy (`${labels.NAME}`) are checked for readiness.",
    )
    forge_api_url: str | None = Field(
        default=None,
        description="Forge REST base URL for policies with `git.mode: pull-request`: `https://api.github.com` "
        "(GitHub Enterprise: `https://HOST/api/v3`) or a GitLab `https://HOST/api/v4`.",
    )
    forge_token: SecretStr | None = Field(
        default=None,
        description="Forge token (GitHub fine-grained token; GitLab project or group token) that may open and "
        "merge pull requests; for a GitHub App set `ROLLBACKBOT_FORGE_APP_ID` and the two settings after it instead.",
    )
    forge_app_id: str | None = Field(
        default=None,
        description="GitHub App id: with the installation id and the private key, rollbackbot mints its own "
        "installation tokens and renews them before they expire (instead of `ROLLBACKBOT_FORGE_TOKEN`).",
    )
    forge_app_installation_id: str | None = Field(
        default=None, description="The GitHub App's installation id on the GitOps repository's owner."
    )
    forge_app_private_key_file: Path | None = Field(
        default=None, description="PEM file of the GitHub App's private key (read at start, never logged)."
    )
    forge_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Secret of the forge webhook posting to `POST /forge/events` (GitHub `X-Hub-Signature-256` "
        "HMAC key, GitLab `X-Gitlab-Token`); unset: the route answers 404 and open pull requests are polled.",
    )

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

    @field_validator("evidence_object_lock_mode", mode="before")
    @classmethod
    def _lock_mode_upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("forensics_token")
    @classmethod
    def _forensics_token_set(cls, value: SecretStr | None) -> SecretStr | None:
        # Empty (an optional Secret key left blank) means unset: no "Bearer " header with nothing after it.
        return value if value is not None and value.get_secret_value().strip() else None

    @field_validator("api_token")
    @classmethod
    def _api_token_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None  # unset or empty: the webhook token guards the API
        if len(value.get_secret_value().strip()) < MIN_WEBHOOK_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_WEBHOOK_TOKEN_LENGTH} characters")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url_plain(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parsed = urlsplit(value.strip())
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parsed.username or parsed.password or parsed.query or parsed.fragment:
            raise ValueError("must not carry credentials, a query or a fragment")
        return value.strip().rstrip("/")

    @field_validator("ui_trusted_proxies")
    @classmethod
    def _proxy_ranges(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"not an address range: {part[:60]!r}") from None
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
