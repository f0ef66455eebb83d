"""The observer's kustomize component, rendered through its example overlay."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from rollbackbot.observer.config import ObserverSettings
from tests.deploy.conftest import MANIFESTS, find, load_yaml, require_module, require_tool, run

COMPONENT = MANIFESTS / "observer"
KUBERNETES_VERSION = "1.32"

pytestmark = pytest.mark.deploy


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = require_tool("kubectl", "kubectl with kustomize v5, /usr/bin/kubectl")
    result = run([kubectl, "kustomize", str(COMPONENT / "example")])
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _sidecar(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    containers = find(rendered, "Deployment", "docsum-llm")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["model", "model-observer"]
    return dict(containers[1])


def test_the_service_sends_model_traffic_through_the_observer(rendered: list[dict[str, Any]]) -> None:
    sidecar = _sidecar(rendered)
    assert sidecar["command"] == ["rollbackbot"] and sidecar["args"] == ["observer", "serve"]
    ports = {port["name"]: port["containerPort"] for port in sidecar["ports"]}
    assert ports == {"observer": 9000, "observer-admin": 9100}
    service = find(rendered, "Service", "docsum-llm")
    assert service["spec"]["ports"][0]["targetPort"] == "observer"
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "observer-admin"}
    monitor = find(rendered, "ServiceMonitor", "model-observer")
    assert monitor["spec"]["endpoints"][0]["port"] == "observer-admin"


def test_every_setting_is_an_observer_setting(rendered: list[dict[str, Any]]) -> None:
    settings = find(rendered, "ConfigMap", "model-observer-settings")["data"]
    assert settings["ROLLBACKBOT_OBSERVER_ENDPOINT"] == "docsum-llm"
    names = set(settings) | {env["name"] for env in _sidecar(rendered)["env"]}
    fields = {f"ROLLBACKBOT_OBSERVER_{name.upper()}" for name in ObserverSettings.model_fields}
    assert names <= fields, sorted(names - fields)
    values = {name.removeprefix("ROLLBACKBOT_OBSERVER_").lower(): value for name, value in settings.items()}
    ObserverSettings(**values)  # the shipped values validate


def test_core_kinds_are_valid_kubernetes(rendered: list[dict[str, Any]]) -> None:
    kubernetes_validate = require_module("kubernetes_validate", "pip install kubernetes-validate")
    secret = load_yaml(COMPONENT / "secret-model-observer.example.yaml")
    for obj in [*(o for o in rendered if o["kind"] != "ServiceMonitor"), secret]:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
