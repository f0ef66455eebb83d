"""Policy reload in a real ``rollbackbot serve``: the Kubernetes ConfigMap symlink swap, SIGHUP, a broken
set refused as a whole, and an incident in flight that outlives the removal of its policy file."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import REPO_ROOT
from tests.e2e.service_process import ServiceProcess, service_process, wait_for

pytestmark = pytest.mark.e2e

SHIPPED = REPO_ROOT / "policies"
DOCSUM_POLICY = "10-docsum-llm-injection.yaml"
BADGE_POLICY = "30-badge-vision-access.yaml"
DOCSUM = {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"}
BADGE = {"alertname": "ModelFalseNegativeSpike", "app": "badge-vision", "severity": "critical"}
SUCCESS = 'rollbackbot_policy_reload_total{result="success"}'
FAILURE = 'rollbackbot_policy_reload_total{result="failure"}'


class ConfigMapVolume:
    """A directory laid out as the kubelet mounts a ConfigMap, updated the way the kubelet updates it.

    ``..<timestamp>/`` holds the files, ``..data`` is a symlink to it, and each key is a symlink
    ``KEY -> ..data/KEY``. An update writes a new timestamped directory, adds symlinks for new keys,
    renames a fresh ``..data_tmp`` symlink over ``..data`` (the atomic step), then removes the old
    directory and the symlinks of keys that are gone.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.generation = 0

    def publish(self, files: dict[str, str]) -> None:
        self.generation += 1
        data = self.root / f"..2026_12_04_10_00_{self.generation:02d}.{self.generation:09d}"
        data.mkdir()
        for name, text in files.items():
            (data / name).write_text(text)
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)
        previous = (self.root / "..data").resolve() if (self.root / "..data").is_symlink() else None
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(data.name)
        os.replace(tmp, self.root / "..data")
        if previous is not None:
            shutil.rmtree(previous)
        for link in self.root.iterdir():
            if link.is_symlink() and not link.name.startswith("..") and link.name not in files:
                link.unlink()


def _shipped(*names: str) -> dict[str, str]:
    return {name: (SHIPPED / name).read_text() for name in names}


def _opened(service: ServiceProcess, labels: dict[str, str]) -> list[str]:
    response = service.fire(labels)
    assert response.status_code == 202, response.text
    return list(response.json()["incidents"])


def test_configmap_symlink_swap_is_picked_up_and_a_broken_set_is_refused_whole(tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path / "policies")
    volume.publish(_shipped(DOCSUM_POLICY))
    with service_process(tmp_path, policies=volume.root) as service:
        service.start(ROLLBACKBOT_POLICY_POLL_SECONDS="0.2")
        assert _opened(service, BADGE) == [], "badge-vision has no policy yet"

        volume.publish(_shipped(DOCSUM_POLICY, BADGE_POLICY))
        wait_for(lambda: service.metric(SUCCESS) == 1, "the new ConfigMap generation to be loaded")
        assert service.metric("rollbackbot_policy_last_reload_success_timestamp_seconds")
        assert len(_opened(service, BADGE)) == 1

        broken = _shipped(DOCSUM_POLICY, BADGE_POLICY)
        broken[DOCSUM_POLICY] = broken[DOCSUM_POLICY].replace("  mode:", "  moed:", 1)
        volume.publish(broken)
        wait_for(lambda: service.metric(FAILURE) == 1, "the broken generation to be refused")
        assert "policy reload refused" in service.log_text()
        assert f"{DOCSUM_POLICY}:" in service.log_text(), "the log line names the file and line"
        # Refused as a whole: both policies of the previous set still act, nothing of the new one does.
        other_badge = BADGE | {"alertname": "ModelHighConfidenceMisclassification"}
        assert len(_opened(service, other_badge)) == 1
        assert len(_opened(service, DOCSUM)) == 1
        assert service.metric(SUCCESS) == 1
        assert httpx.get(f"{service.url}/readyz", timeout=10).status_code == 200


def test_sighup_reloads_without_polling(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    shutil.copy(SHIPPED / DOCSUM_POLICY, policies)
    with service_process(tmp_path, policies=policies) as service:
        service.start(ROLLBACKBOT_POLICY_POLL_SECONDS="0")
        assert _opened(service, BADGE) == []
        shutil.copy(SHIPPED / BADGE_POLICY, policies)
        assert service.metric(SUCCESS) == 0
        service.signal(signal.SIGHUP)
        wait_for(lambda: service.metric(SUCCESS) == 1, "SIGHUP to reload the policies")
        assert len(_opened(service, BADGE)) == 1
        assert service.proc is not None and service.proc.poll() is None, "SIGHUP must not stop the service"


def test_incident_in_flight_completes_after_its_policy_file_is_removed(tmp_path: Path) -> None:
    # A proposal whose deadline approves it: the incident crosses several steps after the reload.
    proposing = (SHIPPED / DOCSUM_POLICY).read_text()
    for old, new in (
        ("mode: auto", "mode: propose"),
        ("timeout: 30m", "timeout: 5s"),
        ("onTimeout: expire", "onTimeout: rollback"),
    ):
        assert old in proposing
        proposing = proposing.replace(old, new, 1)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / DOCSUM_POLICY).write_text(proposing)
    shutil.copy(SHIPPED / BADGE_POLICY, policies)
    with service_process(tmp_path, policies=policies) as service:
        service.start(ROLLBACKBOT_POLICY_POLL_SECONDS="0")
        [incident_id] = _opened(service, DOCSUM)
        service.wait_state(incident_id, {"awaiting_approval"})

        (policies / DOCSUM_POLICY).unlink()
        service.signal(signal.SIGHUP)
        wait_for(lambda: service.metric(SUCCESS) == 1, "the reduced set to be loaded")
        assert _opened(service, DOCSUM | {"severity": "page"}) == [], "new docsum-llm alerts have no policy now"
        assert service.incident(incident_id)["state"] == "awaiting_approval", "reloaded too late to test anything"

        done = service.wait_state(incident_id, {"rolled_back", "failed", "expired"})
        assert done["state"] == "rolled_back", done
        assert done["policy"] == "docsum-llm-injection"
        assert done["approved_by"] == "timeout (no decision)", "the stored policy's onTimeout was applied"


def test_incident_resumed_after_restart_uses_its_stored_policy(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    for name in (DOCSUM_POLICY, BADGE_POLICY):
        shutil.copy(SHIPPED / name, policies)
    with service_process(tmp_path, policies=policies) as service:
        service.start(ROLLBACKBOT_SHUTDOWN_GRACE_SECONDS="0")
        service.argocd_faults("docsum-llm", healthOverride="Progressing")  # hold the incident mid-sync
        [incident_id] = _opened(service, DOCSUM)
        service.wait_state(incident_id, {"syncing"})
        assert service.proc is not None
        service.signal(signal.SIGTERM)
        assert service.proc.wait(timeout=30) == 0

        (policies / DOCSUM_POLICY).unlink()  # renamed or removed while the pod was down
        service.argocd_faults("docsum-llm", healthOverride=None)
        service.start()
        done = service.wait_state(incident_id, {"rolled_back", "failed"})
        assert done["state"] == "rolled_back", done
