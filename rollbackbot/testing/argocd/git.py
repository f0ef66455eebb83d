"""Read the GitOps repository the fake Argo CD "deploys": revisions, manifests, simulated health.

Only the ``git`` CLI in list form is used (no shell). Manifests are cached by the tree hash of the
app directory, which is immutable, so re-reading a revision costs one ``rev-parse``.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

HEALTH_ANNOTATION = "rollbackbot.dev/simulated-health"
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
# Kinds without a namespace; everything else gets the app's destination namespace when unset.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass"}
# Kinds Argo CD has a health check for; others (ConfigMap, Secret...) show no health unless annotated.
HEALTH_KINDS = {
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Pod",
    "Service",
    "Ingress",
    "PersistentVolumeClaim",
    "Job",
    "CronJob",
    "HorizontalPodAutoscaler",
    "Rollout",
    "Application",
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Rollout"}


class GitError(Exception):
    """A git command failed; the message is git's own stderr."""


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object declared in the repository."""

    group: str
    version: str
    kind: str
    namespace: str
    name: str
    simulated_health: str | None
    body: dict[str, Any] = field(compare=False, hash=False)
    digest: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Identity of the object (group, kind, namespace, name)."""
        return (self.group, self.kind, self.namespace, self.name)

    @property
    def has_health(self) -> bool:
        """Whether Argo CD would report a health for this object."""
        return self.simulated_health is not None or self.kind in HEALTH_KINDS

    def images(self) -> list[str]:
        """Container images of a workload's pod template."""
        template = self.body.get("spec", {}).get("template", {}).get("spec", {})
        containers = template.get("containers", []) if isinstance(template, dict) else []
        return [c["image"] for c in containers if isinstance(c, dict) and isinstance(c.get("image"), str)]


def parse_manifests(text: str, default_namespace: str) -> list[Manifest]:
    """Kubernetes objects of one YAML/JSON file; kustomization files and non-objects are skipped."""
    found: list[Manifest] = []
    for doc in yaml.safe_load_all(text):
        if not isinstance(doc, dict) or "kind" not in doc or doc.get("kind") == "Kustomization":
            continue
        meta = doc.get("metadata") or {}
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            continue
        group, _, version = str(doc.get("apiVersion", "v1")).rpartition("/")
        kind = str(doc["kind"])
        namespace = "" if kind in CLUSTER_SCOPED else str(meta.get("namespace") or default_namespace)
        annotations = meta.get("annotations") or {}
        health = annotations.get(HEALTH_ANNOTATION) if isinstance(annotations, dict) else None
        digest = json.dumps(doc, sort_keys=True, default=str)
        found.append(Manifest(group, version, kind, namespace, meta["name"], health and str(health), doc, digest))
    return found


class GitReader:
    """Resolves revisions and reads manifests from a local (bare or non-bare) repository."""

    def __init__(self, repo: Path, branch: str) -> None:
        self.repo = repo
        self.branch = branch
        self._cache: dict[tuple[str, str], tuple[Manifest, ...]] = {}

    def _git(self, *args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(self.repo), *args], capture_output=True, text=True, check=False, timeout=30
        )
        if proc.returncode != 0:
            raise GitError(proc.stderr.strip() or f"git {args[0]} failed")
        return proc.stdout

    def branch_head(self) -> str:
        """SHA of the tracked branch right now (no caching: a fresh push must be seen)."""
        return self._git("rev-parse", "--verify", f"refs/heads/{self.branch}^{{commit}}").strip()

    def resolve(self, revision: str) -> str:
        """Resolve a targetRevision/revision to a commit SHA; a full 40-hex SHA passes through unchecked."""
        if SHA_RE.match(revision):
            return revision
        if revision in ("", "HEAD", self.branch):
            return self.branch_head()
        try:
            return self._git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}").strip()
        except GitError as exc:
            raise GitError(f"unable to resolve '{revision}' to a commit SHA") from exc

    def manifests(self, revision: str, path: str, namespace: str) -> tuple[Manifest, ...]:
        """The objects under ``path`` at ``revision``, sorted like Argo CD's resource list."""
        clean = path.strip("/")
        tree = self._git("rev-parse", f"{revision}:{clean}" if clean else f"{revision}^{{tree}}").strip()
        cached = self._cache.get((tree, namespace))
        if cached is not None:
            return cached
        found: list[Manifest] = []
        listing = self._git("ls-tree", "-r", "-z", tree)
        for entry in filter(None, listing.split("\0")):
            meta, name = entry.split("\t", 1)
            _mode, kind, blob = meta.split()
            if kind == "blob" and name.endswith(MANIFEST_SUFFIXES):
                found.extend(parse_manifests(self._git("cat-file", "blob", blob), namespace))
        result = tuple(sorted(found, key=lambda m: m.key))
        self._cache[(tree, namespace)] = result
        return result

    def source_type(self, revision: str, path: str) -> str:
        """``Kustomize`` when the directory has a kustomization file, else ``Directory``."""
        clean = path.strip("/")
        names = self._git("ls-tree", "--name-only", f"{revision}:{clean}" if clean else revision).split()
        return "Kustomize" if {"kustomization.yaml", "kustomization.yml"} & set(names) else "Directory"

    def revision_metadata(self, revision: str) -> dict[str, Any]:
        """Author, date and message of a commit, shaped like Argo CD's RevisionMetadata."""
        out = self._git("show", "-s", "--format=%an <%ae>%x00%cI%x00%B", self.resolve(revision))
        author, date, message = out.split("\0", 2)
        return {"author": author, "date": _utc(date), "message": message.strip()}


def _utc(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
