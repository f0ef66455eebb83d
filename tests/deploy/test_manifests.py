"""The kustomize base renders, is valid Kubernetes, and runs rollbackbot as docs/configuration.md says."""

from __future__ import annotations

import sys
import typing
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pytest
from pydantic import SecretStr

from rollbackbot.core.policy_select import resolve_target
from rollbackbot.policy_files import check_directory, load_policies
from rollbackbot.settings import Settings
from tests.deploy.conftest import EXAMPLES, MANIFESTS, MONITORING, NAMESPACE, REPO, find, load_yaml, require_module, run

pytestmark = pytest.mark.deploy

KUBERNETES_VERSION = "1.32"  # the kubectl client here; kubernetes-validate ships schemas for it
CORE_KINDS = {"Namespace", "ServiceAccount", "ConfigMap", "Service", "PersistentVolumeClaim", "Deployment"}
UID = 10001


def _pod(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(find(rendered, "Deployment", "rollbackbot")["spec"]["template"]["spec"])


def _container(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    containers = _pod(rendered)["containers"]
    assert [c["name"] for c in containers] == ["rollbackbot"]
    return dict(containers[0])


def _settings_env(rendered: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every variable the container gets: name -> its env entry, or {'value': ...} from envFrom."""
    container = _container(rendered)
    env: dict[str, dict[str, Any]] = {}
    for source in container.get("envFrom", []):
        config_map = find(rendered, "ConfigMap", source["configMapRef"]["name"])
        env |= {name: {"value": value} for name, value in config_map["data"].items()}
    for entry in container["env"]:
        assert entry["name"] not in env, f"{entry['name']} set twice"
        env[entry["name"]] = entry
    return env


def _mount_of(rendered: list[dict[str, Any]], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The volume mount holding ``path`` and its volume."""
    mounts = [m for m in _container(rendered)["volumeMounts"] if PurePosixPath(path).is_relative_to(m["mountPath"])]
    assert mounts, f"{path} is on no mounted volume (the root filesystem is read-only)"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    volume = next(v for v in _pod(rendered)["volumes"] if v["name"] == mount["name"])
    return mount, volume


def test_generated_copies_are_current() -> None:
    """manifests/policies and the PrometheusRule are byte-identical to what generate.py makes of their sources."""
    result = run([sys.executable, str(MANIFESTS / "generate.py"), "--check"])
    assert result.returncode == 0, result.stderr


def test_base_renders_the_service_objects_in_one_namespace(rendered: list[dict[str, Any]]) -> None:
    def name(obj: dict[str, Any]) -> str:  # generated ConfigMaps carry a content hash
        full = str(obj["metadata"]["name"])
        return full.rsplit("-", 1)[0] if obj["kind"] == "ConfigMap" else full

    assert sorted((obj["kind"], name(obj)) for obj in rendered) == [
        ("ConfigMap", "rollbackbot-allowed-signers"),
        ("ConfigMap", "rollbackbot-policies"),
        ("ConfigMap", "rollbackbot-settings"),
        ("Deployment", "rollbackbot"),
        ("Namespace", NAMESPACE),
        ("PersistentVolumeClaim", "rollbackbot-data"),
        ("PrometheusRule", "model-anomaly"),
        ("PrometheusRule", "rollbackbot"),
        ("Service", "rollbackbot"),
        ("ServiceAccount", "rollbackbot"),
        ("ServiceMonitor", "rollbackbot"),
    ]
    for obj in rendered:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]
    # Credentials are never part of the base: syncing it must not overwrite a real Secret.
    assert not [obj for obj in rendered if obj["kind"] == "Secret"]


def test_core_kinds_are_valid_kubernetes(rendered: list[dict[str, Any]]) -> None:
    kubernetes_validate = require_module("kubernetes_validate", "pip install kubernetes-validate")
    core = [obj for obj in rendered if obj["kind"] in CORE_KINDS]
    assert {obj["kind"] for obj in core} == CORE_KINDS
    secret = load_yaml(EXAMPLES / "secret-rollbackbot.example.yaml")
    for obj in [*core, secret]:
        # strict: unknown fields (a typo such as `readOnlyRootFileSystem`) are errors too.
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_schema_validation_catches_a_broken_deployment(rendered: list[dict[str, Any]]) -> None:
    kubernetes_validate = require_module("kubernetes_validate", "pip install kubernetes-validate")
    deployment = find(rendered, "Deployment", "rollbackbot")
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "one"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_pod_is_hardened(rendered: list[dict[str, Any]]) -> None:
    pod, container = _pod(rendered), _container(rendered)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID  # the image's user
    assert pod["securityContext"]["fsGroup"] == UID  # volume and Secret files readable by it
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind
    assert not container["image"].endswith(":latest") and ":" in container["image"]

    account = find(rendered, "ServiceAccount", "rollbackbot")
    assert account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "rollbackbot"
    assert pod["automountServiceAccountToken"] is False
    labels = find(rendered, "Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_one_pod_owns_the_read_write_once_volume(rendered: list[dict[str, Any]]) -> None:
    deployment = find(rendered, "Deployment", "rollbackbot")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    claim = find(rendered, "PersistentVolumeClaim", "rollbackbot-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    _, volume = _mount_of(rendered, "/var/lib/rollbackbot")
    assert volume["persistentVolumeClaim"]["claimName"] == "rollbackbot-data"
    _, tmp = _mount_of(rendered, "/tmp/x")
    assert "emptyDir" in tmp


def test_probes_and_port(rendered: list[dict[str, Any]]) -> None:
    container = _container(rendered)
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    args = container["args"]
    assert args[args.index("--port") + 1] == "8080"
    assert args[args.index("--host") + 1] == "0.0.0.0"  # reachable by the kubelet and the Service
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # The clone before the port opens must not be cut short by the liveness probe.
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthz", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300

    service = find(rendered, "Service", "rollbackbot")
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": "http"}]
    pod_labels = find(rendered, "Deployment", "rollbackbot")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_every_setting_comes_from_the_manifests(rendered: list[dict[str, Any]]) -> None:
    env = _settings_env(rendered)
    fields = Settings.model_fields
    known = {f"ROLLBACKBOT_{name.upper()}" for name in fields}
    assert {name for name in env if name.startswith("ROLLBACKBOT_")} <= known, "a misspelt setting"
    for name, field in fields.items():
        variable = f"ROLLBACKBOT_{name.upper()}"
        if field.is_required():
            assert variable in env, f"{variable} is required and not set"
        secret = SecretStr in typing.get_args(field.annotation) or field.annotation is SecretStr
        if secret and variable in env:
            # Tokens come from the Secret, never as literal values in a manifest.
            assert "secretKeyRef" in env[variable].get("valueFrom", {}), variable


def test_settings_point_at_mounted_paths(rendered: list[dict[str, Any]]) -> None:
    env = {name: entry["value"] for name, entry in _settings_env(rendered).items() if "value" in entry}

    mount, volume = _mount_of(rendered, env["ROLLBACKBOT_POLICIES"])
    assert mount["mountPath"] == env["ROLLBACKBOT_POLICIES"] and mount["readOnly"] is True
    assert find(rendered, "ConfigMap", volume["configMap"]["name"])["metadata"]["name"].startswith(
        "rollbackbot-policies-"
    )

    signers = PurePosixPath(env["ROLLBACKBOT_GIT_ALLOWED_SIGNERS"])
    mount, volume = _mount_of(rendered, str(signers))
    assert (
        signers.relative_to(mount["mountPath"]).as_posix()
        in find(rendered, "ConfigMap", volume["configMap"]["name"])["data"]
    )

    database = urlparse(env["ROLLBACKBOT_DATABASE_URL"])
    assert database.scheme == "sqlite"
    evidence = urlparse(env["ROLLBACKBOT_EVIDENCE_URL"])
    assert evidence.scheme == "file"
    writable = [env["ROLLBACKBOT_GIT_WORKDIR"], database.path.removeprefix("/"), evidence.netloc + evidence.path]
    for path in writable:
        assert PurePosixPath(path).is_absolute(), path
        mount, volume = _mount_of(rendered, path)
        assert volume.get("persistentVolumeClaim", {}).get("claimName") == "rollbackbot-data", path
        assert not mount.get("readOnly", False)


def test_git_ssh_uses_the_mounted_key_and_pinned_host_keys(rendered: list[dict[str, Any]]) -> None:
    command = _settings_env(rendered)["GIT_SSH_COMMAND"]["value"].split()
    assert command[0] == "ssh"
    assert "StrictHostKeyChecking=yes" in command
    key = command[command.index("-i") + 1]
    known_hosts = next(arg.split("=", 1)[1] for arg in command if arg.startswith("UserKnownHostsFile="))
    for path in (key, known_hosts):
        mount, volume = _mount_of(rendered, path)
        items = {item["path"]: item["key"] for item in volume["secret"]["items"]}
        assert PurePosixPath(path).relative_to(mount["mountPath"]).as_posix() in items
    # ssh refuses a key it owns that others can read; Secret files are root-owned, group fsGroup.
    assert volume["secret"]["defaultMode"] == 0o440


def test_secret_example_has_placeholders_for_every_key_used(rendered: list[dict[str, Any]]) -> None:
    secret = load_yaml(EXAMPLES / "secret-rollbackbot.example.yaml")
    assert "data" not in secret, "stringData only: nothing real-looking, not even base64"
    values = secret["stringData"]
    assert set(values.values()) == {"REPLACE_ME"}
    referenced = {
        entry["valueFrom"]["secretKeyRef"]["key"]
        for entry in _container(rendered)["env"]
        if "secretKeyRef" in entry.get("valueFrom", {})
    }
    for volume in _pod(rendered)["volumes"]:
        if "secret" in volume:
            assert volume["secret"]["secretName"] == secret["metadata"]["name"]
            referenced |= {item["key"] for item in volume["secret"]["items"]}
    assert referenced == set(values)
    assert secret["metadata"]["namespace"] == NAMESPACE


def test_policies_config_map_is_the_repository_policies(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    data = find(rendered, "ConfigMap", "rollbackbot-policies")["data"]
    shipped = {
        p.name: p.read_text(encoding="utf-8") for p in (REPO / "policies").iterdir() if p.suffix in {".yaml", ".yml"}
    }
    assert shipped and data == shipped
    # What the pod mounts passes `rollbackbot policy check`.
    for name, text in data.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert check_directory(tmp_path) == []


def test_service_monitor_scrapes_metrics(rendered: list[dict[str, Any]]) -> None:
    monitor = find(rendered, "ServiceMonitor", "rollbackbot")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = find(rendered, "Service", "rollbackbot")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_prometheus_rule_carries_the_tested_rule_file(rendered: list[dict[str, Any]]) -> None:
    rule = find(rendered, "PrometheusRule", "model-anomaly")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == load_yaml(MONITORING / "model-anomaly-rules.yml")


def test_argocd_application_example_matches_its_policy(rendered: list[dict[str, Any]]) -> None:
    app = load_yaml(EXAMPLES / "argocd-application-docsum-llm.yaml")
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    [policy] = [p for p in load_policies(REPO / "policies") if p.name == "docsum-llm-injection"]
    target = resolve_target(policy, {"app": app["metadata"]["name"]})
    assert app["metadata"]["name"] in target.apps
    assert app["spec"]["project"] == policy.spec.target.project
    assert app["spec"]["source"]["path"] in target.paths
    # It tracks the repository and branch rollbackbot commits its rollbacks to.
    settings = find(rendered, "ConfigMap", "rollbackbot-settings")["data"]
    assert app["spec"]["source"]["repoURL"] == settings["ROLLBACKBOT_GIT_URL"]
    assert app["spec"]["source"]["targetRevision"] == settings["ROLLBACKBOT_GIT_BRANCH"]
    assert app["spec"]["destination"]["namespace"]
    assert set(app["spec"]["syncPolicy"]["automated"]) == {"prune", "selfHeal"}
