"""The record of one simulated Application: its wire object plus what the cluster simulation tracks."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from rollbackbot.testing.argocd.config import AppFaults, FakeAppConfig
from rollbackbot.testing.argocd.git import Manifest
from rollbackbot.testing.argocd.wire import JSON, Key


class Stage(StrEnum):
    """Where the app's current operation is."""

    idle = "idle"
    queued = "queued"  # operation set, controller has not picked it up (no operationState)
    running = "running"
    terminating = "terminating"


@dataclass
class AppSim:
    """One Application: its wire object plus what the simulation needs to know about the cluster."""

    config: FakeAppConfig
    faults: AppFaults
    obj: JSON
    live: dict[Key, Manifest] = field(default_factory=dict)
    target: dict[Key, Manifest] = field(default_factory=dict)
    deployed_revision: str = ""
    stage: Stage = Stage.idle
    due: float = 0.0
    retries: int = 0
    changed: set[Key] = field(default_factory=set)
    rollout_pending: bool = False
    progressing_until: float = 0.0
    settle_due: float | None = None  # post-op reconcile; status is stale until then
    refresh_due: float | None = None
    next_poll: float = 0.0
    last_auto_revision: str = ""
    events: list[JSON] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Application name."""
        return self.config.name

    @property
    def status(self) -> JSON:
        """The wire ``status`` object (mutable)."""
        status: JSON = self.obj["status"]
        return status

    @property
    def spec(self) -> JSON:
        """The wire ``spec`` object (mutable)."""
        spec: JSON = self.obj["spec"]
        return spec
