"""Configuration of the fake Argo CD API server (loadable from a JSON file) and JWT-shaped token helpers."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

HealthName = Literal["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"]
SyncOutcome = Literal["Succeeded", "Failed", "Error"]


class AppFaults(BaseModel):
    """Fault knobs of one app; settable at start and at runtime (POST /_fake/apps/{name}/faults)."""

    model_config = ConfigDict(extra="forbid")

    syncOutcome: SyncOutcome = "Succeeded"
    healthOverride: HealthName | None = None
    refreshHang: bool = False
    failNext: list[int] = Field(default_factory=list)
    staleStatusSeconds: float | None = None
    syncWindowBlocked: bool = False


class FakeAppConfig(BaseModel):
    """One Argo CD Application backed by a directory of the GitOps repository."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    project: str = Field(min_length=1)
    path: str
    autoSync: bool = False
    namespace: str = "ml-prod"
    syncOptions: list[str] = Field(default_factory=lambda: ["CreateNamespace=true"])
    revisionHistoryLimit: int = 10
    labels: dict[str, str] = Field(default_factory=dict)
    faults: AppFaults = Field(default_factory=AppFaults)


class Delays(BaseModel):
    """Controller delays in seconds, each counted from the previous step (δ1..δ4 of docs/argocd-wire.md §8.6)."""

    model_config = ConfigDict(extra="forbid")

    running: float = 0.05
    succeeded: float = 0.1
    reconcile: float = 0.1
    healthy: float = 0.2


class FakeArgoConfig(BaseModel):
    """Everything the fake needs: accepted token, the GitOps repository and the apps it serves."""

    model_config = ConfigDict(extra="forbid")

    token: str
    # The subject operations show in initiatedBy.username; default: the token's ``sub`` claim.
    username: str | None = Field(default=None, validation_alias=AliasChoices("username", "subject"))
    repo: str
    repoURL: str | None = None
    branch: str = "main"
    apps: list[FakeAppConfig] = Field(default_factory=list)
    users: dict[str, str] = Field(default_factory=dict)
    # RBAC the token lacks, as ``resource/action/subresource`` globs (e.g. ``applications/sync/ml-prod/*``):
    # ``GET /api/v1/account/can-i/...`` answers "no" for them (rollbackbot.testing.argocd.rbac).
    denied: list[str] = Field(default_factory=list)
    tick: float = Field(default=0.05, gt=0)
    refreshDelay: float = Field(default=0.1, ge=0)
    reconcileInterval: float = Field(default=120.0, ge=0)
    delays: Delays = Field(default_factory=Delays)
    startTime: datetime | None = None

    @field_validator("token")
    @classmethod
    def _jwt_shaped(cls, value: str) -> str:
        # The real server ignores bearers that are not three dot-separated parts.
        if len(value.split(".")) != 3:
            raise ValueError("token must look like a JWT (three dot-separated parts)")
        return value

    @classmethod
    def from_file(cls, path: str | Path) -> FakeArgoConfig:
        """Load and validate a JSON config file."""
        return cls.model_validate_json(Path(path).read_text())

    def repo_path(self) -> Path:
        """Local filesystem path of the repository (a ``file://`` URL is accepted)."""
        return Path(self.repo.removeprefix("file://"))

    def source_repo_url(self) -> str:
        """The ``spec.source.repoURL`` the apps show."""
        return self.repoURL or f"file://{self.repo_path().resolve()}"

    def subject(self) -> str:
        """Username operations of the configured token are initiated by."""
        return self.username or normalise_subject(token_subject(self.token) or "admin")


def _b64(data: dict[str, object]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_token(subject: str, issued_at: int = 1767225600) -> str:
    """An unsigned JWT-shaped token carrying ``sub``; the fake only compares tokens, never verifies."""
    header = _b64({"alg": "HS256", "typ": "JWT"})
    payload = _b64({"iss": "argocd", "sub": subject, "iat": issued_at, "jti": f"fake-{issued_at}"})
    return f"{header}.{payload}.fake-signature"


def token_subject(token: str) -> str | None:
    """The ``sub`` claim of a JWT-shaped token, or None when it cannot be read."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) else None


def normalise_subject(subject: str) -> str:
    """Argo CD shows ``<user>:login`` and ``<user>:apiKey`` subjects as ``<user>``."""
    for suffix in (":login", ":apiKey"):
        if subject.endswith(suffix):
            return subject.removesuffix(suffix)
    return subject
