"""The shadow ends on its own at its ttl, or when a person asks: one commit removes the mirror and the sandbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rollbackbot.core.incidents import Incident, IncidentState
from rollbackbot.metrics import REGISTRY
from rollbackbot.service import Service
from rollbackbot.testing.gitops import GitOpsSandbox
from tests.canary.helpers import canary_policy
from tests.canary.rig import QUERY, build, canary_rig
from tests.canary.test_service_canary import COMPROMISED, _fire, _service

SANDBOX_FILE = "apps/chat-llm/shadow-chat-llm-v2-shadow.yaml"


async def _until_shadow_off(service: Service, incident_id: str) -> Incident:
    for _ in range(600):
        incident = service.store.get(incident_id)
        assert incident is not None
        if any(e.detail.startswith("shadow off:") for e in incident.events):
            return incident
        await asyncio.sleep(0.05)
    raise AssertionError("the shadow was never removed")


def _rig_sandbox(tmp: Path) -> GitOpsSandbox:
    sandbox = build(tmp, "HTTPRoute")
    sandbox.commit_paths({"apps/chat-llm/v2.yaml": COMPROMISED}, "chat-llm: v2 workload")
    return sandbox


async def test_the_shadow_is_removed_at_its_ttl_in_one_commit(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.001]}, sandbox=_rig_sandbox(tmp_path)) as rig:
        service = _service(rig, tmp_path, shadow_ttl="1s")
        try:
            incident_id = await _fire(service)
            on = service.store.get(incident_id)
            assert on is not None and on.state is IncidentState.rolled_back
            assert "RequestMirror" in rig.route()
            assert REGISTRY.get_sample_value("rollbackbot_canary_shadow", {"app": "chat-llm"}) == 1
            off = await _until_shadow_off(service, incident_id)
            assert REGISTRY.get_sample_value("rollbackbot_canary_shadow", {"app": "chat-llm"}) == 0
            await asyncio.wait_for(service.idle(), timeout=30)
        finally:
            await service.stop()
        trailers = rig.step_commits()
        assert [c.get("Rollback-Shadow") for c in trailers] == [None, None, None, "sandbox", "on", "off"]
        assert trailers[-1]["Rollback-Weights"] == "chat-llm-v1=100,chat-llm-v2=0"  # never back toward v2
        assert rig.files_changed()[-1] == sorted([SANDBOX_FILE, "apps/chat-llm/route.yaml"])
        assert "RequestMirror" not in rig.route() and "weight: 100" in rig.route()
        assert SANDBOX_FILE not in rig.sandbox.git("ls-tree", "-r", "--name-only", rig.sandbox.branch)
        assert off.state is IncidentState.rolled_back and off.rollback_commit == on.rollback_commit


async def test_a_person_ends_the_shadow_before_its_ttl_once(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.001]}, sandbox=_rig_sandbox(tmp_path)) as rig:
        service = _service(rig, tmp_path)
        try:
            incident_id = await _fire(service)
            assert [c.get("Rollback-Shadow") for c in rig.step_commits()][-1] == "on"
            first = service.end_shadow(incident_id, "Dana Ops U012ABC")
            second = service.end_shadow(incident_id, "Sam Sec U034DEF")  # a second click, before the removal
            assert first.acted and not second.acted and "already asked" in second.message
            await _until_shadow_off(service, incident_id)
            await asyncio.wait_for(service.idle(), timeout=30)
            late = service.end_shadow(incident_id, "Sam Sec U034DEF")
        finally:
            await service.stop()
        assert not late.acted and "no shadow is on" in late.message
        assert [c.get("Rollback-Shadow") for c in rig.step_commits()][-2:] == ["on", "off"]


async def test_a_restart_after_the_removal_commit_does_not_commit_it_again(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.001]}, sandbox=_rig_sandbox(tmp_path)) as rig:
        service = _service(rig, tmp_path)
        try:
            incident_id = await _fire(service)
            incident = service.store.get(incident_id)
            assert incident is not None
            # As if the process died right after pushing the removal, before recording it.
            await rig.rollout.shadow_off(incident_id, canary_policy(), incident.alert.labels)
            assert service.end_shadow(incident_id, "Dana Ops U012ABC").acted
            done = await _until_shadow_off(service, incident_id)
        finally:
            await service.stop()
        assert [c.get("Rollback-Shadow") for c in rig.step_commits()].count("off") == 1
        assert any("already on the deploy branch" in e.detail for e in done.events)
