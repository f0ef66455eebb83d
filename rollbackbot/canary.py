"""The canary rollback step machine: bleed traffic off the compromised release, one commit per step.

Each step: commit the route weights (``Rollback-Step: k/n``) → Argo CD Synced and Healthy at that
commit → ``pause`` → analysis (PromQL thresholds, ``consecutiveSuccesses`` passes in a row, an empty
result is inconclusive, never a pass) → next step. A failed or timed-out analysis **holds**: no new
commit, the incident waits for a person (Slack ``complete_rollback`` / ``hold_rollback``), or with
``onFailure: complete`` goes straight to 100 %. Nothing here ever moves traffic back toward the
compromised release: Argo Rollouts and Flagger would, because after a revert the safe release is
their canary.

Crash-safe: the step on the deploy branch is the state. A restarted run reads the newest
``Rollback-Step`` commit of the incident and resumes there (sync again, analyse again), never
committing a step twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import yaml

from rollbackbot.clock import Clock
from rollbackbot.core.analysis import QueryResult, Verdict, combine, judge_query, next_streak
from rollbackbot.core.incidents import Incident, IncidentState
from rollbackbot.core.policy import Analysis, AnalysisQuery, Policy, Shadow, TrafficRouter
from rollbackbot.core.sandbox import render_sandbox, sandbox_objects, sandbox_path
from rollbackbot.core.shadow import NOT_REMOVED, SHADOW_NOT_STARTED, SHADOW_OFF, SHADOW_ON
from rollbackbot.core.shadow import RETRY_AFTER as SHADOW_RETRY_AFTER
from rollbackbot.core.traffic import (
    CANARY_HELD,
    ShadowPhase,
    StepCommit,
    StepPosition,
    StepRecord,
    TrafficPlan,
    canary_steps,
    live_safe_weight,
    mirror_for,
    proxy_namespace,
    route_facts,
    safe_weight_of,
)
from rollbackbot.errors import PermanentError, PolicyError, RollbackBotError
from rollbackbot.metrics import CANARY_ANALYSIS, CANARY_SHADOW, CANARY_WEIGHT
from rollbackbot.metrics import CANARY_HELD as CANARY_HELD_GAUGE
from rollbackbot.ports import ArgoCD

log = logging.getLogger("rollbackbot.canary")
S = IncidentState


class StepLog(Protocol):
    """The newest step of an incident on the deploy branch, and how to write the next one."""

    def last_step(self, incident_id: str) -> StepRecord | None:
        """The newest ``Rollback-Step`` commit of the incident, after a fetch."""
        ...

    def commit_step(self, step: StepCommit) -> str:
        """Write and push one step commit; its id."""
        ...

    def route_text(self, router: TrafficRouter) -> str:
        """The route file at the deploy branch head, after a fetch."""
        ...

    def workload_image(self, name: str, paths: Sequence[str]) -> str | None:
        """The image of the Deployment ``name`` under ``paths`` at the deploy branch head."""
        ...


class Queries(Protocol):
    """Prometheus instant queries."""

    async def query(self, name: str, promql: str) -> QueryResult:
        """Evaluate one query now."""
        ...


class CanaryState(StrEnum):
    """Where a canary run ended."""

    completed = "completed"  # 100 % on the safe release, synced and healthy
    held = "held"  # analysis failed or timed out: weights stay, a person decides


@dataclass(frozen=True)
class CanaryOutcome:
    """How a run ended: state, the step live on the branch, and why."""

    state: CanaryState
    position: StepPosition
    safe_weight: int
    detail: str


@dataclass
class CanaryRollout:
    """Drives one incident's canary rollback through its steps (see the module docstring)."""

    steps_log: StepLog
    argocd: ArgoCD
    queries: Callable[[Analysis], Queries]
    record: Callable[[str, str], None]  # (incident id, event detail): incident events
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    monotonic: Callable[[], float] = time.monotonic

    async def run(self, incident_id: str, policy: Policy, labels: Mapping[str, str]) -> CanaryOutcome:
        """From the step on the branch (or the first), through every step, until completed or held."""
        router, strategy = _router(policy), policy.spec.strategy
        steps = canary_steps(strategy, labels)
        if steps == (100,) and strategy is not None and strategy.type.value == "canary":
            self.record(incident_id, "instant: the alert matches instantWhen, all traffic to the safe release")
        found = await asyncio.to_thread(self.steps_log.last_step, incident_id)
        start, reuse = 0, False
        live = await self._live_weight(router) if found is not None else 0
        if (
            found is not None
            and found.position.total == len(steps)
            and live == safe_weight_of(found.weights, router.backends.safe)
        ):
            start, reuse = found.position.index - 1, True
            self.record(incident_id, f"resuming at step {found.position.trailer()} ({found.commit[:12]})")
        elif found is not None:
            # The steps changed since (a policy edit, an instantWhen alert), or a person moved the weights by
            # hand: go on from what the route says now, never below it.
            start = next(i for i, weight in enumerate(steps) if weight > live or weight == 100)
            self.record(incident_id, f"{live}% already on the safe release ({found.commit[:12]}): going on from there")
        for index in range(start, len(steps)):
            position = StepPosition(index + 1, len(steps))
            commit = found.commit if found is not None and reuse and index == start else None
            if commit is None and steps[index] < (live := await self._live_weight(router)):
                # Someone moved more traffic to the safe release meanwhile: never take it back.
                self.record(incident_id, f"step {position.trailer()} skipped: the route already gives {live}% to safe")
                continue
            commit = commit or await self._commit(incident_id, policy, router, steps[index], position)
            try:
                await self._sync(incident_id, policy, commit, position)
            except PermanentError as exc:
                if position.last:
                    raise  # all traffic is on the safe release and it is not healthy: a person must look
                # Argo CD could not sync the step, or the safe release went Degraded under it: a failed step.
                return await self._on_failure(incident_id, policy, steps, position, f"sync: {exc}")
            if position.last:
                break
            verdict, why = await self._analyse(incident_id, policy, position)
            if verdict is not Verdict.passed:
                return await self._on_failure(incident_id, policy, steps, position, why)
        return CanaryOutcome(CanaryState.completed, StepPosition(len(steps), len(steps)), 100, "all traffic on safe")

    async def complete(self, incident_id: str, policy: Policy, labels: Mapping[str, str]) -> CanaryOutcome:
        """A person pressed *Complete to 100 % now* (or ``onFailure: complete``): the last step, at once."""
        router, total = _router(policy), len(canary_steps(policy.spec.strategy, labels))
        found = await asyncio.to_thread(self.steps_log.last_step, incident_id)
        position = StepPosition(total, total)
        if found is not None and found.position.last:
            commit = found.commit  # already at 100 %: a second click changes nothing
        else:
            commit = await self._commit(incident_id, policy, router, 100, position)
        await self._sync(incident_id, policy, commit, position)
        return CanaryOutcome(CanaryState.completed, position, 100, "completed to 100 %")

    async def shadow_on(
        self, incident_id: str, policy: Policy, labels: Mapping[str, str], *, image: str, proxy_namespace: str
    ) -> str:
        """After completion: commit the sandbox (``image`` = the compromised digest), sync, then the mirror."""
        router, spec, position = _router(policy), _shadow(policy), self._last(policy, labels)
        document = yaml.safe_load(await asyncio.to_thread(self.steps_log.route_text, router))
        namespace, port = route_facts(document, router)
        if port is None:
            raise PolicyError(
                f"{router.file}: the compromised backend names no port; add it (the sandbox serves on the same port)"
            )
        objects = sandbox_objects(
            spec,
            image=image,
            port=port,
            route_kind=router.kind,
            route_namespace=namespace,
            proxy_namespace=proxy_namespace,
        )
        files: dict[str, bytes | None] = {sandbox_path(spec, router.file): render_sandbox(objects)}
        complete = TrafficPlan(router.backends, 100)
        sandbox = StepCommit(incident_id, _app(policy), router, complete, position, ShadowPhase.sandbox, files)
        await self._sync(incident_id, policy, await self._shadow_commit(incident_id, sandbox), position)
        # Only now does the route reference the sandbox: a mirror to a missing Service is dropped traffic.
        mirrored = TrafficPlan(router.backends, 100, mirror_for(spec))
        commit = await self._shadow_commit(
            incident_id, StepCommit(incident_id, _app(policy), router, mirrored, position, ShadowPhase.on)
        )
        await self._sync(incident_id, policy, commit, position)
        CANARY_SHADOW.labels(_app(policy)).set(1)
        return commit

    async def shadow_off(self, incident_id: str, policy: Policy, labels: Mapping[str, str]) -> str:
        """At the ttl (or by a person): one commit removes the mirror and the sandbox files."""
        router, spec, position = _router(policy), _shadow(policy), self._last(policy, labels)
        plan = TrafficPlan(router.backends, 100)
        off = StepCommit(
            incident_id, _app(policy), router, plan, position, ShadowPhase.off, {sandbox_path(spec, router.file): None}
        )
        commit = await self._shadow_commit(incident_id, off)
        CANARY_SHADOW.labels(_app(policy)).set(0)  # the mirror is out of Git: no new mirrored traffic once synced
        await self._sync(incident_id, policy, commit, position)
        return commit

    async def _shadow_commit(self, incident_id: str, step: StepCommit) -> str:
        commit = await asyncio.to_thread(self.steps_log.commit_step, step)
        self.record(incident_id, f"shadow {step.shadow}: {step.message().splitlines()[0]} ({commit[:12]})")
        return commit

    async def _live_weight(self, router: TrafficRouter) -> int:
        text = await asyncio.to_thread(self.steps_log.route_text, router)
        return live_safe_weight(yaml.safe_load(text), router)

    def _last(self, policy: Policy, labels: Mapping[str, str]) -> StepPosition:
        total = len(canary_steps(policy.spec.strategy, labels))
        return StepPosition(total, total)

    # --- one step -------------------------------------------------------------------------------------

    async def _commit(
        self, incident_id: str, policy: Policy, router: TrafficRouter, safe: int, at: StepPosition
    ) -> str:
        plan = TrafficPlan(router.backends, safe)
        step = StepCommit(incident_id, _app(policy), router, plan, at)
        commit = await asyncio.to_thread(self.steps_log.commit_step, step)  # git must not block the webhook
        for backend, weight in plan.weights.items():
            CANARY_WEIGHT.labels(_app(policy), backend).set(weight)
        self.record(incident_id, f"step {at.trailer()}: {plan.weights_trailer()} committed ({commit[:12]})")
        log.info(
            "canary step committed",
            extra={"incident_id": incident_id, "step": at.trailer(), "weights": plan.weights_trailer()},
        )
        return commit

    async def _sync(self, incident_id: str, policy: Policy, commit: str, at: StepPosition) -> None:
        target, started = policy.spec.target, self.monotonic()
        for app in target.argocd_apps:
            await self.argocd.refresh(app, target.project)
            await self.argocd.sync(app, target.project, commit, policy.spec.sync.prune)
            await self.argocd.wait_synced_healthy(app, target.project, commit, policy.spec.sync.timeout.total_seconds())
        took = self.monotonic() - started
        self.record(incident_id, f"step {at.trailer()}: Synced and Healthy at {commit[:12]} in {took:.1f}s")

    async def _analyse(self, incident_id: str, policy: Policy, at: StepPosition) -> tuple[Verdict, str]:
        """Pause, then query until ``consecutiveSuccesses`` passes in a row, a failure, or the step timeout."""
        strategy = policy.spec.strategy
        if strategy is None or strategy.analysis is None:
            return Verdict.passed, "no analysis"
        analysis = strategy.analysis
        await self.sleep(strategy.pause.total_seconds())
        deadline = self.monotonic() + strategy.step_timeout.total_seconds()
        queries, streak, last = self.queries(analysis), 0, "no run"
        while True:
            verdict, last = await _run_once(queries, analysis.queries)
            CANARY_ANALYSIS.labels(_app(policy), verdict.value).inc()
            streak = next_streak(streak, verdict)
            self.record(incident_id, f"step {at.trailer()} analysis {verdict.value}: {last}")
            if verdict is Verdict.failed:
                return verdict, last
            if streak >= analysis.consecutive_successes:
                return Verdict.passed, last
            if self.monotonic() + analysis.interval.total_seconds() > deadline:
                return (
                    Verdict.inconclusive,
                    f"step timeout: {streak} of {analysis.consecutive_successes} passes ({last})",
                )
            await self.sleep(analysis.interval.total_seconds())

    async def _on_failure(
        self, incident_id: str, policy: Policy, steps: Sequence[int], at: StepPosition, why: str
    ) -> CanaryOutcome:
        strategy = policy.spec.strategy
        if strategy is not None and strategy.on_failure.value == "complete":
            self.record(incident_id, f"step {at.trailer()} failed ({why}); onFailure complete: going to 100 %")
            return await self._complete_from(incident_id, policy, steps)
        self.record(incident_id, f"step {at.trailer()} held at {steps[at.index - 1]}% safe: {why}")
        return CanaryOutcome(CanaryState.held, at, steps[at.index - 1], why)

    async def _complete_from(self, incident_id: str, policy: Policy, steps: Sequence[int]) -> CanaryOutcome:
        position = StepPosition(len(steps), len(steps))
        commit = await self._commit(incident_id, policy, _router(policy), 100, position)
        await self._sync(incident_id, policy, commit, position)
        return CanaryOutcome(CanaryState.completed, position, 100, "completed after a failed step")


async def _run_once(queries: Queries, specs: Sequence[AnalysisQuery]) -> tuple[Verdict, str]:
    verdicts, details = [], []
    for spec in specs:
        verdict, detail = judge_query(await queries.query(spec.name, spec.query), spec.max, spec.min)
        verdicts.append(verdict)
        details.append(detail)
    return combine(verdicts), "; ".join(details)


def _router(policy: Policy) -> TrafficRouter:
    if policy.spec.traffic_router is None:
        raise PolicyError(f"policy {policy.name} has no trafficRouter block")
    return policy.spec.traffic_router


def _shadow(policy: Policy) -> Shadow:
    if policy.spec.shadow is None:
        raise PolicyError(f"policy {policy.name} has no shadow block")
    return policy.spec.shadow


def _app(policy: Policy) -> str:
    return policy.spec.target.argocd_apps[0]


def canary_quiet_seconds(policy: Policy) -> float:
    """The longest a working canary step goes without an event: its sync, its pause, one analysis interval."""
    strategy = policy.spec.strategy
    quiet = policy.spec.sync.timeout.total_seconds() * len(policy.spec.target.argocd_apps)
    if strategy is not None:
        quiet += strategy.pause.total_seconds()
        quiet += strategy.analysis.interval.total_seconds() if strategy.analysis else 0
    return quiet


Progress = Callable[[datetime, str], None]  # persists one event at once (the incident id is bound)


def _recording(
    rollout: CanaryRollout, clock: Clock, progress: Progress | None
) -> tuple[CanaryRollout, list[tuple[datetime, str]]]:
    """The rollout recording its events: persisted at once through ``progress``, else into the list.

    A canary takes minutes: its events must show on the incident as they happen, and keep it from
    looking stalled to another replica's watchdog (it counts quiet time from the last event).
    ``progress`` appends to the store's insert-only events, which the incident reads back, so an
    event it took is not also added to the step's copy of the incident (it would show twice).
    """
    events: list[tuple[datetime, str]] = []

    def record(_incident: str, detail: str) -> None:
        if progress is not None:
            progress(clock.now(), detail)
        else:
            events.append((clock.now(), detail))

    return replace(rollout, record=record), events


async def canary_step(
    rollout: CanaryRollout, incident: Incident, policy: Policy, clock: Clock, progress: Progress | None = None
) -> Incident:
    """The workflow's ``rolling_back`` step for a policy with a ``trafficRouter``: run, resume or complete.

    A person's approval while a canary step is live on the branch (the Slack button *Complete to
    100 % now*) completes it; otherwise the canary runs (or resumes) from the step on the branch.
    Completed → ``syncing`` → ``rolled_back`` with the last step as the rollback commit; held →
    ``awaiting_approval`` with no deadline: the weights stay until a person decides.
    """
    recording, events = _recording(rollout, clock, progress)
    labels = incident.alert.labels
    live = await asyncio.to_thread(rollout.steps_log.last_step, incident.id)
    if incident.approved_by and live is not None and not live.position.last:
        outcome = await recording.complete(incident.id, policy, labels)
    else:
        outcome = await recording.run(incident.id, policy, labels)
    for at, detail in events:
        incident = incident.with_event(at, detail)
    now = clock.now()
    CANARY_HELD_GAUGE.labels(_app(policy)).set(1 if outcome.state is CanaryState.held else 0)
    if outcome.state is CanaryState.held:
        held = f"{CANARY_HELD} at {outcome.safe_weight}% on the safe release (step {outcome.position.trailer()}): "
        return incident.with_state(S.awaiting_approval, now, held + outcome.detail).with_not_before(None)
    last = await asyncio.to_thread(rollout.steps_log.last_step, incident.id)
    commit = last.commit if last is not None else ""  # the 100 % step: the shadow's commits come after it
    started = (SHADOW_ON, SHADOW_NOT_STARTED)  # a resume after "shadow sandbox" switches it on again
    if policy.spec.shadow is not None and not any(e.detail.startswith(started) for e in incident.events):
        incident = await _start_shadow(recording, incident, policy, events, clock)
    synced = incident.with_commit(commit).with_state(S.syncing, now, f"canary at 100% ({commit[:12]})")
    return synced.with_state(S.rolled_back, now, "all traffic on the safe release, Synced and Healthy")


async def _start_shadow(
    rollout: CanaryRollout, incident: Incident, policy: Policy, events: list[tuple[datetime, str]], clock: Clock
) -> Incident:
    """Switch the shadow on after completion; a failure is recorded, never a failed rollback."""
    router = _router(policy)
    events.clear()
    try:
        found = await asyncio.to_thread(
            rollout.steps_log.workload_image, router.backends.compromised, policy.spec.target.paths
        )
        if found is None:
            raise PolicyError(
                f"no Deployment {router.backends.compromised} under {', '.join(policy.spec.target.paths)}"
            )
        document = yaml.safe_load(await asyncio.to_thread(rollout.steps_log.route_text, router))
        labels = incident.alert.labels
        proxies = proxy_namespace(document, router)
        await rollout.shadow_on(incident.id, policy, labels, image=found, proxy_namespace=proxies)
    except RollbackBotError as exc:
        events.append((clock.now(), f"{SHADOW_NOT_STARTED} {exc}"))
    for at, detail in events:
        incident = incident.with_event(at, detail)
    return incident


async def end_shadow_step(
    rollout: CanaryRollout, incident: Incident, policy: Policy, clock: Clock, progress: Progress | None = None
) -> Incident:
    """The shadow's ttl ran out (or a person asked): one commit removes the mirror and the sandbox.

    Crash-safe like the steps: when the branch already ends the shadow (a crash after the push),
    that commit is recorded instead of a second one. A failure is recorded and retried later
    (``core.shadow.RETRY_AFTER``); it never changes the incident's outcome.
    """
    recording, events = _recording(rollout, clock, progress)
    try:
        live = await asyncio.to_thread(rollout.steps_log.last_step, incident.id)
        if live is not None and live.shadow == ShadowPhase.off.value:
            events.append((clock.now(), f"{SHADOW_OFF} already on the deploy branch ({live.commit[:12]})"))
        else:
            await recording.shadow_off(incident.id, policy, incident.alert.labels)
    except RollbackBotError as exc:
        retry = (clock.now() + SHADOW_RETRY_AFTER).strftime("%H:%M:%SZ")
        events.append((clock.now(), f"{NOT_REMOVED} {exc}; trying again at {retry}"))
    for at, detail in events:
        incident = incident.with_event(at, detail)
    return incident
