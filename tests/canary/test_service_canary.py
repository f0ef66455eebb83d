"""A policy with a trafficRouter: the service runs the canary instead of the whole-path rollback commit."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.canary import Queries
from rollbackbot.clock import FakeClock, SystemClock
from rollbackbot.core.alerts import AlertmanagerPayload
from rollbackbot.core.incidents import AlertRef, Incident, IncidentState, new_incident
from rollbackbot.core.policy import Analysis
from rollbackbot.service import Service
from rollbackbot.testing.alertmanager import alert, notification
from tests.canary.helpers import canary_policy
from tests.canary.rig import QUERY, CanaryRig, build, canary_rig
from tests.canary.test_canary_e2e import WEIGHTS
from tests.service.fakes import FakeArgo, FakeGit


def _service(rig: CanaryRig, tmp: Path, **strategy: Any) -> Service:
    policy = canary_policy(**strategy)
    git = rig.rollout.steps_log.repo  # type: ignore[attr-defined]
    return Service(
        store=SqlIncidentStore(f"sqlite:///{tmp}/state.db"),
        git=git,
        argocd=rig.rollout.argocd,
        policies=[policy],
        clock=SystemClock(),
        canary=rig.rollout,
        watchdog_seconds=None,
    )


async def _fire(service: Service) -> str:
    labels = {"alertname": "ModelRefusalRateDrop", "app": "chat-llm", "severity": "warning"}
    body = notification([alert(labels, SystemClock().now() - timedelta(minutes=1))])
    incident_id = service.receive(AlertmanagerPayload.model_validate(body)).incidents[0]
    await asyncio.wait_for(service.idle(), timeout=60)
    return incident_id


async def _rolled_back(rig: CanaryRig, tmp: Path) -> Incident:
    """Fire the alert at a fresh service; the incident, which must end rolled_back."""
    service = _service(rig, tmp)
    try:
        incident = service.store.get(await _fire(service))
    finally:
        await service.stop()
    assert incident is not None and incident.state is IncidentState.rolled_back, incident
    return incident


async def test_the_service_rolls_back_by_canary_steps(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.001]}) as rig:
        incident = await _rolled_back(rig, tmp_path)
        assert [c["Rollback-Step"] for c in rig.step_commits()] == ["1/3", "2/3", "3/3"]
        assert incident.rollback_commit == rig.sandbox.head()
        details = [e.detail for e in incident.events]
        assert any("step 2/3 analysis passed" in d for d in details)
        assert any("Synced and Healthy" in d for d in details)


async def test_a_held_canary_waits_for_a_person_and_approval_completes_it(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.5]}) as rig:
        service = _service(rig, tmp_path)
        try:
            incident_id = await _fire(service)
            held = service.store.get(incident_id)
            assert held is not None and held.state is IncidentState.awaiting_approval
            assert held.events[-1].detail.startswith("canary held at 25% on the safe release (step 1/3)")
            assert held.not_before is None  # no deadline: the weights stay until a person decides
            assert [c["Rollback-Step"] for c in rig.step_commits()] == ["1/3"]
            assert service.approve(incident_id, "Dana Ops U012ABC").acted  # "Complete to 100 % now"
            await asyncio.wait_for(service.idle(), timeout=60)
            done = service.store.get(incident_id)
        finally:
            await service.stop()
        assert done is not None and done.state is IncidentState.rolled_back
        assert [c["Rollback-Step"] for c in rig.step_commits()] == ["1/3", "3/3"]
        assert "weight: 100" in rig.route()


COMPROMISED = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: chat-llm-v2, namespace: ml-prod}
spec:
  selector: {matchLabels: {app: chat-llm-v2}}
  template:
    metadata: {labels: {app: chat-llm-v2}}
    spec:
      containers:
        - {name: model, image: "registry.example/chat-llm@sha256:%s"}
""" % ("d0" * 32)


async def test_after_completion_the_shadow_of_the_compromised_digest_goes_on(tmp_path: Path) -> None:
    sandbox = build(tmp_path, "HTTPRoute")
    sandbox.commit_paths({"apps/chat-llm/v2.yaml": COMPROMISED}, "chat-llm: v2 workload")
    async with canary_rig(tmp_path, {QUERY: [0.001]}, sandbox=sandbox) as rig:
        incident = await _rolled_back(rig, tmp_path)
        shadow = [c.get("Rollback-Shadow") for c in rig.step_commits()]
        assert shadow == [None, None, None, "sandbox", "on"]
        step_3 = rig.sandbox.git("rev-list", "--reverse", f"{rig.head_before}..main").split()[2]
        assert incident.rollback_commit == step_3  # the 100 % step, not the shadow's commits
        box = rig.sandbox.show(rig.sandbox.branch, "apps/chat-llm/shadow-chat-llm-v2-shadow.yaml")
        assert "registry.example/chat-llm@sha256:" + "d0" * 32 in box
        assert '"gateway-system"' in box  # ingress only from the Gateway's namespace (the mirroring proxies)
        assert any(e.detail.startswith("shadow on:") for e in incident.events)


async def test_a_shadow_that_cannot_start_is_recorded_and_the_rollback_still_succeeds(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.001]}) as rig:  # no Deployment chat-llm-v2 in the repo
        incident = await _rolled_back(rig, tmp_path)
        assert any(e.detail.startswith("shadow not started: no Deployment chat-llm-v2") for e in incident.events)
        assert "Rollback-Shadow" not in str(rig.step_commits())


async def test_the_steps_show_on_the_incident_while_the_canary_runs(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.001]}) as rig:
        seen: list[tuple[str, list[str]]] = []
        scripted = rig.rollout.queries

        def queries(analysis: Analysis) -> Queries:
            [incident] = service.store.recent(1)  # as the incident page or another replica reads it now
            seen.append((incident.state.value, [e.detail for e in incident.events]))
            return scripted(analysis)

        rig.rollout = dataclasses.replace(rig.rollout, queries=queries)
        service = _service(rig, tmp_path)
        try:
            await _fire(service)
        finally:
            await service.stop()
        state, details = seen[0]  # during step 1's analysis
        assert state == "rolling_back"
        assert any(d.startswith("step 1/3: chat-llm-v1=25,chat-llm-v2=75 committed") for d in details), details
        assert any(d.startswith("step 1/3: Synced and Healthy") for d in details), details
        final = service.store.recent(1)[0]
        assert final.state is IncidentState.rolled_back
        assert len({(e.at, e.detail) for e in final.events}) == len(final.events)  # each event once


def test_a_working_canary_step_is_not_taken_for_stalled_until_its_sync_and_pause_are_over(tmp_path: Path) -> None:
    clock = FakeClock()
    policy = canary_policy(pause="60s")  # sync timeout 8s, analysis every 1s
    service = Service(
        store=SqlIncidentStore(f"sqlite:///{tmp_path}/state.db"),
        git=FakeGit(),
        argocd=FakeArgo(),
        policies=[policy],
        clock=clock,
        watchdog_seconds=None,
        watchdog_grace=120,
    )
    ref = AlertRef("ModelRefusalRateDrop", "f00dfeed", clock.now(), {"app": "chat-llm"})
    opened = new_incident(app="chat-llm", policy=policy.name, mode="auto", alert=ref, target={}, now=clock.now())
    stepping = opened.with_policy(policy).with_state(IncidentState.rolling_back, clock.now(), "canary")
    assert service.store.create(stepping)
    clock.advance(120 + 8 + 60)  # the grace, plus one step's sync and pause: a replica may still be on it
    assert not service._stalled(stepping, clock.now())
    clock.advance(1 + 0.5)  # and one analysis interval more: nobody is
    assert service._stalled(stepping, clock.now())


class _Notes:
    """A chat that keeps what the service tells it (the Slack side is tested in test_slack_buttons)."""

    def __init__(self) -> None:
        self.noted: list[str] = []

    async def incident_changed(self, incident: Incident, previous: IncidentState | None) -> None:
        return None

    async def incident_noted(self, incident: Incident, detail: str) -> None:
        self.noted.append(detail)


async def test_each_step_reaches_the_chat_as_it_happens(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.001]}) as rig:
        service = _service(rig, tmp_path)
        service.chat = notes = _Notes()
        try:
            await _fire(service)
        finally:
            await service.stop()
        committed = [d.split(" committed")[0] for d in notes.noted if " committed " in d]
        assert committed == [f"step {k}/3: {w}" for k, w in zip((1, 2, 3), WEIGHTS, strict=True)]
