"""Go ``encoding/json``-faithful pieces of the Application object (docs/argocd-wire.md §4, §8.11).

Empty ``omitempty`` fields are left out; fields without ``omitempty`` (``syncResult.resources[].group``,
``status.sync.status``, ``summary``, ``sourceHydrator``, ``operation.retry``…) are always written.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from rollbackbot.testing.argocd.config import FakeAppConfig
from rollbackbot.testing.argocd.git import WORKLOAD_KINDS, Manifest

Key = tuple[str, str, str, str]
JSON = dict[str, Any]
SEVERITY = ("Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown")
ARGOCD_NAMESPACE = "argocd"
FINALIZER = "resources-finalizer.argocd.argoproj.io"
IN_CLUSTER = "https://kubernetes.default.svc"


def fmt_time(moment: datetime) -> str:
    """metav1.Time on the wire: RFC 3339, UTC, second precision."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def drop_empty(obj: JSON) -> JSON:
    """Remove keys whose value is empty (Go ``omitempty`` on strings, bools, numbers, slices, maps)."""
    return {k: v for k, v in obj.items() if v not in ("", None, False, 0, [], {})}


def app_uid(name: str) -> str:
    """A stable uid per app name, so restarts of the fake keep identities."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-argocd/{name}"))


def auto_sync_enabled(spec: Mapping[str, Any]) -> bool:
    """Auto-sync is on iff ``syncPolicy.automated`` is present and ``enabled`` is not false."""
    automated = (spec.get("syncPolicy") or {}).get("automated")
    return isinstance(automated, dict) and automated.get("enabled", True) is not False


def kind_label(m: Manifest) -> str:
    """``deployment.apps/name`` as kubectl prints applied objects."""
    group = f".{m.group}" if m.group else ""
    return f"{m.kind.lower()}{group}/{m.name}"


def object_health(m: Manifest, progressing: bool, override: str | None) -> str | None:
    """Health of one live object: forced override, a rollout in progress, the annotation, else Healthy."""
    if not m.has_health:
        return None
    if override and m.kind in WORKLOAD_KINDS:
        return override
    if progressing:
        return "Progressing"
    return m.simulated_health or "Healthy"


def health_message(m: Manifest, status: str) -> str | None:
    """The messages Argo CD's Deployment health check writes; other kinds carry none."""
    if m.kind != "Deployment":
        return None
    return {
        "Degraded": f'Deployment "{m.name}" exceeded its progress deadline',
        "Progressing": "Waiting for rollout to finish: 1 old replicas are pending termination...",
        "Suspended": "Deployment is paused",
    }.get(status)


def worst(statuses: Iterable[str | None]) -> str:
    """Aggregate health by Argo CD's severity order; no objects means Healthy."""
    present = [s for s in statuses if s in SEVERITY]
    return max(present, key=SEVERITY.index) if present else "Healthy"


def ref_fields(m: Manifest) -> JSON:
    """group?/version/kind/namespace?/name in Go field order."""
    refs = drop_empty({"group": m.group, "version": m.version, "kind": m.kind, "namespace": m.namespace})
    return refs | {"name": m.name}


def resource_statuses(
    live: Mapping[Key, Manifest], target: Mapping[Key, Manifest], healths: Mapping[Key, str | None]
) -> list[JSON]:
    """``status.resources``: every object in Git or in the cluster, with sync status and health."""
    entries: list[JSON] = []
    for key in sorted(set(live) | set(target)):
        obj, wanted = live.get(key), target.get(key)
        m = obj or wanted
        assert m is not None
        entry = ref_fields(m)
        in_sync = obj is not None and wanted is not None and obj.digest == wanted.digest
        entry["status"] = "Synced" if in_sync else "OutOfSync"
        health = healths.get(key) if obj is not None else ("Missing" if m.has_health else None)
        if health:
            message = health_message(m, health)
            entry["health"] = {"status": health} | ({"message": message} if message else {})
        if wanted is None:
            entry["requiresPruning"] = True
        entries.append(entry)
    return entries


def result_resources(
    target: Iterable[Manifest], live: Mapping[Key, Manifest], prune: bool, failed: Key | None = None
) -> tuple[list[JSON], str]:
    """``syncResult.resources`` for applying ``target``; with ``failed``, that object fails to apply."""
    results: list[JSON] = []
    failure = ""
    wanted = list(target)
    for m in wanted:
        before = live.get(m.key)
        verb = "created" if before is None else ("unchanged" if before.digest == m.digest else "configured")
        item = {"group": m.group, "version": m.version, "kind": m.kind, "namespace": m.namespace, "name": m.name}
        if m.key == failed:
            failure = f'{m.kind}.{m.group or "core"} "{m.name}" is invalid: simulated apply failure'
            item |= {"status": "SyncFailed", "message": failure, "hookPhase": "Failed", "syncPhase": "Sync"}
        else:
            item |= {"status": "Synced", "message": f"{kind_label(m)} {verb}", "hookPhase": "Running"}
            item["syncPhase"] = "Sync"
        results.append(item)
    for key in sorted(set(live) - {m.key for m in wanted}):
        m = live[key]
        item = {"group": m.group, "version": m.version, "kind": m.kind, "namespace": m.namespace, "name": m.name}
        verdict = {"status": "Pruned", "message": "pruned"} if prune else {"status": "PruneSkipped"}
        results.append(item | verdict | ({} if prune else {"message": "ignored (requires pruning)"}))
    return results, failure


def sync_operation(request: Mapping[str, Any], revision: str, spec: Mapping[str, Any], user: str) -> JSON:
    """The ``operation`` a POST /sync stores (docs/argocd-wire.md §3.2)."""
    strategy = {
        kind: ({"force": True} if (request.get("strategy") or {}).get(kind, {}).get("force") else {})
        for kind in ("apply", "hook")
        if kind in (request.get("strategy") or {})
    }
    options = (request.get("syncOptions") or {}).get("items") if "syncOptions" in request else None
    sync = {
        "revision": revision,
        "prune": request.get("prune", False),
        "dryRun": request.get("dryRun", False),
        "syncStrategy": strategy or None,
        "resources": [drop_empty(dict(r)) for r in request.get("resources", [])],
        "source": copy.deepcopy(spec.get("source")),
        "syncOptions": options if options is not None else (spec.get("syncPolicy") or {}).get("syncOptions"),
    }
    operation: JSON = {"sync": drop_empty(sync), "initiatedBy": {"username": user}}
    if request.get("infos"):
        operation["info"] = [drop_empty(dict(i)) for i in request["infos"]]
    operation["retry"] = drop_empty(dict(request.get("retryStrategy") or {}))
    return operation


def rollback_operation(
    entry: Mapping[str, Any], request: Mapping[str, Any], spec: Mapping[str, Any], user: str
) -> JSON:
    """The ``operation`` a POST /rollback stores: apply strategy, history revision and source."""
    sync = {
        "revision": entry.get("revision", ""),
        "prune": request.get("prune", False),
        "dryRun": request.get("dryRun", False),
        "syncStrategy": {"apply": {}},
        "source": copy.deepcopy(entry.get("source")),
        "syncOptions": (spec.get("syncPolicy") or {}).get("syncOptions"),
    }
    return {"sync": drop_empty(sync), "initiatedBy": {"username": user}, "retry": {}}


def auto_operation(revision: str, spec: Mapping[str, Any]) -> JSON:
    """The ``operation`` the controller's auto-sync starts (retry limit 5 unless configured)."""
    policy = spec.get("syncPolicy") or {}
    sync = {
        "revision": revision,
        "prune": (policy.get("automated") or {}).get("prune", False),
        "source": copy.deepcopy(spec.get("source")),
        "syncOptions": policy.get("syncOptions"),
    }
    retry = copy.deepcopy(policy.get("retry")) or {"limit": 5}
    return {"sync": drop_empty(sync), "initiatedBy": {"automated": True}, "retry": retry}


def initial_object(app: FakeAppConfig, repo_url: str, branch: str, created: datetime) -> JSON:
    """A freshly created Application (status is filled by the first deployment/reconcile)."""
    policy: JSON = {}
    if app.autoSync:
        policy["automated"] = {"prune": True, "selfHeal": True}
    if app.syncOptions:
        policy["syncOptions"] = list(app.syncOptions)
    spec = {
        "source": {"repoURL": repo_url, "path": app.path, "targetRevision": branch},
        "destination": {"server": IN_CLUSTER, "namespace": app.namespace},
        "project": app.project,
        "syncPolicy": policy or None,
        "revisionHistoryLimit": app.revisionHistoryLimit if app.revisionHistoryLimit != 10 else None,
    }
    metadata = {
        "name": app.name,
        "namespace": ARGOCD_NAMESPACE,
        "uid": app_uid(app.name),
        "resourceVersion": "0",
        "generation": 1,
        "creationTimestamp": fmt_time(created),
        "labels": dict(app.labels) or None,
        "finalizers": [FINALIZER],
    }
    status = {"sync": {"status": ""}, "summary": {}, "sourceHydrator": {}}
    return {"metadata": drop_empty(metadata), "spec": drop_empty(spec), "status": status}


def order_status(status: Mapping[str, Any]) -> JSON:
    """Key order of the recorded examples (cosmetic: JSON objects are unordered)."""
    order = (
        "resources", "sync", "health", "history", "conditions", "reconciledAt", "sourceType", "summary",
        "resourceHealthSource", "controllerNamespace", "sourceHydrator", "operationState",
    )  # fmt: skip
    return {k: status[k] for k in order if k in status} | {k: v for k, v in status.items() if k not in order}
