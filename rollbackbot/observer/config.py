"""Observer settings (``ROLLBACKBOT_OBSERVER_*`` variables) and the per-endpoint config file.

Settings, each also a ``rollbackbot observer serve`` option where marked:

- ``ROLLBACKBOT_OBSERVER_UPSTREAM`` (``--upstream``): base URL of the model server, e.g. ``http://127.0.0.1:8000``.
- ``ROLLBACKBOT_OBSERVER_ENDPOINT`` (``--endpoint``): the endpoint name in every series' ``endpoint``
  label; name it after the Argo CD app (the alert rules turn it into ``app``).
- ``ROLLBACKBOT_OBSERVER_HOST`` / ``_PORT`` / ``_ADMIN_PORT`` (``--host``/``--port``/``--admin-port``):
  model traffic on PORT (default 9000), ``/metrics``, ``/healthz``, ``/forensics/requests`` and
  ``/feedback`` on ADMIN_PORT (default 9100).
- ``ROLLBACKBOT_OBSERVER_CONFIG`` (``--config``): the per-endpoint YAML/JSON file (``EndpointConfig``).
- ``ROLLBACKBOT_OBSERVER_MODEL_VERSION``: the ``model_version`` label (set it from the pod's image tag).
- ``ROLLBACKBOT_OBSERVER_FORENSICS_TOKEN``: bearer token of ``/forensics/requests``; unset = 404.
- ``ROLLBACKBOT_OBSERVER_REDACTION_KEY``: HMAC key of redaction placeholders (random per process if unset,
  so tags then only correlate within one process lifetime).
- ``ROLLBACKBOT_OBSERVER_QUEUE_SIZE`` (2048), ``_BUFFER_SIZE`` (1000 entries), ``_ENTRY_TEXT_CHARS`` (4096 per
  text in an entry), ``_MAX_COPY_BYTES`` (1 MiB: larger bodies are forwarded but not scored),
  ``_UPSTREAM_TIMEOUT`` (seconds, 300), ``_HIGH_CONFIDENCE`` (0.9: feedback ``confidence="high"`` from here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rollbackbot.errors import ConfigError
from rollbackbot.observer.drift import validate_baseline


class ObserverSettings(BaseSettings):
    """Everything ``rollbackbot observer serve`` needs; secrets are SecretStr and never printed."""

    model_config = SettingsConfigDict(env_prefix="ROLLBACKBOT_OBSERVER_", extra="ignore", frozen=True)

    upstream: str = Field(min_length=1, pattern=r"^https?://")
    endpoint: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    host: str = "0.0.0.0"  # noqa: S104 - a sidecar listens on the pod's interfaces
    port: int = Field(default=9000, ge=0, le=65535)
    admin_port: int = Field(default=9100, ge=0, le=65535)
    config: Path | None = None
    model_version: str = Field(default="unknown", min_length=1, max_length=64)
    forensics_token: SecretStr | None = None
    redaction_key: SecretStr | None = None
    queue_size: int = Field(default=2048, ge=1, le=1_000_000)
    buffer_size: int = Field(default=1000, ge=1, le=100_000)
    entry_text_chars: int = Field(default=4096, ge=64, le=16_384)
    max_copy_bytes: int = Field(default=1 << 20, ge=1024)
    upstream_timeout: float = Field(default=300.0, gt=0)
    high_confidence: float = Field(default=0.9, ge=0, le=1)


class JsonModel(BaseModel):
    """A plain JSON model (classifier, vision model) on one route, described by JSON paths.

    Paths look like ``$.inputs.text`` or ``$.predictions[0].score`` (request paths: ``input``,
    ``features``; response paths: ``decision``, ``confidence``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    route: str = Field(pattern=r"^/")
    input: str | None = None
    features: str | None = None
    decision: str | None = None
    confidence: str | None = None


class EndpointConfig(BaseModel):
    """The per-endpoint config file (``--config``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    json_models: tuple[JsonModel, ...] = ()
    refusal_phrases: tuple[str, ...] = ()
    canary: str | None = Field(default=None, min_length=8)
    max_input_bytes: int | None = Field(default=None, ge=1)
    baseline: dict[str, Any] | None = None

    @field_validator("baseline")
    @classmethod
    def _baseline_usable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else validate_baseline(value)


def load_endpoint_config(path: Path | None) -> EndpointConfig:
    """Read and validate the config file (YAML or JSON); no file means the defaults."""
    if path is None:
        return EndpointConfig()
    try:
        raw = path.read_text(encoding="utf-8")
        data = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
        return EndpointConfig.model_validate(data or {})
    except (OSError, ValueError, yaml.YAMLError) as exc:
        detail = exc.errors(include_url=False) if isinstance(exc, ValidationError) else exc
        raise ConfigError(f"observer config {path}: {detail}") from exc
