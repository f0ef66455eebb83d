"""The GitOps repository adapter: release tags in, one rollback commit out, never forced.

The service's own bare clone is the only local state. Every public method takes the lock,
because the service calls them from worker threads and git index/ref updates do not mix.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import git
import yaml

from rollbackbot.adapters.git.lineage import has_commit, relate
from rollbackbot.adapters.git.paths import list_paths
from rollbackbot.adapters.git.plumbing import (
    NETWORK_TIMEOUT_SECONDS,
    GitObject,
    Plumbing,
    RollbackIndex,
    checked_paths,
    redact,
    tag_ref_prefix,
)
from rollbackbot.core.argo_status import Lineage
from rollbackbot.core.commit_message import build_commit_message, one_line, parse_trailers
from rollbackbot.core.model import (
    ReleaseTag,
    ResolvedTarget,
    RollbackPlan,
    RollbackRequest,
    RollbackResult,
    SkippedTag,
)
from rollbackbot.core.releases import (
    QUARANTINE_HEADER,
    QUARANTINE_PATH,
    Candidate,
    Inspection,
    Quarantine,
    TargetChoice,
    TreeFacts,
    candidate_problems,
    find_current,
    image_problems,
    no_candidates_reason,
    parse_quarantine,
    quarantine_document,
    release_candidates,
    select_target,
    target_pool,
)
from rollbackbot.errors import ConfigError, ConflictError, NoTargetError, PermanentError, TransientError
from rollbackbot.failpoints import checkpoint


@dataclass(frozen=True)
class _Releases:
    """What one ref listing and one tree lookup tell about an app's releases at the head."""

    head: str
    head_body: str  # message of the last commit touching the policy paths, for its trailers
    candidates: list[Candidate]
    ignored: list[SkippedTag]
    trees: TreeFacts
    quarantine: Quarantine
    current: Candidate | None
    ancestors: set[str]


OUTGOING_REF = "refs/rollbackbot/outgoing"  # pushed from a ref so GitPython can parse the outcome
_SAFE_BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


class GitOpsRepository:
    """``GitOpsRepo`` over a bare clone driven with GitPython."""

    def __init__(
        self,
        url: str,
        branch: str,
        workdir: Path,
        allowed_signers: Path,
        *,
        author_name: str = "rollbackbot",
        author_email: str = "rollbackbot@localhost",
        push_attempts: int = 4,
    ) -> None:
        if not _SAFE_BRANCH.fullmatch(branch) or ".." in branch or branch.endswith((".lock", "/")):
            raise ConfigError(f"invalid deploy branch name {one_line(branch)!r}")
        self.url = url
        self.branch = branch
        self.workdir = workdir
        self.allowed_signers = allowed_signers
        self.push_attempts = max(1, push_attempts)
        self._identity = {
            "GIT_AUTHOR_NAME": author_name,
            "GIT_AUTHOR_EMAIL": author_email,
            "GIT_COMMITTER_NAME": author_name,
            "GIT_COMMITTER_EMAIL": author_email,
        }
        self._lock = threading.Lock()
        self._plumbing: Plumbing | None = None
        self._fetched = False
        self._rollbacks = RollbackIndex()
        self._head_paths: frozenset[str] | None = None  # see head_paths()

    @property
    def remote_ref(self) -> str:
        """The remote-tracking ref of the deploy branch in the bare clone."""
        return f"refs/remotes/origin/{self.branch}"

    # --- clone and fetch ----------------------------------------------------------------------

    def ensure_clone(self) -> None:
        """Create the bare clone if absent (else point it at ``url``), then fetch branch and tags."""
        with self._lock:
            self._fetch()
            self._rollbacks.refresh(self._ready(), self._head())  # the one full history scan, at start-up

    def head(self) -> str:
        """The deploy branch head as of the last fetch."""
        with self._lock:
            return self._head()

    def _head(self) -> str:
        return self._ready().run("rev-parse", "--verify", f"{self.remote_ref}^{{commit}}").strip()

    def _open(self) -> Plumbing:
        if self._plumbing is not None:
            return self._plumbing
        if not self.allowed_signers.is_file():
            raise ConfigError(f"allowed-signers file {self.allowed_signers} does not exist")
        if (self.workdir / "HEAD").is_file():
            repo = git.Repo(self.workdir)
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
            repo = git.Repo.init(self.workdir, bare=True)
        # Never wait for a password prompt; treat policy paths as literal, never as globs.
        # ssh gets a connect timeout and http a low-speed abort, so a dead remote fails fast.
        repo.git.update_environment(
            GIT_TERMINAL_PROMPT="0",
            GIT_LITERAL_PATHSPECS="1",
            GIT_SSH_COMMAND=os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=15"),
            GIT_HTTP_LOW_SPEED_LIMIT="1000",
            GIT_HTTP_LOW_SPEED_TIME="30",
        )
        if "origin" not in [remote.name for remote in repo.remotes]:
            repo.create_remote("origin", self.url)
        elif repo.remote("origin").url != self.url:
            repo.remote("origin").set_url(self.url)
        self._plumbing = Plumbing(repo)
        return self._plumbing

    def _ready(self) -> Plumbing:
        """The repository, fetched at least once in this process."""
        plumbing = self._open()
        if not self._fetched:
            self._fetch()
        return plumbing

    def _fetch(self) -> None:
        self._open().sync(self.branch, self.remote_ref, self.url, known_state=self._fetched)
        self._fetched = True
        try:
            self._head_paths = list_paths(self._open(), self.remote_ref)
        except PermanentError:
            self._head_paths = None  # no branch yet: unknown, so intake refuses nothing

    # --- plans ------------------------------------------------------------------------------------

    def plan(self, target: ResolvedTarget) -> RollbackPlan:
        """Fetch, then compute current and target release for the target's paths."""
        with self._lock:
            self._fetch()
            found = self._gather(target)
            pool, same = target_pool(found.candidates, found.current, found.trees, found.ancestors)
            inspect = partial(self._inspect, paths=found.trees.paths)
            choice = select_target(pool, target.require_trailers, found.quarantine, inspect)
            if not pool:
                choice = TargetChoice(None, (), no_candidates_reason(target.tag_pattern, found.current))
            return self._plan(target, found, choice, (*choice.skipped, *same, *found.ignored))

    def plan_to(self, target: ResolvedTarget, tag_name: str) -> RollbackPlan:
        """Like ``plan`` but towards ``tag_name``, which must still be verified (else NoTargetError)."""
        with self._lock:
            self._fetch()
            found = self._gather(target)
            chosen = next((c for c in found.candidates if c.tag.name == tag_name), None)
            if chosen is None:
                why = next((s.reason for s in found.ignored if s.name == tag_name), "no such release tag")
                raise NoTargetError(f"{one_line(tag_name)} matching {target.tag_pattern!r}: {why}")
            if found.trees.same_as_head(chosen.tag.commit):
                raise NoTargetError(f"{tag_name} has the same content as the deploy branch head")
            inspect = partial(self._inspect, paths=found.trees.paths)
            problems = candidate_problems(chosen, target.require_trailers, found.quarantine, inspect)
            if problems:
                raise NoTargetError(f"{tag_name} is not verified: {'; '.join(problems)}")
            return self._plan(target, found, TargetChoice(chosen, ()), ())

    def describe_tag(self, name: str) -> ReleaseTag:
        """The release tag ``name`` with its peeled commit and trailers."""
        with self._lock:
            listing = self._ready().list_refs([f"refs/tags/{name}"]).get(f"refs/tags/{name}")
        if listing is None or not listing.commit:
            raise PermanentError(f"no tag {one_line(name)!r} pointing at a commit")
        return ReleaseTag(listing.name, listing.commit, parse_trailers(listing.body))

    def _gather(self, target: ResolvedTarget) -> _Releases:
        """Everything target selection needs except signatures: one ref listing, one tree lookup."""
        plumbing = self._ready()
        paths = checked_paths(target.paths)
        prefix = tag_ref_prefix(target.tag_pattern)
        listings = plumbing.list_refs([self.remote_ref, prefix])
        head = listings.pop(self.remote_ref, None)
        if head is None:
            raise PermanentError(f"deploy branch {self.branch} not found after fetch")
        candidates, ignored = release_candidates(listings.values(), target.tag_pattern)
        commits = list(dict.fromkeys([head.object_id, *(c.tag.commit for c in candidates)]))
        specs = [f"{commit}:{path}" for commit in commits for path in paths]
        objects = plumbing.objects([*specs, f"{head.object_id}:{QUARANTINE_PATH}"])
        at = {c: {p: _oid(objects[f"{c}:{p}"]) for p in paths} for c in commits}
        trees = TreeFacts(paths, at[head.object_id], at)
        current = find_current(candidates, trees)
        ancestors: set[str] = set()
        if current is None:  # rare path: an untagged head; only its ancestors are candidates
            merged = plumbing.run("for-each-ref", f"--merged={head.object_id}", "--format=%(*objectname)", prefix)
            ancestors = set(merged.split())
        quarantine = self._read_quarantine(head.object_id, objects[f"{head.object_id}:{QUARANTINE_PATH}"])
        # "Is the app already rolled back?" is about the last commit that touched its paths, not the
        # branch head: another app's rollback on top must not turn this app's rollback into a proposal.
        last_change = plumbing.run("log", "-1", "--format=%B", head.object_id, "--", *paths)
        return _Releases(head.object_id, last_change, candidates, ignored, trees, quarantine, current, ancestors)

    def _plan(
        self, target: ResolvedTarget, found: _Releases, choice: TargetChoice, skipped: tuple[SkippedTag, ...]
    ) -> RollbackPlan:
        chosen = choice.target.tag if choice.target else None
        diff_stat, changed = self._ready().diff(found.head, chosen.commit, found.trees.paths) if chosen else ("", ())
        return RollbackPlan(
            app=target.app,
            branch=self.branch,
            head=found.head,
            current=found.current.tag if found.current else None,
            target=chosen,
            skipped=skipped,
            diff_stat=diff_stat,
            changed_paths=changed,
            no_target_reason=choice.no_target_reason,
            head_is_rollback="Rollback-Incident" in parse_trailers(found.head_body),
        )

    def _read_quarantine(self, head: str, blob: GitObject | None) -> Quarantine:
        if blob is None:
            return Quarantine()
        text = self._ready().run("cat-file", "blob", blob.oid)
        try:
            return parse_quarantine(yaml.safe_load(text))
        except (yaml.YAMLError, ValueError) as exc:
            raise PermanentError(f"{QUARANTINE_PATH} at {head[:12]} is invalid: {one_line(str(exc), 300)}") from None

    def _inspect(self, candidate: Candidate, *, paths: tuple[str, ...]) -> Inspection:
        """Signature first (cheap to fail), then the image pins of the manifests at the tag."""
        plumbing = self._ready()
        verified, detail = plumbing.verify_tag(candidate.object_id, self.allowed_signers)
        if not verified:
            return Inspection(False, detail)
        texts = plumbing.manifests(candidate.tag.commit, paths)
        if not texts:
            return Inspection(True, "", (f"no manifests under {', '.join(paths)}",))
        problems = tuple(f"{path}: {problem}" for path, text in texts.items() for problem in image_problems(text))
        return Inspection(True, "", problems)

    # --- the rollback commit ----------------------------------------------------------------------

    def find_rollback(self, incident_id: str) -> str | None:
        """The commit on the deploy branch carrying ``Rollback-Incident: <id>``, if any (after a fetch)."""
        with self._lock:
            self._fetch()
            return self._find_rollback(incident_id, self._head())

    def _find_rollback(self, incident_id: str, head: str) -> str | None:
        return self._rollbacks.find(self._ready(), head, one_line(incident_id))

    def commit_rollback(self, request: RollbackRequest) -> RollbackResult:
        """Write and push the rollback commit; exactly once per incident, never forced."""
        with self._lock:
            plan = request.plan
            if plan.target is None:
                raise NoTargetError(plan.no_target_reason or "the plan has no target release")
            paths = checked_paths(request.target.paths)
            message = build_commit_message(request).encode()
            for attempt in range(1, self.push_attempts + 1):
                self._fetch()
                head = self._head()
                done = self._find_rollback(request.incident_id, head)
                if done:
                    return RollbackResult(done, already_done=True, push_attempts=attempt)
                commit = self._write_commit(request, plan.target, head, paths, message)
                checkpoint("after_commit")
                if self._push(commit):
                    return RollbackResult(commit, already_done=False, push_attempts=attempt)
            raise TransientError(
                f"push to {self.branch} was rejected {self.push_attempts} times: the branch keeps moving"
            )

    def _write_commit(
        self, request: RollbackRequest, release: ReleaseTag, head: str, paths: tuple[str, ...], message: bytes
    ) -> str:
        """The rollback commit on ``head``; ConflictError if a human changed our paths since the plan."""
        plan = request.plan
        target = release.commit  # the commit verified at plan time, even if the tag moved since
        specs = [f"{rev}:{path}" for rev in (plan.head, head, target) for path in paths]
        found = self._ready().objects([*specs, f"{head}:{QUARANTINE_PATH}"])
        moved = [p for p in paths if _oid(found[f"{plan.head}:{p}"]) != _oid(found[f"{head}:{p}"])]
        if moved:
            raise ConflictError(self._conflict_message(plan.head, head, moved))
        blobs: dict[str, bytes] = {}
        if plan.current is not None:
            quarantine = self._read_quarantine(head, found[f"{head}:{QUARANTINE_PATH}"])
            updated = quarantine.with_abandoned(plan.current, request.incident_id, request.target.app)
            if updated != quarantine:
                blobs[QUARANTINE_PATH] = render_quarantine(updated).encode()
        at_target = {path: found[f"{target}:{path}"] for path in paths}
        tree = self._ready().rollback_tree(head, target, at_target, blobs)
        return (
            self._ready()
            .run("commit-tree", tree, "-p", head, "--no-gpg-sign", "-F", "-", env=self._identity, stdin=message)
            .strip()
        )

    def _conflict_message(self, planned: str, head: str, moved: Sequence[str]) -> str:
        log = self._ready().run("log", "--format=%h %an: %s", f"{planned}..{head}", "--", *moved)
        who = "; ".join(one_line(line) for line in log.splitlines()[:3]) or f"history rewritten to {head[:12]}"
        return (
            f"deploy branch {self.branch} changed {', '.join(moved)} after the rollback was planned "
            f"at {planned[:12]} ({who}); not overriding a human change, plan again"
        )

    def _push(self, commit: str) -> bool:
        """Push ``commit`` to the deploy branch; False when rejected because the branch moved."""
        plumbing = self._ready()
        plumbing.run("update-ref", OUTGOING_REF, commit)
        result = None
        try:
            result = plumbing.repo.remote("origin").push(
                f"{OUTGOING_REF}:refs/heads/{self.branch}", kill_after_timeout=NETWORK_TIMEOUT_SECONDS
            )
            result.raise_if_error()
        except git.GitCommandError as exc:
            if result is not None and any(info.flags & info.REJECTED for info in result):
                return False
            if result is not None and any(info.flags & info.REMOTE_REJECTED for info in result):
                summary = one_line(" ".join(info.summary for info in result))
                if "failed to update ref" in summary:  # another push moved the branch mid-push: a lost race
                    return False
                raise PermanentError(f"the remote refused the push to {self.branch}: {summary}") from None
            detail = one_line(redact(str(exc.stderr)), 300)
            raise TransientError(f"git push to {redact(self.url)} failed: {detail}") from None
        if not result:
            raise TransientError(f"git push to {redact(self.url)} reported nothing")
        return True

    # --- what exists at the head (for intake) ----------------------------------------------------

    def head_paths(self) -> frozenset[str] | None:
        """Paths at the deploy branch head as of the last fetch; None before the first. No git process, no lock."""
        return self._head_paths

    # --- lineage (rollbackbot.adapters.git.lineage) -------------------------------------------------

    def lineage(self, commit: str, paths: Sequence[str], revision: str | None = None) -> Lineage:
        """How ``revision`` (default: the deploy branch head, fetched now) relates to ``commit`` for ``paths``.

        A commit the clone does not hold yet (pushed after our last fetch) triggers one fetch.
        """
        with self._lock:
            plumbing = self._ready()
            if revision is None or not (has_commit(plumbing, revision) and has_commit(plumbing, commit)):
                self._fetch()
            return relate(self._ready(), commit, revision or self._head(), checked_paths(paths))


def _oid(found: GitObject | None) -> str | None:
    return found.oid if found else None


def render_quarantine(quarantine: Quarantine) -> str:
    """The quarantine file's text: header comment, then deterministic YAML."""
    body = yaml.safe_dump(
        quarantine_document(quarantine), sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    return QUARANTINE_HEADER + body
