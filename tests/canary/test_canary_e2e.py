"""A canary rollback end to end: real git with signed tags, the Argo CD stand-in, a scripted Prometheus API."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from pathlib import Path

import pytest
import yaml

from rollbackbot.canary import CanaryState, Queries, StepLog
from rollbackbot.core.policy import Analysis
from rollbackbot.core.traffic import StepCommit, StepPosition
from rollbackbot.errors import PolicyError
from rollbackbot.metrics import REGISTRY
from tests.canary.helpers import canary_policy
from tests.canary.rig import QUERY, ROUTE_FILE, canary_rig

INCIDENT = "inc-canary-1"
_ANALYSIS = "rollbackbot_canary_analysis_total"
LABELS = {"alertname": "ModelRefusalRateDrop", "app": "chat-llm", "severity": "warning"}
WEIGHTS = ["chat-llm-v1=25,chat-llm-v2=75", "chat-llm-v1=50,chat-llm-v2=50", "chat-llm-v1=100,chat-llm-v2=0"]


@pytest.mark.parametrize("kind", ["HTTPRoute", "VirtualService"])
async def test_passing_analysis_moves_25_50_100_one_commit_per_step(tmp_path: Path, kind: str) -> None:
    passes_before = REGISTRY.get_sample_value(_ANALYSIS, {"app": "chat-llm", "verdict": "passed"}) or 0
    async with canary_rig(tmp_path, {QUERY: [0.001]}, kind) as rig:
        outcome = await rig.rollout.run(INCIDENT, canary_policy(kind), LABELS)
        assert (
            REGISTRY.get_sample_value("rollbackbot_canary_weight", {"app": "chat-llm", "backend": "chat-llm-v2"}) == 0
        )
        assert REGISTRY.get_sample_value(_ANALYSIS, {"app": "chat-llm", "verdict": "passed"}) == passes_before + 4
        assert outcome.state is CanaryState.completed
        commits = rig.step_commits()
        assert [c["Rollback-Step"] for c in commits] == ["1/3", "2/3", "3/3"]
        assert [c["Rollback-Weights"] for c in commits] == WEIGHTS
        assert all(c["Rollback-Incident"] == INCIDENT for c in commits)
        assert rig.files_changed() == [[ROUTE_FILE]] * 3  # only the route file, every time
        # Argo CD synced each step's commit, and the last one is what runs
        synced = [r["body"].get("revision") for r in rig.argo.requests if str(r["path"]).endswith("/sync")]
        heads = rig.sandbox.git("rev-list", "--reverse", f"{rig.head_before}..{rig.sandbox.branch}").split()
        assert synced == heads
        # two analyses (after steps 1 and 2), two passes each; none after the last step
        assert len(rig.prometheus.asked) == 4
        assert sum("analysis passed" in e for e in rig.events) == 4
        assert any("Synced and Healthy" in e and "step 2/3" in e for e in rig.events)


async def test_a_failed_analysis_holds_without_a_new_commit_and_complete_finishes(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.001, 0.001, 0.2]}) as rig:
        policy = canary_policy()
        outcome = await rig.rollout.run(INCIDENT, policy, LABELS)
        assert outcome.state is CanaryState.held
        assert outcome.position == StepPosition(2, 3) and outcome.safe_weight == 50
        assert "0.2 > max 0.01" in outcome.detail
        assert [c["Rollback-Step"] for c in rig.step_commits()] == ["1/3", "2/3"]  # held: nothing new
        assert "weight: 50" in rig.route()
        # The person presses "Complete to 100 % now"
        done = await rig.rollout.complete(INCIDENT, policy, LABELS)
        assert done.state is CanaryState.completed
        assert [c["Rollback-Weights"] for c in rig.step_commits()][-1] == WEIGHTS[2]
        # a second click changes nothing
        await rig.rollout.complete(INCIDENT, policy, LABELS)
        assert len(rig.step_commits()) == 3


async def test_an_empty_result_is_inconclusive_never_a_pass_and_times_out_into_hold(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [None]}) as rig:
        policy = canary_policy(stepTimeout="3s")
        outcome = await rig.rollout.run(INCIDENT, policy, LABELS)
        assert outcome.state is CanaryState.held and outcome.position == StepPosition(1, 3)
        assert "step timeout: 0 of 2 passes" in outcome.detail
        assert [c["Rollback-Step"] for c in rig.step_commits()] == ["1/3"]
        assert all("analysis inconclusive" in e for e in rig.events if "analysis" in e)
        assert len(rig.prometheus.asked) == 4  # runs at 0s, 1s, 2s and 3s of the 3s step timeout (interval 1s)


async def test_nan_fails_and_onfailure_complete_goes_to_100(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [math.nan]}) as rig:
        outcome = await rig.rollout.run(INCIDENT, canary_policy(onFailure="complete"), LABELS)
        assert outcome.state is CanaryState.completed
        assert [c["Rollback-Step"] for c in rig.step_commits()] == ["1/3", "3/3"]
        assert [c["Rollback-Weights"] for c in rig.step_commits()] == [WEIGHTS[0], WEIGHTS[2]]


async def test_an_inconclusive_run_resets_the_streak(tmp_path: Path) -> None:
    # pass, empty, pass, pass: the empty result in the middle must not count toward the two in a row
    async with canary_rig(tmp_path, {QUERY: [0.001, None, 0.001, 0.001, 0.001, 0.001]}) as rig:
        policy = canary_policy(steps=[50, 100])
        outcome = await rig.rollout.run(INCIDENT, policy, LABELS)
        assert outcome.state is CanaryState.completed
        assert len(rig.prometheus.asked) == 4


async def test_a_critical_alert_goes_straight_to_100(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.5]}) as rig:
        outcome = await rig.rollout.run(INCIDENT, canary_policy(), LABELS | {"severity": "critical"})
        assert outcome.state is CanaryState.completed
        assert [(c["Rollback-Step"], c["Rollback-Weights"]) for c in rig.step_commits()] == [("1/1", WEIGHTS[2])]
        assert rig.prometheus.asked == []  # no analysis on the instant path
        assert any("instantWhen" in e for e in rig.events)


async def test_a_restart_resumes_at_the_step_on_the_branch_without_committing_it_again(tmp_path: Path) -> None:
    class Crash(Exception):
        pass

    async with canary_rig(tmp_path, {QUERY: [0.001]}) as rig:
        policy = canary_policy()

        async def die_in_the_pause(seconds: float) -> None:
            raise Crash  # the process dies after step 1 is committed and synced

        rig.rollout.sleep = die_in_the_pause
        with pytest.raises(Crash):
            await rig.rollout.run(INCIDENT, policy, LABELS)
        assert [c["Rollback-Step"] for c in rig.step_commits()] == ["1/3"]

        async def no_wait(seconds: float) -> None:
            return None

        rig.rollout.sleep = no_wait
        outcome = await rig.rollout.run(INCIDENT, policy, LABELS)
        assert outcome.state is CanaryState.completed
        assert [c["Rollback-Step"] for c in rig.step_commits()] == ["1/3", "2/3", "3/3"]
        assert any(e.startswith("resuming at step 1/3") for e in rig.events)


IMAGE = "registry.example/chat-llm@sha256:" + "ab" * 32


@pytest.mark.parametrize("kind", ["HTTPRoute", "VirtualService"])
async def test_shadow_adds_the_sandbox_before_the_mirror_and_removes_both(tmp_path: Path, kind: str) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.001]}, kind) as rig:
        policy = canary_policy(kind)
        await rig.rollout.run(INCIDENT, policy, LABELS | {"severity": "critical"})
        completed_route = rig.route()
        await rig.rollout.shadow_on(INCIDENT, policy, LABELS, image=IMAGE, proxy_namespace="gateway-system")
        sandbox_file = "apps/chat-llm/shadow-chat-llm-v2-shadow.yaml"
        commits, changed = rig.step_commits(), rig.files_changed()
        assert [c.get("Rollback-Shadow") for c in commits] == [None, "sandbox", "on"]
        assert changed[1:] == [[sandbox_file], [ROUTE_FILE]]  # the sandbox first, then the route names it
        sandbox = list(yaml.safe_load_all(rig.sandbox.show(rig.sandbox.branch, sandbox_file)))
        deployment = next(o for o in sandbox if o["kind"] == "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["containers"][0]["image"] == IMAGE
        assert "Secret" not in str(sandbox) and "envFrom" not in str(pod)
        policy_object = next(o for o in sandbox if o["kind"] == "NetworkPolicy")
        assert policy_object["spec"]["egress"] == [] and "Egress" in policy_object["spec"]["policyTypes"]
        assert deployment["metadata"]["namespace"] == "ml-quarantine"
        assert ("ReferenceGrant" in {o["kind"] for o in sandbox}) is (kind == "HTTPRoute")
        route = rig.route()
        assert "chat-llm-v2-shadow" in route and ("percent: 5" in route or "value: 5.0" in route)
        # Argo CD deployed the sandbox objects with the app
        live = {(key[1], key[2], key[3]) for key in rig.argo.apps["chat-llm"].live}
        assert ("Deployment", "ml-quarantine", "chat-llm-v2-shadow") in live
        assert ("NetworkPolicy", "ml-quarantine", "chat-llm-v2-shadow") in live
        await rig.rollout.shadow_off(INCIDENT, policy, LABELS)
        assert rig.step_commits()[-1]["Rollback-Shadow"] == "off"
        assert rig.route() == completed_route
        assert sandbox_file not in rig.sandbox.git("ls-tree", "-r", "--name-only", rig.sandbox.branch)
        live = {(key[1], key[2], key[3]) for key in rig.argo.apps["chat-llm"].live}
        assert ("Deployment", "ml-quarantine", "chat-llm-v2-shadow") not in live  # pruned


async def test_the_sandbox_only_runs_a_digest_and_never_in_production(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.001]}) as rig:
        policy = canary_policy()
        await rig.rollout.run(INCIDENT, policy, LABELS | {"severity": "critical"})
        with pytest.raises(PolicyError, match="by digest only"):
            await rig.rollout.shadow_on(INCIDENT, policy, LABELS, image="chat-llm:latest", proxy_namespace="gw")
        production = canary_policy()
        shadow = production.spec.shadow
        assert shadow is not None
        same_ns = production.model_copy(
            update={
                "spec": production.spec.model_copy(
                    update={
                        "shadow": shadow.model_copy(
                            update={"sandbox": shadow.sandbox.model_copy(update={"namespace": "ml-prod"})}
                        )
                    }
                )
            }
        )
        with pytest.raises(PolicyError, match="production namespace"):
            await rig.rollout.shadow_on(INCIDENT, same_ns, LABELS, image=IMAGE, proxy_namespace="gw")
        assert len(rig.step_commits()) == 1  # nothing written


async def test_changed_steps_never_move_traffic_back_toward_the_compromised_release(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.001, 0.001, 0.5]}) as rig:
        held = await rig.rollout.run(INCIDENT, canary_policy(), LABELS)
        assert held.state is CanaryState.held and held.safe_weight == 50
        # The policy now says 10, 40, 75, 100: resuming must not commit 10 or 40 (below the live 50).
        rig.prometheus.scripts[QUERY] = [0.001]
        done = await rig.rollout.run(INCIDENT, canary_policy(steps=[10, 40, 75, 100]), LABELS)
        assert done.state is CanaryState.completed
        weights = [c["Rollback-Weights"] for c in rig.step_commits()]
        assert weights[2:] == ["chat-llm-v1=75,chat-llm-v2=25", "chat-llm-v1=100,chat-llm-v2=0"]
        assert any("50% already on the safe release" in e for e in rig.events)


async def test_traffic_a_person_moved_to_the_safe_release_is_never_taken_back(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.5, 0.001]}) as rig:
        policy = canary_policy()
        held = await rig.rollout.run(INCIDENT, policy, LABELS)
        assert held.state is CanaryState.held and held.safe_weight == 25
        # While the canary is held at 25 %, someone moves 75 % to the safe release by hand.
        by_hand = rig.route().replace("weight: 25", "weight: X").replace("weight: 75", "weight: 25")
        rig.sandbox.commit_paths({ROUTE_FILE: by_hand.replace("weight: X", "weight: 75")}, "ops: 75 % to v1 by hand")
        resumed = await rig.rollout.run(INCIDENT, policy, LABELS)  # e.g. after a restart
        assert resumed.state is CanaryState.completed
        weights = [c.get("Rollback-Weights") for c in rig.step_commits()]
        assert weights == [WEIGHTS[0], None, WEIGHTS[2]]  # step 2/3 (50 %) was never written
        assert any("75% already on the safe release" in e for e in rig.events)


async def test_a_step_below_what_a_person_set_during_the_analysis_is_skipped(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.001]}) as rig:
        scripted = rig.rollout.queries

        def queries(analysis: Analysis) -> Queries:
            if "by hand" not in rig.sandbox.git("log", "-1", "--format=%s", rig.sandbox.branch):
                # During step 1's analysis, someone moves 60 % to the safe release.
                route = rig.route().replace("weight: 25", "weight: X").replace("weight: 75", "weight: 40")
                rig.sandbox.commit_paths({ROUTE_FILE: route.replace("weight: X", "weight: 60")}, "ops: 60 % by hand")
            return scripted(analysis)

        outcome = await dataclasses.replace(rig.rollout, queries=queries).run(INCIDENT, canary_policy(), LABELS)
        assert outcome.state is CanaryState.completed
        assert [c.get("Rollback-Weights") for c in rig.step_commits()] == [WEIGHTS[0], None, WEIGHTS[2]]
        assert any("step 2/3 skipped: the route already gives 60% to safe" in e for e in rig.events)


class _SlowGit:
    """The real step log, with every commit taking 0.3 s (a push over a slow network)."""

    def __init__(self, inner: StepLog) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def commit_step(self, step: StepCommit) -> str:
        time.sleep(0.3)
        return self.inner.commit_step(step)


async def test_git_work_never_blocks_the_event_loop(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.001]}) as rig:
        slow = dataclasses.replace(rig.rollout, steps_log=_SlowGit(rig.rollout.steps_log))
        gaps: list[float] = []

        async def webhook_like() -> None:  # what answering Alertmanager needs: the loop, often
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                gaps.append(time.monotonic() - last)
                last = time.monotonic()

        beat = asyncio.create_task(webhook_like())
        try:
            outcome = await slow.run(INCIDENT, canary_policy(), LABELS)
        finally:
            beat.cancel()
        assert outcome.state is CanaryState.completed
        assert max(gaps) < 0.25, max(gaps)  # three 0.3 s commits happened, none of them on the loop


async def test_a_step_that_cannot_become_healthy_holds_like_a_failed_analysis(tmp_path: Path) -> None:
    async with canary_rig(tmp_path, {QUERY: [0.001]}) as rig:
        rig.argo.set_faults("chat-llm", {"healthOverride": "Degraded"})  # the safe release breaks under load
        outcome = await rig.rollout.run(INCIDENT, canary_policy(), LABELS)
        assert outcome.state is CanaryState.held and outcome.safe_weight == 25
        assert outcome.detail.startswith("sync: ") and "Degraded" in outcome.detail, outcome.detail
        assert [c["Rollback-Step"] for c in rig.step_commits()] == ["1/3"]  # nothing more committed
        assert rig.prometheus.asked == []  # no analysis of a step that never became healthy
