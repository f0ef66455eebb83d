"""The pod's termination grace period leaves room for the service's own drain (rollbackbot.shutdown)."""

from __future__ import annotations

from rollbackbot.settings import Settings
from rollbackbot.shutdown import CONNECTION_CLOSE_SECONDS
from tests.deploy.conftest import MANIFESTS, load_yaml


def test_kubernetes_waits_longer_than_the_service_drains() -> None:
    pod = load_yaml(MANIFESTS / "deployment.yaml")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0].get("env", [])}
    grace = float(
        env.get("ROLLBACKBOT_SHUTDOWN_GRACE_SECONDS") or Settings.model_fields["shutdown_grace_seconds"].default
    )
    # Drain, then close connections, then stop: all before the kubelet's SIGKILL, with a second to spare.
    assert pod["terminationGracePeriodSeconds"] >= grace + CONNECTION_CLOSE_SECONDS + 1
