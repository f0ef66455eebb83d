"""Release tags in their own repository, so the deploy branch's fetch and push never see them.

With thousands of annotated tags in the repository that also holds the deploy branch, every
``git fetch`` parses every tag object and re-checks connectivity from every tag ref, and every
``git push`` walks them all as "the remote already has" tips: ~170 ms and ~110 ms of each
rollback. So the work clone is two repositories:

* the *deploy* repository (the work directory itself): only the deploy branch, fetched with
  ``--no-tags``; the rollback commit is written and pushed from it;
* the *tag index* (``<workdir>/tags.git``): only ``refs/tags/*``, with the deploy repository's
  object store as its alternate (``objects/info/alternates``), so it holds tag objects and any
  tagged commit not on the branch, and reads every commit the deploy repository has.

The whole tag namespace is fetched at start-up and again in the background after each rollback.
On the critical path only the app's own tags are checked against the remote (one ``ls-remote``
of ``refs/tags/<app>/*``, run while the branch is fetched); a difference fetches just those tags
before planning, so a tag pushed, moved or deleted a moment before the alert is always seen.

Signature verdicts are cached per tag object id *and* the digest of the allowed-signers file:
a tag object never changes (its id is the hash of its content, signature included), ``git
verify-tag`` checks an ssh signature at the tag's own date, so the verdict only changes when
the allowed-signers file does, and then the key changes too. One ``ReleaseChecks`` is shared by
every adapter of a process (rollbacks, readiness, canary routes): a tag the scheduled readiness
run verified is not verified again on an incident's critical path, and vice versa.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import git

from rollbackbot.adapters.git.plumbing import GitObject, Plumbing
from rollbackbot.adapters.git.transport import NetworkLimits
from rollbackbot.core.releases import Inspection

TAG_REPOSITORY = "tags.git"
TAG_REFSPEC = "+refs/tags/*:refs/tags/*"
NEGATIVE_VERDICT_SECONDS = 300.0  # a failed verification is re-checked after this (ssh-keygen may have been missing)
VERDICT_CACHE_LIMIT = 50_000


def tag_repository(workdir: Path) -> Path:
    """Where the tag index of the work clone at ``workdir`` lives."""
    return workdir / TAG_REPOSITORY


def open_tag_index(workdir: Path, url: str, environment: dict[str, str], limits: NetworkLimits) -> Plumbing:
    """The tag index repository (created when missing) borrowing objects from ``workdir``'s store."""
    path = tag_repository(workdir)
    if (path / "HEAD").is_file():
        repo = git.Repo(path)
    else:
        repo = git.Repo.init(path, bare=True)
        # Never let housekeeping in the tag index touch the objects it borrows.
        with repo.config_writer() as config:
            config.set_value("gc", "auto", "0")
            config.set_value("maintenance", "auto", "false")
    alternates = path / "objects" / "info" / "alternates"
    wanted = f"{(workdir / 'objects').resolve()}\n"
    if not alternates.is_file() or alternates.read_text() != wanted:
        alternates.parent.mkdir(parents=True, exist_ok=True)
        alternates.write_text(wanted)
    repo.git.update_environment(**environment)
    if "origin" not in [remote.name for remote in repo.remotes]:
        repo.create_remote("origin", url)
    elif repo.remote("origin").url != url:
        repo.remote("origin").set_url(url)
    return Plumbing(repo, limits)


def signers_digest(allowed_signers: Path) -> str:
    """SHA-256 of the allowed-signers file: part of every cached verdict's key."""
    return hashlib.sha256(allowed_signers.read_bytes()).hexdigest()


@dataclass(frozen=True)
class _Verdict:
    verified: bool
    detail: str
    at: float


class VerdictCache:
    """``git verify-tag`` outcomes per (tag object id, allowed-signers digest)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._verdicts: dict[tuple[str, str], _Verdict] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def verify(self, tag_object: str, digest: str, check: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
        """The cached verdict for ``tag_object`` under ``digest``, else ``check()`` (then cached)."""
        key = (tag_object, digest)
        with self._lock:
            known = self._verdicts.get(key)
        if known is not None and (known.verified or self._clock() - known.at < NEGATIVE_VERDICT_SECONDS):
            self.hits += 1
            return known.verified, known.detail
        self.misses += 1
        verified, detail = check()
        with self._lock:
            if len(self._verdicts) >= VERDICT_CACHE_LIMIT:
                self._verdicts.clear()
            self._verdicts[key] = _Verdict(verified, detail, self._clock())
        return verified, detail

    def __len__(self) -> int:
        return len(self._verdicts)


InspectionKey = tuple[str, str, tuple[str, ...]]  # tag object id, allowed-signers digest, the target's paths
K = TypeVar("K")
V = TypeVar("V")


class BoundedFacts(Generic[K, V]):
    """A thread-safe map of facts about immutable objects; emptied whole when it reaches ``limit``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._known: dict[K, V] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._known.get(key)

    def known(self, keys: Iterable[K]) -> dict[K, V]:
        with self._lock:
            return {key: self._known[key] for key in keys if key in self._known}

    def put_all(self, found: Mapping[K, V]) -> None:
        with self._lock:
            if len(self._known) + len(found) > self._limit:
                self._known.clear()
            self._known.update(found)

    def put(self, key: K, value: V) -> None:
        self.put_all({key: value})


class InspectionCache(BoundedFacts[InspectionKey, Inspection]):
    """Signature *and* image-pin outcomes of a release tag; only positive signature verdicts are kept."""

    def __init__(self, limit: int = 10_000) -> None:
        super().__init__(limit)


@dataclass(frozen=True)
class Reach:
    """Which of an app's tagged commits the deploy branch contained at ``head``."""

    head: str
    tagged: frozenset[str]  # the tagged commits that were asked about
    reachable: frozenset[str]  # those of them that are ancestors of ``head``


class ObjectFacts:
    """``<commit>:<path>`` -> the object there (None: absent), and per tag prefix the ``Reach`` of a head.

    A commit never changes, so neither does either fact.
    """

    def __init__(self, limit: int = 50_000) -> None:
        self._objects: BoundedFacts[str, GitObject | None] = BoundedFacts(limit)
        self._reach: BoundedFacts[str, Reach] = BoundedFacts(limit)

    def known(self, specs: Iterable[str]) -> dict[str, GitObject | None]:
        return self._objects.known(specs)

    def remember(self, found: Mapping[str, GitObject | None]) -> None:
        self._objects.put_all(found)

    def reach(self, prefix: str) -> Reach | None:
        return self._reach.get(prefix)

    def remember_reach(self, prefix: str, reach: Reach) -> None:
        self._reach.put(prefix, reach)


@dataclass
class ReleaseChecks:
    """What is known about release tags, shared by every git adapter of one process."""

    verdicts: VerdictCache = field(default_factory=VerdictCache)
    inspections: InspectionCache = field(default_factory=InspectionCache)
    objects: ObjectFacts = field(default_factory=ObjectFacts)


def _fetch_into_index(tags: Plumbing, url: str, refspec: str) -> None:
    """One tag fetch into the index: forced (moved tags follow), pruned (deleted ones go), no auto-gc."""
    tags.network(
        "-c",
        "fetch.unpackLimit=1",  # index-pack reports progress, which the stall watchdog watches
        "fetch",
        "--progress",
        "--force",
        "--prune",
        "--no-tags",
        "--no-write-fetch-head",
        "--no-auto-maintenance",
        "origin",
        refspec,
        remote_url=url,
    )


def fetch_all_tags(tags: Plumbing, url: str) -> None:
    """Every tag of the remote into the tag index; moved tags follow, deleted ones go."""
    _fetch_into_index(tags, url, TAG_REFSPEC)
    tags.run("pack-refs", "--all")  # one file, not thousands: every later listing reads it at once


def remote_tags(tags: Plumbing, url: str, prefix: str) -> dict[str, str]:
    """refname -> object id of the remote's tags under ``prefix`` (``refs/tags/<dir>``), one ls-remote."""
    pattern = f"{prefix.rstrip('/')}/*"
    out = tags.network("ls-remote", "--refs", "origin", pattern, remote_url=url)
    found: dict[str, str] = {}
    for line in out.splitlines():
        oid, _, name = line.partition("\t")
        if name.startswith(f"{prefix.rstrip('/')}/"):
            found[name] = oid
    return found


def fetch_tags_under(tags: Plumbing, url: str, prefix: str) -> None:
    """The remote's tags under ``prefix`` into the tag index (pruned there); the rest untouched."""
    pattern = f"{prefix.rstrip('/')}/*"
    _fetch_into_index(tags, url, f"+{pattern}:{pattern}")
