"""Capture the forensic bundle before the rollback changes anything (docs/evidence.md).

Exposure time matters more than completeness: capture runs under a time budget, and what could
not be gathered is listed in the bundle and on the incident instead of holding the rollback back.

Large bodies (the snapshot) arrive as a temporary file from the fetch and are streamed to the sink,
never held in memory whole; the temporary files are deleted once the bundle is written (or not).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollbackbot.core.incident_json import incident_to_api
from rollbackbot.core.incidents import Incident
from rollbackbot.core.model import target_from_dict
from rollbackbot.core.policy import Policy
from rollbackbot.core.trigger import flagged_requests, parse_requests, top_payload
from rollbackbot.errors import RollbackBotError
from rollbackbot.ports import ArgoCD, EvidenceSink

log = logging.getLogger("rollbackbot.forensics")

REQUESTS_CAP = 8 << 20  # requests.jsonl: the last requests, as much as fits
SNAPSHOT_CAP = 64 << 20  # snapshot.bin: the model server's own state dump
MAX_PODS = 10

# (url, cap) -> (body, truncated); the body is bytes or a temporary file this module deletes
Fetch = Callable[[str, int], Awaitable[tuple[bytes | Path, bool]]]


@dataclass(frozen=True)
class Evidence:
    url: str | None
    missing: list[str] = field(default_factory=list)
    trigger: dict[str, Any] | None = None  # the top flagged payload of requests.jsonl (core.trigger)


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True, default=str).encode()


def _pods(tree: dict[str, Any]) -> list[tuple[str, str]]:
    nodes = tree.get("nodes") or []
    pods = [(n.get("name", ""), n.get("namespace", "")) for n in nodes if n.get("kind") == "Pod" and n.get("name")]
    return pods[:MAX_PODS]


class Capture:
    """One bundle being gathered: every source adds a file or a line saying what is missing."""

    def __init__(self, incident: Incident, argocd: ArgoCD, fetch: Fetch) -> None:
        self.incident = incident
        self.argocd = argocd
        self.fetch = fetch
        self.files: dict[str, bytes | Path] = {}
        self.missing: list[str] = []

    async def _try(self, name: str, work: Awaitable[bytes | Path]) -> None:
        try:
            self.files[name] = await work
        except (RollbackBotError, OSError, ValueError) as exc:
            self.missing.append(f"{name}: {type(exc).__name__}: {exc}"[:300])

    async def _as_json(self, call: Awaitable[Any]) -> bytes:
        return _json(await call)

    async def _app(self, app: str, project: str, prefix: str) -> None:
        await self._try(f"{prefix}argocd-app.json", self._as_json(self.argocd.get_application(app, project)))
        try:
            tree = await self.argocd.get_resource_tree(app, project)
        except (RollbackBotError, OSError) as exc:
            self.missing.append(f"{prefix}resource-tree.json: {exc}"[:300])
            return
        self.files[f"{prefix}resource-tree.json"] = _json(tree)
        for pod, namespace in _pods(tree):
            logs = self.argocd.pod_logs(app, project, pod, namespace, tail_lines=500)
            await self._try(f"{prefix}logs/{pod}.log", _encoded(logs))

    async def _url(self, name: str, url: str, cap: int) -> None:
        async def get() -> bytes | Path:
            body, truncated = await self.fetch(url, cap)
            if truncated:
                self.missing.append(f"{name}: truncated at {cap} bytes")
            return body

        await self._try(name, get())

    def discard_spooled(self) -> None:
        """Delete the temporary files large bodies were spooled to."""
        for content in self.files.values():
            if isinstance(content, Path):
                content.unlink(missing_ok=True)

    async def gather(self, policy: Policy) -> None:
        target = target_from_dict(self.incident.target)
        jobs = []
        for app in target.apps:
            jobs.append(self._app(app, target.project, "" if len(target.apps) == 1 else f"{app}/"))
        if policy.spec.forensics.requests_url:
            jobs.append(self._url("requests.jsonl", str(policy.spec.forensics.requests_url), REQUESTS_CAP))
        if policy.spec.forensics.snapshot_url:
            jobs.append(self._url("snapshot.bin", str(policy.spec.forensics.snapshot_url), SNAPSHOT_CAP))
        await asyncio.gather(*jobs)


async def _encoded(text: Awaitable[str]) -> bytes:
    return (await text).encode()


async def capture(incident: Incident, policy: Policy, argocd: ArgoCD, sink: EvidenceSink, fetch: Fetch) -> Evidence:
    """Gather alert, git, Argo CD, logs and model-server state into one bundle within the budget."""
    return await write_bundle(await gather_bundle(incident, policy, argocd, fetch), incident, sink)


@dataclass
class Gathered:
    """A bundle read from its sources but not written yet (``write_bundle`` adds the plan)."""

    capture: Capture
    trigger: dict[str, Any] | None

    def discard(self) -> None:
        """Not needed after all (the plan ended the incident): delete what was spooled to disk."""
        self.capture.discard_spooled()


async def gather_bundle(incident: Incident, policy: Policy, argocd: ArgoCD, fetch: Fetch) -> Gathered:
    """Everything but the plan, within the policy's budget; reads only (Argo CD, the model server).

    Needs nothing from git, so it runs while the rollback is planned (``Steps.plan``).
    """
    budget = policy.spec.forensics.budget.total_seconds()
    bundle = Capture(incident, argocd, fetch)
    alert = {
        **incident_to_api(incident)["alert"],
        "annotations": incident.alert.annotations,
        "generatorURL": incident.alert.generator_url,
    }
    bundle.files["alert.json"] = _json(alert)
    try:
        try:
            await asyncio.wait_for(bundle.gather(policy), timeout=budget)
        except TimeoutError:
            bundle.missing.append(f"capture budget of {budget:g}s ran out")
        return Gathered(bundle, await _name_flagged(bundle))
    except BaseException:  # cancelled (the plan failed first) or broken: nothing stays on disk
        bundle.discard_spooled()
        raise


async def write_bundle(gathered: Gathered, incident: Incident, sink: EvidenceSink) -> Evidence:
    """The gathered files plus ``git.json`` (the incident's plan), written to the sink once."""
    bundle, trigger = gathered.capture, gathered.trigger
    bundle.files["git.json"] = _json(incident.plan)
    if bundle.missing:
        bundle.files["missing.json"] = _json(bundle.missing)
    try:
        url = await asyncio.to_thread(sink.write, incident.id, dict(bundle.files))
    except (RollbackBotError, OSError) as exc:
        log.warning("evidence could not be written", extra={"error": str(exc)})
        return Evidence(url=None, missing=[*bundle.missing, f"bundle not written: {exc}"], trigger=trigger)
    finally:
        bundle.discard_spooled()
    return Evidence(url=url, missing=bundle.missing, trigger=trigger)


async def _name_flagged(bundle: Capture) -> dict[str, Any] | None:
    """``flagged.json`` (the flagged requests of requests.jsonl) in the bundle; returns the top payload."""
    requests = bundle.files.get("requests.jsonl")
    if requests is None:
        return None
    body = await asyncio.to_thread(requests.read_bytes) if isinstance(requests, Path) else requests
    flagged = flagged_requests(parse_requests(body))
    bundle.files["flagged.json"] = _json(flagged)
    return top_payload(flagged)
