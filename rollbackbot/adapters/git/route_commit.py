"""One canary step as one commit: the route file edited in place, plus the sandbox files when shadowing.

The route YAML is edited with ruamel.yaml's round-trip loader, so comments, key order and quoting
survive and the diff shows only the weights (and the mirror). The commit carries the trailers
``Rollback-Incident``, ``Rollback-Step: k/n`` and ``Rollback-Weights: safe=50,compromised=50``;
after a crash, the newest such commit on the deploy branch says which step is live.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from rollbackbot.adapters.git.plumbing import Plumbing
from rollbackbot.adapters.git.repo import OUTGOING_REF, GitOpsRepository
from rollbackbot.core.commit_message import one_line, parse_commit_trailers
from rollbackbot.core.policy import TrafficRouter
from rollbackbot.core.traffic import (
    SHADOW_TRAILER,
    STEP_TRAILER,
    WEIGHTS_TRAILER,
    StepCommit,
    StepRecord,
    TrafficPlan,
    apply_plan,
    parse_step,
)
from rollbackbot.errors import PermanentError, PolicyError

SCHEMAS = Path(__file__).parent / "route_schemas"  # openAPIV3Schema of each CRD; provenance in SOURCE.md
# ruamel's emitter indents block sequences one way per dump; GitOps files use either style.
_LAYOUTS = ({"mapping": 2, "sequence": 4, "offset": 2}, {"mapping": 2, "sequence": 2, "offset": 0})


def _yaml(layout: Mapping[str, int]) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line the author wrote on one
    yaml.indent(**layout)
    return yaml


def _dump(yaml: YAML, document: Any) -> str:
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def edit_route(text: str, router: TrafficRouter, plan: TrafficPlan) -> str:
    """The route file with ``plan`` applied; every other byte as the author wrote it where YAML allows."""
    layout = _layout_of(text)
    yaml = _yaml(layout)
    try:
        document = yaml.load(text)
    except YAMLError as exc:
        raise PolicyError(f"{router.file}: not valid YAML: {one_line(str(exc))}") from None
    if not isinstance(document, dict):
        raise PolicyError(f"{router.file}: expected one YAML mapping (a {router.kind.value})")
    apply_plan(document, router, plan)
    edited = _dump(yaml, document)
    check_schema(router.kind.value, YAML(typ="safe").load(edited), router.file)
    return edited


@cache
def _validator(kind: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{kind}.v1.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def check_schema(kind: str, rendered: object, where: str) -> None:
    """PolicyError unless the rendered route fits its CRD schema: the cluster would refuse it, mid-incident."""
    errors = sorted(_validator(kind).iter_errors(rendered), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        path = ".".join(str(p) for p in first.absolute_path) or "(root)"
        raise PolicyError(f"{where}: the edited {kind} would not fit its schema at {path}: {one_line(first.message)}")


def _layout_of(text: str) -> Mapping[str, int]:
    """The sequence layout that reproduces ``text`` best when dumped unedited."""

    def differing(layout: Mapping[str, int]) -> int:
        try:
            again = _dump(_yaml(layout), _yaml(layout).load(text)).splitlines()
        except YAMLError:
            return 1 << 30  # this layout cannot even read the file: never the best
        original = text.splitlines()
        return sum(a != b for a, b in zip(again, original, strict=False)) + abs(len(again) - len(original))

    return min(_LAYOUTS, key=differing)


def _deployment_image(text: str, name: str) -> str | None:
    try:
        documents = list(YAML(typ="safe").load_all(text))
    except YAMLError:
        return None
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "Deployment":
            if (document.get("metadata") or {}).get("name") != name:
                continue
            containers = ((document.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
            if containers and isinstance(containers[0], dict) and containers[0].get("image"):
                return str(containers[0]["image"])
    return None


class RouteCommitter:
    """Writes step commits to the deploy branch of a ``GitOpsRepository`` (same clone, same lock)."""

    def __init__(self, repo: GitOpsRepository) -> None:
        self.repo = repo

    def _git(self) -> Plumbing:
        return self.repo._ready()  # noqa: SLF001 - the committer is part of the git adapter

    def last_step(self, incident_id: str) -> StepRecord | None:
        """After a fetch: the newest commit of ``incident_id`` with a ``Rollback-Step`` trailer, if any."""
        with self.repo._lock:  # noqa: SLF001
            self.repo._fetch()  # noqa: SLF001
            log = self._git().run(
                "log",
                "--fixed-strings",
                f"--grep=Rollback-Incident: {one_line(incident_id)}",
                "--format=%H%x00%B%x00",
                self.repo.remote_ref,
            )
        fields = log.split("\x00")
        for index in range(0, len(fields) - 1, 2):
            trailers = parse_commit_trailers(fields[index + 1])
            position = parse_step(trailers.get(STEP_TRAILER, ""))
            if trailers.get("Rollback-Incident") == incident_id and position is not None:
                weights = trailers.get(WEIGHTS_TRAILER, "")
                return StepRecord(fields[index].strip(), position, weights, trailers.get(SHADOW_TRAILER))
        return None

    def route_text(self, router: TrafficRouter, revision: str | None = None) -> str:
        """The route file's text at ``revision`` (default: the deploy-branch head, fetched now)."""
        with self.repo._lock:  # noqa: SLF001
            if revision is None:
                self.repo._fetch()  # noqa: SLF001 - a person may have edited the route since the last step
            outcome = self._git().attempt("show", f"{revision or self.repo.remote_ref}:{router.file}")
        if outcome.status != 0:
            raise PolicyError(f"route file {router.file} is not on {self.repo.branch}")
        return outcome.text

    def workload_image(self, name: str, paths: Sequence[str]) -> str | None:
        """The first container image of the Deployment ``name`` under ``paths`` at the fetched head, if any."""
        with self.repo._lock:  # noqa: SLF001
            git = self._git()
            listing = git.run("ls-tree", "-r", "-z", "--name-only", self.repo.remote_ref, "--", *paths)
            for path in filter(None, listing.split("\x00")):
                if not path.endswith((".yaml", ".yml")):
                    continue
                shown = git.attempt("show", f"{self.repo.remote_ref}:{path}")
                image = _deployment_image(shown.text, name) if shown.status == 0 else None
                if image:
                    return image
        return None

    def commit_step(self, step: StepCommit, *, attempts: int = 5) -> str:
        """Write and push the step commit; a lost push race is rebuilt on the new head. Returns the commit."""
        with self.repo._lock:  # noqa: SLF001
            for _attempt in range(attempts):
                self.repo._fetch()  # noqa: SLF001
                git = self._git()
                head = self.repo._head()  # noqa: SLF001
                original = git.attempt("show", f"{head}:{step.router.file}")
                if original.status != 0:
                    raise PolicyError(f"route file {step.router.file} is not on {self.repo.branch}")
                edited = edit_route(original.text, step.router, step.plan)
                blobs = {step.router.file: edited.encode()}
                blobs.update({path: body for path, body in step.files.items() if body is not None})
                deleted = {path: None for path, body in step.files.items() if body is None}
                who = self.repo._identity  # noqa: SLF001
                identity = f"{who['GIT_COMMITTER_NAME']} <{who['GIT_COMMITTER_EMAIL']}>"
                commit = git.rollback_commit(
                    head, deleted, blobs, message=step.message().encode(), identity=identity, ref=OUTGOING_REF
                )
                if self.repo._push(commit):  # noqa: SLF001
                    return commit
            raise PermanentError(f"step {step.position.trailer()} lost {attempts} push races in a row")
