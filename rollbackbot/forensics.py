"""Capture the forensic bundle before the rollback changes anything (DESIGN §9).

Exposure time matters more than completeness: capture runs under a time budget, and what could
not be gathered is listed in the bundle and on the incident instead of holding the rollback back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from rollbackbot.core.incident_json import incident_to_api
from rollbackbot.core.incidents import Incident
from rollbackbot.core.model import target_from_dict
from rollbackbot.errors import RollbackBotError
from rollbackbot.ports import ArgoCD, EvidenceSink

log = logging.getLogger("rollbackbot.forensics")


@dataclass(frozen=True)
class Evidence:
    url: str | None
    missing: list[str] = field(default_factory=list)


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True, default=str).encode()


async def capture(incident: Incident, argocd: ArgoCD, sink: EvidenceSink, budget_seconds: float) -> Evidence:
    """Gather alert, git and Argo CD state into one bundle within the budget."""
    target = target_from_dict(incident.target)
    files: dict[str, bytes] = {
        "alert.json": _json(
            {
                **incident_to_api(incident)["alert"],
                "annotations": incident.alert.annotations,
                "generatorURL": incident.alert.generator_url,
            }
        ),
        "git.json": _json(incident.plan),
    }
    missing: list[str] = []

    async def gather(name: str, call: Any) -> None:
        try:
            files[name] = _json(await call)
        except (RollbackBotError, OSError) as exc:
            missing.append(f"{name}: {exc}")

    calls = []
    for app in target.apps:
        prefix = "" if len(target.apps) == 1 else f"{app}/"
        calls.append(gather(f"{prefix}argocd-app.json", argocd.get_application(app, target.project)))
        calls.append(gather(f"{prefix}resource-tree.json", argocd.get_resource_tree(app, target.project)))
    try:
        await asyncio.wait_for(asyncio.gather(*calls), timeout=budget_seconds)
    except TimeoutError:
        missing.append(f"capture budget of {budget_seconds:.0f}s ran out")
    if missing:
        files["missing.json"] = _json(missing)
    try:
        url = await asyncio.to_thread(sink.write, incident.id, files)
    except (RollbackBotError, OSError) as exc:
        log.warning("evidence could not be written", extra={"error": str(exc)})
        return Evidence(url=None, missing=[*missing, f"bundle not written: {exc}"])
    return Evidence(url=url, missing=missing)
