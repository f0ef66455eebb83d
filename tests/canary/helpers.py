"""Routes, routers and policies shared by the canary tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollbackbot.core.policy import Policy, TrafficRouter

HERE = Path(__file__).parent
ROUTES = HERE / "routes"
GOLDEN = HERE / "golden"
KIND_FILES = {"HTTPRoute": "httproute.yaml", "VirtualService": "virtualservice.yaml"}
BACKENDS = {"safe": "chat-llm-v1", "compromised": "chat-llm-v2"}


def router(kind: str, rule: int | str = "chat", file: str = "apps/chat-llm/route.yaml") -> TrafficRouter:
    """The policy's trafficRouter block for the fixture routes."""
    return TrafficRouter.model_validate(
        {"kind": kind, "file": file, "name": "chat-llm", "rule": rule, "backends": BACKENDS}
    )


def canary_policy(kind: str = "HTTPRoute", shadow_ttl: str = "72h", **strategy: Any) -> Policy:
    """An automatic canary policy for app chat-llm, analysis against ``http://prometheus:9090``."""
    spec_strategy: dict[str, Any] = {
        "type": "canary",
        "steps": [25, 50, 100],
        "pause": "0s",
        "stepTimeout": "1m",
        "analysis": {
            "prometheus": {"url": "http://prometheus:9090"},
            "interval": "1s",
            "consecutiveSuccesses": 2,
            "queries": [{"name": "safe-error-ratio", "query": "safe_error_ratio", "max": 0.01}],
        },
    } | strategy
    return Policy.from_document(
        {
            "apiVersion": "rollbackbot/v1",
            "kind": "RollbackPolicy",
            "metadata": {"name": "chat-llm-canary"},
            "spec": {
                "matchers": ['app = "chat-llm"'],
                "target": {
                    "argocdApps": ["chat-llm"],
                    "project": "ml-prod",
                    "paths": ["apps/chat-llm"],
                    "tags": "chat-llm/v*",
                },
                "mode": "auto",
                "approval": {"channel": "C0ML0NCALL", "approvers": ["U012ABC"]},
                "sync": {"timeout": "8s"},
                "trafficRouter": router(kind).model_dump(by_alias=True),
                "strategy": spec_strategy,
                "shadow": {
                    "percent": 5,
                    "sandbox": {"namespace": "ml-quarantine", "name": "chat-llm-v2-shadow"},
                    "ttl": shadow_ttl,
                },
            },
        }
    )
