"""Read-only API payloads derived from an app's simulated cluster: tree, diffs, events, logs, windows."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping

from rollbackbot.testing.argocd.git import Manifest
from rollbackbot.testing.argocd.model import AppSim
from rollbackbot.testing.argocd.wire import ARGOCD_NAMESPACE, JSON, app_uid, drop_empty, ref_fields

VERSION = "v3.5.1+109ca7c"
FULL_VERSION = {
    "Version": VERSION,
    "BuildDate": "2026-08-12T17:03:11Z",
    "GitCommit": "109ca7ca71139e514114499d294a492e7910a965",
    "GitTreeState": "clean",
    "GoVersion": "go1.25.1",
    "Compiler": "gc",
    "Platform": "linux/amd64",
    "KustomizeVersion": "v5.7.1",
    "HelmVersion": "v3.18.4+gd80839c",
    "KubectlVersion": "v0.34.0",
    "JsonnetVersion": "v0.21.0",
}
BLOCKING_WINDOW = {"kind": "deny", "schedule": "* * * * *", "duration": "1h"}
POD_STATUS = {"Healthy": "Running", "Progressing": "ContainerCreating", "Degraded": "CrashLoopBackOff"}


def _short_hash(*parts: str, length: int = 10) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "fake-argocd/" + "/".join(parts)))


def _health_of(app: AppSim, m: Manifest) -> JSON | None:
    for entry in app.status.get("resources", []):
        if (entry.get("group", ""), entry["kind"], entry.get("namespace", ""), entry["name"]) == m.key:
            health: JSON | None = entry.get("health")
            return health
    return None


def pods(app: AppSim) -> Iterator[tuple[str, str, Manifest, str]]:
    """(pod, replicaset, deployment, health) for each Deployment running in the simulated cluster."""
    for m in app.live.values():
        if m.kind == "Deployment":
            replica_set = f"{m.name}-{_short_hash(m.digest)}"
            health = (_health_of(app, m) or {}).get("status", "Healthy")
            yield f"{replica_set}-{_short_hash(replica_set, length=5)}", replica_set, m, health


def resource_tree(app: AppSim, created: str) -> JSON:
    """GET resource-tree: managed objects plus the ReplicaSets and Pods of Deployments."""
    nodes: list[JSON] = []
    for m in app.live.values():
        node = ref_fields(m) | {"uid": _uid(app.name, *m.key), "resourceVersion": _short_hash(m.digest, length=6)}
        node_health = _health_of(app, m)
        nodes.append(node | drop_empty({"images": m.images(), "health": node_health}) | {"createdAt": created})
    for pod, replica_set, deployment, health in pods(app):
        parent = ref_fields(deployment) | {"uid": _uid(app.name, *deployment.key)}
        rs_ref = {"group": "apps", "version": "v1", "kind": "ReplicaSet", "namespace": deployment.namespace}
        rs_ref |= {"name": replica_set, "uid": _uid(app.name, replica_set)}
        nodes.append(
            rs_ref
            | {"parentRefs": [parent], "info": [{"name": "Revision", "value": f"Rev:{len(app.status['history'])}"}]}
            | {"resourceVersion": _short_hash(replica_set, length=6), "health": {"status": health}}
            | {"createdAt": created}
        )
        pod_info = [{"name": "Status Reason", "value": POD_STATUS.get(health, "Running")}]
        pod_info += [{"name": "Node", "value": "fake-node-1"}, {"name": "Containers", "value": "1/1"}]
        pod_ref = {"version": "v1", "kind": "Pod", "namespace": deployment.namespace, "name": pod}
        nodes.append(
            pod_ref
            | {"uid": _uid(app.name, pod), "parentRefs": [rs_ref], "info": pod_info}
            | {"resourceVersion": _short_hash(pod, length=6), "images": deployment.images()}
            | {"health": {"status": health}, "createdAt": created}
        )
    return {"nodes": nodes}


def _state(m: Manifest | None) -> str:
    return json.dumps(m.body, separators=(",", ":")) if m else "null"


def managed_resources(app: AppSim, query: Mapping[str, str]) -> JSON:
    """GET managed-resources: target vs live manifests as JSON strings (``"null"`` when absent)."""
    items: list[JSON] = []
    for key in sorted(set(app.live) | set(app.target)):
        live, target = app.live.get(key), app.target.get(key)
        m = live or target
        assert m is not None
        if any(query.get(f) not in (None, "", getattr(m, f)) for f in ("name", "namespace", "kind", "group")):
            continue
        item = drop_empty({"group": m.group, "kind": m.kind, "namespace": m.namespace, "name": m.name})
        item |= {"targetState": _state(target), "liveState": _state(live), "normalizedLiveState": _state(live)}
        item |= {"predictedLiveState": _state(target or live)}
        modified = live is None or target is None or live.digest != target.digest
        items.append(item | drop_empty({"resourceVersion": _short_hash(m.digest, length=6) if live else ""}))
        if modified:
            items[-1]["modified"] = True
    return {"items": items}


def events(app: AppSim, resource_version: str) -> JSON:
    """GET events: the Application's own Kubernetes events, oldest first."""
    items: list[JSON] = []
    for index, event in enumerate(app.events):
        name = f"{app.name}.{_short_hash(app.name, str(index), length=16)}"
        component = "argocd-server" if "initiated" in event["message"] else "argocd-application-controller"
        involved = {"kind": "Application", "namespace": ARGOCD_NAMESPACE, "name": app.name, "uid": app_uid(app.name)}
        item = {
            "metadata": {"name": name, "namespace": ARGOCD_NAMESPACE, "uid": _uid(name)}
            | {"resourceVersion": str(index + 1), "creationTimestamp": event["time"]},
            "involvedObject": involved | {"apiVersion": "argoproj.io/v1alpha1"},
            "reason": event["reason"],
            "message": event["message"],
            "source": {"component": component},
            "firstTimestamp": event["time"],
            "lastTimestamp": event["time"],
            "count": 1,
            "type": event["type"],
        }
        items.append(item)
    return {"metadata": {"resourceVersion": resource_version}, "items": items}


def log_entries(app: AppSim, query: Mapping[str, str], pod_name: str | None, stamp: str) -> list[JSON]:
    """Pod log stream entries (§7.5): a few synthetic lines per matching pod, then ``last: true``.

    ``podName`` may come from the path (``/pods/{podName}/logs``) or the query of ``/logs``.
    """
    lines: list[JSON] = []
    tail = int(query["tailLines"]) if query.get("tailLines", "").isdigit() else None
    for pod, _rs, deployment, health in pods(app):
        if (pod_name and pod != pod_name) or query.get("namespace") not in (None, "", deployment.namespace):
            continue
        if query.get("resourceName") and query["resourceName"] not in (deployment.name, pod):
            continue
        image = (deployment.images() or ["unknown"])[0]
        content = [f"starting model server image={image}", "GET /healthz 200", f"GET /v1/predict 200 health={health}"]
        if health == "Degraded":
            content.append("ERROR readiness probe failed: simulated-health=Degraded")
        for text in content[-tail:] if tail else content:
            entry = {"content": text, "timeStamp": stamp, "timeStampStr": stamp.replace("Z", ".000000000Z")}
            lines.append({"result": entry | {"podName": pod, "last": False}})
    if not lines:
        return []  # no matching pods: the real stream ends without any entry
    final = {"content": "", "timeStamp": stamp, "timeStampStr": stamp.replace("Z", ".000000000Z")}
    return [*lines, {"result": final | {"podName": "", "last": True}}]


def sync_windows(app: AppSim) -> JSON:
    """GET syncwindows: empty lists are omitted on the wire; a blocked app shows one deny window."""
    if app.faults.syncWindowBlocked:
        return {"assignedWindows": [BLOCKING_WINDOW], "activeWindows": [BLOCKING_WINDOW], "canSync": False}
    return {"canSync": True}
