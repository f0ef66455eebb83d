"""The high-availability component (manifests/overlays/ha), rendered through an overlay as a user writes it."""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import MANIFESTS, find, require_module, require_tool, run

pytestmark = pytest.mark.deploy
KUBERNETES_VERSION = "1.32"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    kubectl = require_tool("kubectl", "kubectl with kustomize v5, /usr/bin/kubectl")
    overlay = tmp_path_factory.mktemp("site")
    base = os.path.relpath(MANIFESTS, overlay)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{base}]\ncomponents: [{base}/overlays/ha]\n"
    )
    result = run([kubectl, "kustomize", str(overlay)])
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _pod(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(find(rendered, "Deployment", "rollbackbot")["spec"]["template"]["spec"])


def test_three_replicas_replaced_one_at_a_time_spread_over_nodes(rendered: list[dict[str, Any]]) -> None:
    spec = find(rendered, "Deployment", "rollbackbot")["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    [term] = _pod(rendered)["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    pdb = find(rendered, "PodDisruptionBudget", "rollbackbot")
    assert pdb["metadata"]["namespace"] == "rollbackbot" and pdb["spec"]["minAvailable"] == 2
    labels = spec["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_postgresql_from_the_secret_no_volume_claim_shared_evidence(rendered: list[dict[str, Any]]) -> None:
    assert not [o for o in rendered if o["kind"] == "PersistentVolumeClaim"]
    pod = _pod(rendered)
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["ROLLBACKBOT_DATABASE_URL"] == {
        "name": "ROLLBACKBOT_DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "rollbackbot-credentials", "key": "database-url"}},
    }
    assert env["ROLLBACKBOT_REPLICA_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "ROLLBACKBOT_EVIDENCE_URL" not in env  # from the settings ConfigMap: one bucket for every replica
    settings = next(
        o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("rollbackbot-settings")
    )
    assert settings["data"]["ROLLBACKBOT_EVIDENCE_URL"].startswith("s3://")
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    assert set(data) == {"name", "emptyDir"}  # the git clone, per replica


def test_core_kinds_are_valid_kubernetes(rendered: list[dict[str, Any]]) -> None:
    kubernetes_validate = require_module("kubernetes_validate", "pip install kubernetes-validate")
    for obj in rendered:
        if obj["kind"] not in {"ServiceMonitor", "PrometheusRule"}:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_example_secret_holds_the_key_the_deployment_reads(rendered: list[dict[str, Any]]) -> None:
    example = yaml.safe_load((MANIFESTS / "overlays" / "ha" / "secret-database-url.example.yaml").read_text())
    env = {e["name"]: e for e in _pod(rendered)["containers"][0]["env"]}
    ref = env["ROLLBACKBOT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert example["metadata"]["name"] == ref["name"] and example["stringData"] == {ref["key"]: "REPLACE_ME"}
