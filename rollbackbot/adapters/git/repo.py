"""The GitOps repository adapter: release tags in, one rollback commit out, never forced.

The service's own bare clone is the only local state: the deploy branch in the work directory,
the release tags in a tag index beside it (``rollbackbot.adapters.git.tagindex``). Every public
method takes the lock, because the service calls them from worker threads and git ref updates
do not mix. Where the time of a rollback goes, and why the layout is what it is: bench/README.md.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import git
import yaml

from rollbackbot.adapters.git.lineage import has_commit, relate
from rollbackbot.adapters.git.objects import read_trees, rewritten_directories, write_rollback
from rollbackbot.adapters.git.paths import list_paths
from rollbackbot.adapters.git.plumbing import (
    GitObject,
    Plumbing,
    RollbackIndex,
    TreeEntry,
    checked_paths,
    tag_ref_prefix,
)
from rollbackbot.adapters.git.tagindex import (
    Reach,
    ReleaseChecks,
    fetch_all_tags,
    fetch_tags_under,
    open_tag_index,
    remote_tags,
    signers_digest,
)
from rollbackbot.adapters.git.transport import NetworkLimits, network_environment
from rollbackbot.core.argo_status import Lineage
from rollbackbot.core.commit_message import build_commit_message, one_line, parse_commit_trailers, parse_trailers
from rollbackbot.core.model import (
    ReleaseTag,
    ResolvedTarget,
    RollbackPlan,
    RollbackRequest,
    RollbackResult,
    SkippedTag,
)
from rollbackbot.core.releases import (
    NOT_ON_BRANCH,
    QUARANTINE_HEADER,
    QUARANTINE_PATH,
    Broken,
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

log = logging.getLogger("rollbackbot.git")


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


PACKS_BEFORE_REPACK = 24  # more packs than this in the work clone: roll them up in the background
PUSH_BUDGET_SECONDS = 120.0  # how long a rollback keeps retrying a push that loses races
PUSH_BACKOFF_BASE_SECONDS = 0.05
PUSH_BACKOFF_MAX_SECONDS = 0.5
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
        push_attempts: int | None = None,
        push_budget: float = PUSH_BUDGET_SECONDS,
        network_limits: NetworkLimits | None = None,
        background_refresh: bool = True,
        checks: ReleaseChecks | None = None,
    ) -> None:
        if not _SAFE_BRANCH.fullmatch(branch) or ".." in branch or branch.endswith((".lock", "/")):
            raise ConfigError(f"invalid deploy branch name {one_line(branch)!r}")
        self.url = url
        self.branch = branch
        self.workdir = workdir
        self.allowed_signers = allowed_signers
        self.push_attempts = max(1, push_attempts) if push_attempts is not None else None
        self.push_budget = push_budget
        self.network_limits = network_limits or NetworkLimits()
        self._identity = {
            "GIT_AUTHOR_NAME": author_name,
            "GIT_AUTHOR_EMAIL": author_email,
            "GIT_COMMITTER_NAME": author_name,
            "GIT_COMMITTER_EMAIL": author_email,
        }
        self._lock = threading.Lock()
        self._plumbing: Plumbing | None = None
        self._tags: Plumbing | None = None  # the tag index (rollbackbot.adapters.git.tagindex)
        self._tags_lock = threading.Lock()  # writes to the tag index: critical path and background refresh
        self.checks = checks or ReleaseChecks()  # shared with the other adapters of the process (tagindex.py)
        self._side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollbackbot-git-tags")  # critical path
        # Reads of one plan that need only the head run side by side (2 cores: ~10 ms off each plan).
        self._parallel = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rollbackbot-git-plan")
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollbackbot-git-refresh")
        self._background_refresh = background_refresh
        self._refreshing: Future[None] | None = None
        self._repacking: Future[None] | None = None
        self._graph_tip: str | None = None  # deploy head covered by the commit-graph file
        self.timings: dict[str, float] = {}  # milliseconds per step of the last plan / commit (logged)
        self._fetched = False
        self._sha1 = False  # objects are written in-process only in SHA-1 repositories
        self._rollbacks = RollbackIndex()
        self._head_paths: frozenset[str] | None = None  # see head_paths()
        self._quarantines: dict[str, Quarantine] = {}  # blob id -> parsed file (the last one read)
        self._entry_cache: dict[tuple[str, tuple[str, ...]], dict[str, TreeEntry | None]] = {}
        # What the last plan read at its head, so the commit right after it starts no git process for it.
        self._plan_objects: tuple[str, dict[str, GitObject | None]] = ("", {})
        self._head_trees: tuple[str, dict[str, dict[str, TreeEntry]]] = ("", {})

    @property
    def remote_ref(self) -> str:
        """The remote-tracking ref of the deploy branch in the bare clone."""
        return f"refs/remotes/origin/{self.branch}"

    # --- clone and fetch ----------------------------------------------------------------------

    def ensure_clone(self) -> None:
        """Create the clone if absent (else point it at ``url``), then fetch the branch and every tag."""
        with self._lock:
            self._open()
            self._fetch_everything()

    def head(self) -> str:
        """The deploy branch head as of the last fetch."""
        with self._lock:
            return self._head()

    def _head(self) -> str:
        plumbing = self._ready()
        return (
            read_ref(Path(plumbing.repo.git_dir), self.remote_ref)
            or plumbing.run("rev-parse", "--verify", f"{self.remote_ref}^{{commit}}").strip()
        )

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
            with repo.config_writer() as config:
                # The tag index borrows this store's objects: never prune what it may still need.
                config.set_value("gc", "pruneExpire", "never")
        # Never wait for a password prompt; treat policy paths as literal, never as globs; a
        # stalled transfer ends (see rollbackbot.adapters.git.transport), a slow one does not.
        environment = {
            "GIT_LITERAL_PATHSPECS": "1",
            **network_environment(self.network_limits, os.environ.get("GIT_SSH_COMMAND")),
        }
        repo.git.update_environment(**environment)
        if "origin" not in [remote.name for remote in repo.remotes]:
            repo.create_remote("origin", self.url)
        elif repo.remote("origin").url != self.url:
            repo.remote("origin").set_url(self.url)
        self._tags = open_tag_index(self.workdir, self.url, environment, self.network_limits)
        self._plumbing = Plumbing(repo, self.network_limits)
        self._sha1 = self._plumbing.run("rev-parse", "--show-object-format").strip() == "sha1"
        return self._plumbing

    def _tag_index(self) -> Plumbing:
        self._ready()
        assert self._tags is not None
        return self._tags

    def _ready(self) -> Plumbing:
        """The repository, fetched at least once in this process."""
        plumbing = self._open()
        if not self._fetched:
            self._fetch_everything()
        return plumbing

    def _fetch_everything(self) -> None:
        """Branch, every tag, the commit-graph and the rollback index: start-up, off the critical path."""
        self._fetch()
        assert self._tags is not None
        with self._tags_lock:
            fetch_all_tags(self._tags, self.url)
        self._fetched = True
        self._write_commit_graph()
        self._rollbacks.refresh(self._open(), self._head())  # the one full history scan, at start-up

    def _fetch(self, *, list_beside: bool = False) -> Future[None] | None:
        """Fetch the deploy branch alone (no tags: they live in the tag index).

        The paths at the new head (``head_paths``, for intake) are listed before returning, or with
        ``list_beside`` on a side thread: the caller joins the returned future before it lets go.
        """
        plumbing = self._open()
        before = read_ref(Path(plumbing.repo.git_dir), self.remote_ref)
        with self._step("fetch_branch"):
            plumbing.fetch_branch(self.branch, self.remote_ref, self.url)
        self._keep_packs_few()
        head = read_ref(Path(plumbing.repo.git_dir), self.remote_ref)
        if head is not None and head == before and self._head_paths is not None:
            return None  # the same tree as before: the path listing stands

        def listing() -> None:
            try:
                with self._step("list_paths"):
                    self._head_paths = list_paths(plumbing, self.remote_ref)
            except PermanentError:
                self._head_paths = None  # no branch yet: unknown, so intake refuses nothing

        if list_beside:
            return self._parallel.submit(listing)
        listing()
        return None

    def _refresh_for(self, target: ResolvedTarget) -> Future[None] | None:
        """Fetch the branch while the app's tags are compared with the remote's; fetch those that differ.

        Returns the path listing still running beside (``_fetch``), to be joined by the caller.
        """
        tags = self._tag_index()
        prefix = tag_ref_prefix(target.tag_pattern)
        differs = self._side.submit(self._tags_differ, tags, prefix)
        listing = self._fetch(list_beside=True)
        with self._step("check_tags"):
            stale = differs.result()
        if stale:
            with self._step("fetch_tags"), self._tags_lock:
                fetch_tags_under(tags, self.url, prefix)
        return listing

    def _tags_differ(self, tags: Plumbing, prefix: str) -> bool:
        """Whether the remote's tags under ``prefix`` differ from the tag index's (one ls-remote)."""
        return remote_tags(tags, self.url, prefix) != tags.ref_ids(prefix)

    def _write_commit_graph(self) -> None:
        """A commit-graph with changed-path Bloom filters for the deploy branch (``git log -- <path>`` in ms)."""
        plumbing = self._open()
        head = read_ref(Path(plumbing.repo.git_dir), self.remote_ref)
        if head is None or head == self._graph_tip:
            return
        outcome = plumbing.attempt(
            "commit-graph", "write", "--reachable", "--changed-paths", "--split", "--no-progress"
        )
        if outcome.status == 0:
            self._graph_tip = head
        else:
            log.warning("commit-graph not written", extra={"error": one_line(outcome.stderr, 300)})

    def _keep_packs_few(self) -> None:
        """Every fetch keeps its pack (the stall watchdog needs index-pack's progress) and maintenance is
        off in the work clone, so packs pile up: hundreds double a fetch and triple a lookup. Past
        ``PACKS_BEFORE_REPACK`` they are rolled up in the background (``git repack --geometric=2 -d``:
        no reachability walk, so no object is dropped; readers carry on while it runs)."""
        if self._repacking is not None and not self._repacking.done():
            return
        packs = Path(self._open().repo.git_dir) / "objects" / "pack"
        if sum(1 for name in os.listdir(packs) if name.endswith(".pack")) <= PACKS_BEFORE_REPACK:
            return
        self._repacking = self._background.submit(self._repack)

    def _repack(self) -> None:
        outcome = self._open().attempt("repack", "--geometric=2", "-d", "-q")
        if outcome.status != 0:
            log.warning("repack of the work clone failed", extra={"error": one_line(outcome.stderr, 300)})

    def _refresh_in_background(self) -> None:
        """After a rollback: every tag and the commit-graph, in a worker thread (single flight)."""
        if not self._background_refresh or (self._refreshing is not None and not self._refreshing.done()):
            return
        self._refreshing = self._background.submit(self._refresh_now)

    def _refresh_now(self) -> None:
        try:
            tags = self._tag_index()
            with self._tags_lock:
                fetch_all_tags(tags, self.url)
            self._write_commit_graph()
        except Exception as exc:  # noqa: BLE001 - a background refresh must never take a worker down
            log.warning("background tag refresh failed", extra={"error": one_line(str(exc), 300)})

    def close(self) -> None:
        """Stop the worker threads (waits for a refresh in flight)."""
        self._background.shutdown(wait=True)
        self._side.shutdown(wait=True)
        self._parallel.shutdown(wait=True)

    def _step(self, name: str) -> _Stopwatch:
        return _Stopwatch(self.timings, name)

    # --- plans ------------------------------------------------------------------------------------

    def plan(self, target: ResolvedTarget) -> RollbackPlan:
        """Fetch, then compute current and target release for the target's paths."""
        with self._lock:
            self.timings = {}
            started = time.perf_counter()
            listing = self._refresh_for(target)
            try:
                plan = self._choose(target)
            finally:
                _join(listing)
            self.timings["plan_total"] = round(1000 * (time.perf_counter() - started), 2)
            log.info("rollback planned", extra={"app": target.app, "timings_ms": self.timings})
            return plan

    def _choose(self, target: ResolvedTarget) -> RollbackPlan:
        """The plan at the last fetched head: current release, newest verified target, skipped tags."""
        found = self._gather(target)
        pool, unusable = target_pool(found.candidates, found.current, found.trees, found.ancestors)
        inspect = partial(self._inspect, paths=found.trees.paths)
        broken = Broken(found.current.tag if found.current else None, found.trees, target.allow_delete)
        choice = select_target(pool, target.require_trailers, found.quarantine, inspect, broken)
        if not pool:
            choice = TargetChoice(None, (), no_candidates_reason(target.tag_pattern, found.current))
        return self._plan(target, found, choice, (*choice.skipped, *unusable, *found.ignored))

    def plan_to(self, target: ResolvedTarget, tag_name: str) -> RollbackPlan:
        """Like ``plan`` but towards ``tag_name``, which must still be verified (else NoTargetError)."""
        with self._lock:
            _join(self._refresh_for(target))
            found = self._gather(target)
            chosen = next((c for c in found.candidates if c.tag.name == tag_name), None)
            if chosen is None:
                why = next((s.reason for s in found.ignored if s.name == tag_name), "no such release tag")
                raise NoTargetError(f"{one_line(tag_name)} matching {target.tag_pattern!r}: {why}")
            if found.trees.same_as_head(chosen.tag.commit):
                raise NoTargetError(f"{tag_name} has the same content as the deploy branch head")
            if chosen.tag.commit not in found.ancestors:
                raise NoTargetError(f"{tag_name} is {NOT_ON_BRANCH}")
            inspect = partial(self._inspect, paths=found.trees.paths)
            broken = Broken(found.current.tag if found.current else None, found.trees, target.allow_delete)
            problems = candidate_problems(chosen, target.require_trailers, found.quarantine, inspect, broken)
            if problems:
                raise NoTargetError(f"{tag_name} is not verified: {'; '.join(problems)}")
            return self._plan(target, found, TargetChoice(chosen, ()), ())

    def describe_tag(self, name: str) -> ReleaseTag:
        """The release tag ``name`` with its peeled commit and trailers."""
        with self._lock:
            listing = self._tag_index().list_refs([f"refs/tags/{name}"]).get(f"refs/tags/{name}")
        if listing is None or not listing.commit:
            raise PermanentError(f"no tag {one_line(name)!r} pointing at a commit")
        return ReleaseTag(listing.name, listing.commit, parse_trailers(listing.body))

    def _gather(self, target: ResolvedTarget) -> _Releases:
        """Everything target selection needs except signatures: one tag listing, one tree lookup."""
        plumbing, tags = self._ready(), self._tag_index()
        paths = checked_paths(target.paths)
        prefix = tag_ref_prefix(target.tag_pattern)
        head = self._head()
        # "Is the app already rolled back?" is about the last commit that touched its paths, not the
        # branch head: another app's rollback on top must not turn this app's rollback into a proposal.
        # Bloom filters of the commit-graph make this a few ms.
        last_change = self._beside("last_change", plumbing, "log", "-1", "--format=%B", head, "--", *paths)
        rollbacks = self._parallel.submit(self._rollbacks.refresh, plumbing, head)  # for the commit's exactly-once
        with self._step("list_tags"):
            listings = tags.list_refs([prefix])
        candidates, ignored = release_candidates(listings.values(), target.tag_pattern)
        # Only releases on the deploy branch are targets.
        tagged = frozenset(c.tag.commit for c in candidates)
        reach = self._parallel.submit(self._ancestors, plumbing, tags, prefix, head, tagged)
        commits = list(dict.fromkeys([head, *(c.tag.commit for c in candidates)]))
        specs = [f"{commit}:{path}" for commit in commits for path in paths]
        with self._step("trees"):  # the tag index reads the deploy repository's objects too
            objects = self._objects_at(tags, [*specs, f"{head}:{QUARANTINE_PATH}"])
        at = {c: {p: _oid(objects[f"{c}:{p}"]) for p in paths} for c in commits}
        trees = TreeFacts(paths, at[head], at)
        current = find_current(candidates, trees)
        ancestors = set(reach.result())
        quarantine = self._read_quarantine(head, objects[f"{head}:{QUARANTINE_PATH}"])
        rollbacks.result()
        self._plan_objects = (head, objects)
        return _Releases(head, last_change.result(), candidates, ignored, trees, quarantine, current, ancestors)

    def _objects_at(self, tags: Plumbing, specs: list[str]) -> dict[str, GitObject | None]:
        """``commit:path`` lookups, each done once per process (``ReleaseChecks.objects``, shared)."""
        known = self.checks.objects.known(specs)
        missing = [spec for spec in specs if spec not in known]
        found = tags.objects(missing) if missing else {}
        self.checks.objects.remember(found)
        return known | found

    def _ancestors(
        self, plumbing: Plumbing, tags: Plumbing, prefix: str, head: str, tagged: frozenset[str]
    ) -> frozenset[str]:
        """The tagged commits that are ancestors of ``head``.

        Known for an earlier head that ``head`` descends from (by any adapter of the process, e.g. the
        readiness run), only the commits added since are new: one ``rev-list`` of them instead of a walk
        of the whole history for every tag. Anything else (a new tag, rewritten history, an unknown
        commit) asks ``for-each-ref --merged`` again.
        """
        with self._step("ancestry"):
            known = self.checks.objects.reach(prefix)
            if known is not None and tagged <= known.tagged:
                if known.head == head:
                    return known.reachable & tagged
                since = plumbing.attempt("rev-list", "--left-right", f"{known.head}...{head}")
                sides = since.text.split()
                if since.status == 0 and not any(line.startswith("<") for line in sides):
                    added = {line.removeprefix(">") for line in sides}
                    reachable = (known.reachable | (tagged & added)) & tagged
                    self.checks.objects.remember_reach(prefix, Reach(head, tagged, reachable))
                    return reachable
            merged = tags.run("for-each-ref", f"--merged={head}", "--format=%(*objectname)", prefix)
            reachable = frozenset(merged.split()) & tagged
            self.checks.objects.remember_reach(prefix, Reach(head, tagged, reachable))
            return reachable

    def _beside(self, step: str, plumbing: Plumbing, *args: str) -> Future[str]:
        """``plumbing.run(*args)`` on the plan's side threads, timed as ``step``; ``.result()`` joins it."""

        def timed() -> str:
            with self._step(step):
                return plumbing.run(*args)

        return self._parallel.submit(timed)

    def _plan(
        self, target: ResolvedTarget, found: _Releases, choice: TargetChoice, skipped: tuple[SkippedTag, ...]
    ) -> RollbackPlan:
        chosen = choice.target.tag if choice.target else None
        diff_stat, changed = "", tuple[str, ...]()
        if chosen:
            # What the commit will need, read while the diff runs: the target's entries, the head's trees.
            entries = self._parallel.submit(self._entries, chosen.commit, found.trees.paths)
            trees = self._parallel.submit(self._read_head_trees, found.head, found.trees.paths)
            with self._step("diff"):
                diff_stat, changed = self._ready().diff(found.head, chosen.commit, found.trees.paths)
            entries.result()
            trees.result()
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
        if blob.oid in self._quarantines:  # the file rarely changes; push retries skip re-reading it
            return self._quarantines[blob.oid]
        text = self._ready().run("cat-file", "blob", blob.oid)
        try:
            quarantine = parse_quarantine(yaml.safe_load(text))
        except (yaml.YAMLError, ValueError) as exc:
            raise PermanentError(f"{QUARANTINE_PATH} at {head[:12]} is invalid: {one_line(str(exc), 300)}") from None
        self._quarantines = {blob.oid: quarantine}
        return quarantine

    def _inspect(self, candidate: Candidate, *, paths: tuple[str, ...]) -> Inspection:
        """Signature first (cheap to fail), then the image pins of the manifests at the tag.

        Both are facts about immutable objects (the tag object and the commit it names), so the
        outcome is cached per tag object id and allowed-signers digest: never skipped, done once.
        """
        digest = signers_digest(self.allowed_signers)
        key = (candidate.object_id, digest, paths)
        known = self.checks.inspections.get(key)
        if known is not None and known.signature_verified:
            return known
        with self._step("verify"):
            inspection = self._inspect_now(candidate, paths, digest)
        if inspection.signature_verified:
            self.checks.inspections.put(key, inspection)
        return inspection

    def _inspect_now(self, candidate: Candidate, paths: tuple[str, ...], digest: str) -> Inspection:
        tags = self._tag_index()
        verified, detail = self.checks.verdicts.verify(
            candidate.object_id, digest, partial(tags.verify_tag, candidate.object_id, self.allowed_signers)
        )
        if not verified:
            return Inspection(False, detail)
        texts = tags.manifests(candidate.tag.commit, paths)
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
        """Write and push the rollback commit; exactly once per incident, never forced.

        A push that loses a race (the branch moved, or the remote lost a ref-lock race) is
        rebuilt on the new head and retried with exponential backoff and jitter until
        ``push_budget`` seconds have passed (or ``push_attempts`` pushes, when set).
        """
        with self._lock:
            if request.plan.target is None:
                raise NoTargetError(request.plan.no_target_reason or "the plan has no target release")
            self.timings = {}
            started = time.perf_counter()
            try:
                result = self._commit_and_push(request)
            finally:
                self.timings["commit_total"] = round(1000 * (time.perf_counter() - started), 2)
            log.info(
                "rollback commit pushed" if not result.already_done else "rollback commit already on the branch",
                extra={"commit": result.commit, "push_attempts": result.push_attempts, "timings_ms": self.timings},
            )
        self._refresh_in_background()
        return result

    def _commit_and_push(self, request: RollbackRequest) -> RollbackResult:
        """The push loop: the first attempt builds on the head as last fetched (the plan's, usually).

        No fetch before the first push: a push is never forced, so a head that moved since makes
        the remote reject it, and only then is the branch fetched and the commit rebuilt (or
        re-planned, or refused as a conflict) on the new head.
        """
        paths = checked_paths(request.target.paths)
        planned = request.plan
        deadline = time.monotonic() + self.push_budget
        attempt = 0
        stale = False
        while True:
            attempt += 1
            if attempt > 1:  # rejected: fetch only the branch, so the window until the next push stays short
                with self._step("refetch"):
                    self._ready().fetch_branch(self.branch, self.remote_ref, self.url)
                self._keep_packs_few()
            with self._step("read"):
                found = self._branch_objects(request.plan.head, paths)
                head = _oid(found[self.remote_ref]) or self._head()
                done = self._find_rollback(request.incident_id, head)
            if done:
                return RollbackResult(done, already_done=True, push_attempts=attempt)
            request = self._request_on(request, head, paths, found)
            with self._step("write"):
                commit = self._write_commit(request, head, paths, found)
            checkpoint("after_commit")
            with self._step("push"):
                pushed = self._push(commit)
            if pushed:
                replanned = request.plan if request.plan != planned else None
                return RollbackResult(commit, already_done=False, push_attempts=attempt, replanned=replanned)
            if attempt == 1 and not stale:
                stale = True  # the first push went out on the last fetched head; retry at once
                continue
            self._wait_before_retry(attempt, deadline)

    def push_rollback_branch(self, request: RollbackRequest, branch: str) -> RollbackResult:
        """The rollback commit on the deploy branch tip, pushed to ``branch`` (a pull request's head).

        Kept as it is when the branch already holds this incident's rollback on the current tip (a
        re-run after a crash); otherwise built on the tip and pushed with ``--force-with-lease`` against
        the branch's value just read (never against the deploy branch). TransientError when it lost.
        """
        with self._lock:
            if request.plan.target is None:
                raise NoTargetError(request.plan.no_target_reason or "the plan has no target release")
            self._fetch()
            plumbing, ref, base = self._ready(), f"refs/heads/{branch}", self._head()
            advertised = plumbing.network("ls-remote", "origin", ref, remote_url=self.url).split()
            lease = advertised[0] if advertised else ""
            if lease:
                plumbing.fetch_branch(branch, f"refs/rollbackbot/{branch}", self.url)
                parents, _, message = plumbing.run("log", "-1", "--format=%P%x00%B", lease).partition("\x00")
                ours = parse_commit_trailers(message).get("Rollback-Incident") == one_line(request.incident_id)
                if ours and parents.split() == [base]:
                    return RollbackResult(lease, already_done=True)
            paths = checked_paths(request.target.paths)
            found = self._branch_objects(request.plan.head, paths)
            rebuilt = self._request_on(request, base, paths, found)
            commit = self._write_commit(rebuilt, base, paths, found)
            outcome = plumbing.push(commit, ref, self.url, lease=lease)
            if not outcome.accepted:
                raise TransientError(f"push to {branch} lost a race: {one_line(outcome.summary)}")
            replanned = rebuilt.plan if rebuilt.plan != request.plan else None
            return RollbackResult(commit, already_done=False, replanned=replanned)

    def _wait_before_retry(self, attempt: int, deadline: float) -> None:
        """Sleep a jittered, exponentially growing delay; TransientError once attempts or budget run out."""
        remaining = deadline - time.monotonic()
        if (self.push_attempts is not None and attempt >= self.push_attempts) or remaining <= 0:
            raise TransientError(
                f"push to {self.branch} was rejected {attempt} times in {self.push_budget - remaining:.0f}s: "
                "the branch keeps moving"
            )
        ceiling = min(PUSH_BACKOFF_MAX_SECONDS, PUSH_BACKOFF_BASE_SECONDS * 2 ** min(attempt - 1, 16))
        time.sleep(min(remaining, random.uniform(0, ceiling)))  # noqa: S311 - jitter, not cryptography

    def _read_head_trees(self, head: str, paths: tuple[str, ...]) -> None:
        """The trees a rollback of ``paths`` on ``head`` rewrites (``write_rollback``), kept for the commit."""
        self._head_trees = (head, read_trees(self._ready(), head, rewritten_directories([*paths, QUARANTINE_PATH])))

    def _branch_objects(self, planned: str, paths: tuple[str, ...]) -> dict[str, GitObject | None]:
        """In ONE cat-file: the fetched head, our paths there and at ``planned``, and the quarantine file.

        Right after the plan, with the branch where the plan saw it, the plan's own reads answer.
        """
        seen, objects = self._plan_objects
        if seen == planned and read_ref(Path(self._ready().repo.git_dir), self.remote_ref) == planned:
            found: dict[str, GitObject | None] = {self.remote_ref: GitObject(planned, "commit")}
            for path in (*paths, QUARANTINE_PATH):
                found[f"{self.remote_ref}:{path}"] = objects.get(f"{planned}:{path}")
            for path in paths:
                found[f"{planned}:{path}"] = objects.get(f"{planned}:{path}")
            if all(f"{planned}:{path}" in objects for path in (*paths, QUARANTINE_PATH)):
                return found
        at_head = [f"{self.remote_ref}:{path}" for path in (*paths, QUARANTINE_PATH)]
        return self._ready().objects([self.remote_ref, *at_head, *(f"{planned}:{path}" for path in paths)])

    def _request_on(
        self, request: RollbackRequest, head: str, paths: tuple[str, ...], found: dict[str, GitObject | None]
    ) -> RollbackRequest:
        """``request`` valid on ``head``: re-planned when only rollbackbot itself changed our paths since.

        A human's change to the same paths is never overridden (ConflictError); another
        incident's rollback (a commit with a ``Rollback-Incident`` trailer) is, because policies
        may share paths and the re-plan picks the right target for the branch as it is now.
        """
        plan = request.plan
        moved = [p for p in paths if _oid(found[f"{plan.head}:{p}"]) != _oid(found[f"{self.remote_ref}:{p}"])]
        if not moved:
            return request
        if not self._only_rollbacks_since(plan.head, head, moved):
            raise ConflictError(self._conflict_message(plan.head, head, moved))
        replanned = self._choose(request.target)
        if replanned.target is None:
            raise NoTargetError(
                f"another rollback changed {', '.join(moved)} after the plan; re-planned on {head[:12]}: "
                f"{replanned.no_target_reason}"
            )
        return replace(request, plan=replanned)

    def _only_rollbacks_since(self, planned: str, head: str, moved: Sequence[str]) -> bool:
        """Whether every commit since ``planned`` touching ``moved`` is a rollbackbot rollback."""
        if self._ready().attempt("merge-base", "--is-ancestor", planned, head).status != 0:
            return False  # history was rewritten: not ours to judge
        log = self._ready().run("log", "--format=%B%x00", f"{planned}..{head}", "--", *moved)
        messages = [m for m in log.split("\x00") if m.strip()]
        return bool(messages) and all("Rollback-Incident" in parse_commit_trailers(m) for m in messages)

    def _write_commit(
        self, request: RollbackRequest, head: str, paths: tuple[str, ...], found: dict[str, GitObject | None]
    ) -> str:
        """The rollback commit on ``head`` (whose paths equal the plan's head)."""
        plan = request.plan
        release = plan.target
        if release is None:
            raise NoTargetError(plan.no_target_reason or "the plan has no target release")
        quarantine = self._read_quarantine(head, found[f"{self.remote_ref}:{QUARANTINE_PATH}"])
        quarantined = quarantine.reason(release)
        if quarantined:
            # An approval may come long after the plan; a release quarantined since is not deployed.
            why = f"target {release.name} was quarantined after the plan ({quarantined}); not deploying it"
            raise PermanentError(why)
        blobs: dict[str, bytes] = {}
        if plan.current is not None:
            updated = quarantine.with_abandoned(plan.current, request.incident_id, request.target.app)
            if updated != quarantine:
                blobs[QUARANTINE_PATH] = render_quarantine(updated).encode()
        at_target = self._entries(release.commit, paths)  # the commit verified at plan time, even if the tag moved
        message = build_commit_message(request).encode()
        identity = f"{self._identity['GIT_COMMITTER_NAME']} <{self._identity['GIT_COMMITTER_EMAIL']}>"
        changed = [*at_target, *blobs]
        nested = any(b.startswith(f"{a}/") for a in changed for b in changed)
        if self._sha1 and not nested:  # in-process: one cat-file for the trees, loose objects, no fast-import
            stamp = f"{int(time.time())} +0000"
            seen, trees = self._head_trees
            return write_rollback(
                self._ready(),
                head,
                at_target,
                blobs,
                message=message,
                identity=identity,
                stamp=stamp,
                known_trees=trees if seen == head else None,
            )
        return self._ready().rollback_commit(
            head, at_target, blobs, message=message, identity=identity, ref=OUTGOING_REF
        )

    def _entries(self, commit: str, paths: tuple[str, ...]) -> dict[str, TreeEntry | None]:
        """The target's entries for our paths; a commit never changes, so retries reuse them."""
        key = (commit, paths)
        if key not in self._entry_cache:
            self._entry_cache = {key: self._ready().entries(commit, paths)}
        return self._entry_cache[key]

    def _conflict_message(self, planned: str, head: str, moved: Sequence[str]) -> str:
        log = self._ready().run("log", "--format=%h %an: %s", f"{planned}..{head}", "--", *moved)
        who = "; ".join(one_line(line) for line in log.splitlines()[:3]) or f"history rewritten to {head[:12]}"
        return (
            f"deploy branch {self.branch} changed {', '.join(moved)} after the rollback was planned "
            f"at {planned[:12]} ({who}); not overriding a human change, plan again"
        )

    def _push(self, commit: str) -> bool:
        """Push ``commit`` to the deploy branch; False when it lost a race (retry on the new head)."""
        outcome = self._ready().push(commit, f"refs/heads/{self.branch}", self.url)
        if outcome.accepted:
            return True
        if "[rejected]" in outcome.summary or lost_ref_race(outcome.summary):
            return False  # the branch moved (non-fast-forward) or another pusher held the ref lock
        raise PermanentError(f"the remote refused the push to {self.branch}: {one_line(outcome.summary)}")

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


# The remote's receive-pack could not update the ref because another push held its lock or
# moved it between its check and its update: a race like a non-fast-forward, not a refusal.
_REF_RACE = re.compile(r"failed to update ref|failed to lock|cannot lock ref|incorrect old value|unable to lock")


def _join(work: Future[None] | None) -> None:
    """Wait for side work (and raise what it raised)."""
    if work is not None:
        work.result()


def lost_ref_race(summary: str) -> bool:
    """Whether a push rejection is a ref-lock race with another pusher (retry), not a policy refusal."""
    return _REF_RACE.search(summary) is not None


def _oid(found: GitObject | None) -> str | None:
    return found.oid if found else None


_OBJECT_ID = re.compile(rb"[0-9a-f]{40}([0-9a-f]{24})?")


def read_ref(git_dir: Path, refname: str) -> str | None:
    """The object id of ``refname`` read from the files (loose ref, else packed-refs); None if absent.

    Saves a git process per lookup on the critical path. Anything unexpected (a symbolic ref,
    a damaged file) answers None and the caller asks git.
    """
    try:
        loose = (git_dir / refname).read_bytes().strip()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        loose = None
    except OSError:
        return None
    if loose is not None:
        return loose.decode() if _OBJECT_ID.fullmatch(loose) else None
    try:
        packed = (git_dir / "packed-refs").read_bytes()
    except OSError:
        return None
    wanted = b" " + refname.encode()
    for line in packed.splitlines():
        if line.endswith(wanted):
            oid = line[: -len(wanted)]
            return oid.decode() if _OBJECT_ID.fullmatch(oid) else None
    return None


class _Stopwatch:
    """``with``: adds the block's wall time (ms) to ``timings[name]``."""

    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        spent = 1000 * (time.perf_counter() - self.started)
        self.timings[self.name] = round(self.timings.get(self.name, 0.0) + spent, 2)


def render_quarantine(quarantine: Quarantine) -> str:
    """The quarantine file's text: header comment, then deterministic YAML."""
    body = yaml.safe_dump(
        quarantine_document(quarantine), sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    return QUARANTINE_HEADER + body
