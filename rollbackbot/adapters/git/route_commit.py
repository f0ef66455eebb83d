"""One canary step as one commit: the route file edited in place, plus the sandbox files when shadowing.

The route YAML is edited by ``route_yaml`` (ruamel.yaml's round-trip loader: comments, key order
and quoting survive, the diff shows only the weights and the mirror), imported when a canary first
needs it. The commit carries the trailers ``Rollback-Incident``, ``Rollback-Step: k/n`` and
``Rollback-Weights: safe=50,compromised=50``; after a crash, the newest such commit on the deploy
branch says which step is live.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    parse_step,
)
from rollbackbot.errors import PermanentError, PolicyError


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
        from rollbackbot.adapters.git import route_yaml

        with self.repo._lock:  # noqa: SLF001
            git = self._git()
            listing = git.run("ls-tree", "-r", "-z", "--name-only", self.repo.remote_ref, "--", *paths)
            for path in filter(None, listing.split("\x00")):
                if not path.endswith((".yaml", ".yml")):
                    continue
                shown = git.attempt("show", f"{self.repo.remote_ref}:{path}")
                image = route_yaml.deployment_image(shown.text, name) if shown.status == 0 else None
                if image:
                    return image
        return None

    def commit_step(self, step: StepCommit, *, attempts: int = 5) -> str:
        """Write and push the step commit; a lost push race is rebuilt on the new head. Returns the commit."""
        from rollbackbot.adapters.git import route_yaml

        with self.repo._lock:  # noqa: SLF001
            for _attempt in range(attempts):
                self.repo._fetch()  # noqa: SLF001
                git = self._git()
                head = self.repo._head()  # noqa: SLF001
                original = git.attempt("show", f"{head}:{step.router.file}")
                if original.status != 0:
                    raise PolicyError(f"route file {step.router.file} is not on {self.repo.branch}")
                edited = route_yaml.edit_route(original.text, step.router, step.plan)
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
