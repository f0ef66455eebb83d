"""Git plumbing for the GitOps adapter: list-form commands through GitPython, no work tree.

Each helper is one git process, batched where git allows it (one ``for-each-ref`` for all
tags, one ``cat-file --batch-check`` for every tag x path), because process starts dominate
the time from alert to pushed commit.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import git

from rollbackbot.adapters.git.transport import NetworkLimits, run_watched, transport_of
from rollbackbot.core.commit_message import one_line, parse_commit_trailers
from rollbackbot.core.releases import TagListing
from rollbackbot.errors import PermanentError, TransientError
from rollbackbot.redact import redact_urls

# index-pack (not unpack-objects) receives every pack: only it reports progress while bytes
# arrive ("Receiving objects: ... KiB/s" once a second), which tells a trickle from a stall.
_KEEP_PACK = ("-c", "fetch.unpackLimit=1")
_PORCELAIN_FLAGS = (" ", "+", "-", "*", "!", "=")  # `git push --porcelain`: ok, forced, deleted, new, rejected, same
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MANIFEST_MAX_BYTES = 1 << 20
_SAFE_PATH = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_PROGRESS = re.compile(r"^(remote: )?[A-Za-z ]+: +(\d+% |\d+, done|\d+ \(delta)")
_LISTING_FORMAT = (
    "%(refname)%00%(objecttype)%00%(objectname)%00%(*objecttype)%00%(*objectname)%00%(tag)%00%(contents:body)%00"
)


def _verb(args: Sequence[str]) -> str:
    """The git subcommand of an argument list that may start with ``-c key=value`` pairs."""
    index = 0
    while index < len(args) - 1 and args[index] == "-c":
        index += 2
    return args[index] if index < len(args) else "?"


def tag_ref_prefix(pattern: str) -> str:
    """The literal ``refs/tags/...`` directory every match of a tag glob lives under."""
    first = min((i for i in (pattern.find(w) for w in "*?[") if i >= 0), default=len(pattern))
    return "refs/tags/" + pattern[:first].rpartition("/")[0]


def checked_paths(paths: Sequence[str]) -> tuple[str, ...]:
    """Policy paths, refused unless plain relative repository paths (they reach git as arguments)."""
    cleaned = tuple(p.strip("/") for p in paths)
    for path in cleaned:
        parts = path.split("/")
        if not _SAFE_PATH.fullmatch(path) or any(p in (".", "..", ".git") for p in parts) or parts[0] == ".rollbackbot":
            raise PermanentError(f"refusing unsafe repository path {one_line(path)!r}")
    return cleaned


def redact(text: str) -> str:
    """``text`` with the user:password part of any URL removed, so errors never carry credentials."""
    return redact_urls(_USERINFO.sub("", text))


@dataclass(frozen=True)
class GitOutcome:
    """Exit status and output of one git process."""

    status: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        """stdout decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")

    @property
    def detail(self) -> str:
        """git's complaint without progress lines, credential-free and bounded, for error messages."""
        lines = [line.strip() for line in re.split(r"[\r\n]+", self.stderr) if line.strip()]
        kept = [line for line in lines if not _PROGRESS.match(line)]
        return one_line(redact("; ".join(kept[-3:])), 300) or f"exit status {self.status}"


@dataclass(frozen=True)
class PushOutcome:
    """The remote's answer to a push: accepted, or rejected with git's summary."""

    accepted: bool
    summary: str  # e.g. "[rejected] (fetch first)", "[remote rejected] (failed to update ref)"


@dataclass(frozen=True)
class TreeEntry:
    """A path's mode and object id in a tree (``ls-tree``)."""

    mode: str
    oid: str


@dataclass(frozen=True)
class GitObject:
    """An object id and its type (blob, tree, commit, tag)."""

    oid: str
    kind: str


class Plumbing:
    """Runs git commands in one repository; every failure becomes a readable, credential-free error."""

    def __init__(self, repo: git.Repo, limits: NetworkLimits | None = None) -> None:
        self.repo = repo
        self.limits = limits or NetworkLimits()

    def attempt(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> GitOutcome:
        """Run ``git <args>`` and report how it went, whatever the exit status."""
        feed = tempfile.TemporaryFile() if stdin is not None else None  # Popen needs a real file
        try:
            if feed is not None and stdin is not None:
                feed.write(stdin)
                feed.seek(0)
            status, out, err = self.repo.git.execute(
                ["git", *args],
                istream=feed,
                with_extended_output=True,
                with_exceptions=False,
                stdout_as_string=False,
                strip_newline_in_stdout=False,
                env=dict(env or {}),
                kill_after_timeout=timeout,
            )
        finally:
            if feed is not None:
                feed.close()
        return GitOutcome(int(status), out if isinstance(out, bytes) else b"", str(err))

    def run(self, *args: str, env: Mapping[str, str] | None = None, stdin: bytes | None = None) -> str:
        """Run ``git <args>``; its stdout, or PermanentError naming the command and git's complaint."""
        outcome = self.attempt(*args, env=env, stdin=stdin)
        if outcome.status != 0:
            raise PermanentError(f"git {args[0]} failed: {one_line(redact(outcome.stderr), 400)}")
        return outcome.text

    def network(self, *args: str, remote_url: str) -> str:
        """Run a command that talks to the remote; TransientError (credential-free) when it fails."""
        outcome = self.watched(*args, remote_url=remote_url)
        if outcome.status != 0:
            message = f"git {_verb(args)} {redact(remote_url)} failed: {outcome.detail}"
            if "couldn't find remote ref" in outcome.stderr:
                raise PermanentError(message)
            raise TransientError(message)
        return outcome.text

    def watched(self, *args: str, remote_url: str) -> GitOutcome:
        """Run ``git <args>`` against the remote under the stall rules of ``rollbackbot.adapters.git.transport``."""
        env = {**os.environ, **self.repo.git.environment()}
        watch = transport_of(remote_url) == "other"
        done = run_watched(
            ["git", *args], cwd=Path(self.repo.git_dir), env=env, limits=self.limits, watch_progress=watch
        )
        if done.killed:
            return GitOutcome(-9, done.stdout, f"{done.stderr}\nfatal: {done.killed}")
        return GitOutcome(done.status, done.stdout, done.stderr)

    def push(self, source: str, destination: str, remote_url: str, *, lease: str | None = None) -> PushOutcome:
        """``git push --porcelain`` one ref; how the remote answered, or TransientError on transport failure.

        With ``lease`` (the value the destination must still have; "" for "must not exist") the push may
        replace the ref, but only if nobody moved it since it was read (``--force-with-lease``).
        """
        leased = [f"--force-with-lease={destination}:{lease}"] if lease is not None else []
        outcome = self.watched(
            "push", "--porcelain", "--progress", *leased, "origin", f"{source}:{destination}", remote_url=remote_url
        )
        for line in outcome.text.splitlines():
            fields = line.split("\t")  # <flag> TAB <from>:<to> TAB <summary>
            if len(fields) >= 3 and fields[0] in _PORCELAIN_FLAGS:
                return PushOutcome(fields[0] != "!", fields[2])
        message = f"git push to {redact(remote_url)} failed: {outcome.detail}"
        raise TransientError(message)

    def sync(self, branch: str, tracking_ref: str, remote_url: str, *, known_state: bool) -> None:
        """Fetch ``branch`` into ``tracking_ref`` and all tags (moved tags follow, deleted ones go).

        With thousands of annotated tags a fetch costs ~100 ms even when nothing changed (git
        re-checks connectivity from every tag), so when the local state is known to be complete
        an ``ls-remote`` comparison (~15 ms) decides whether to fetch at all.
        """
        if known_state:
            advertised = self.network(
                "ls-remote", "--refs", "origin", f"refs/heads/{branch}", "refs/tags/*", remote_url=remote_url
            )
            remote = {
                (tracking_ref if name == f"refs/heads/{branch}" else name): oid
                for oid, name in (line.split("\t", 1) for line in advertised.splitlines())
                if name == f"refs/heads/{branch}" or name.startswith("refs/tags/")
            }
            if remote == self.ref_ids(tracking_ref, "refs/tags"):
                return
        refspecs = (f"+refs/heads/{branch}:{tracking_ref}", "+refs/tags/*:refs/tags/*")
        self.network(
            *_KEEP_PACK,
            "fetch",
            "--progress",  # progress lines are what the stall watchdog watches
            "--force",
            "--prune",
            "--no-write-fetch-head",
            "origin",
            *refspecs,
            remote_url=remote_url,
        )
        if not known_state:
            # The first fetch writes one loose file per tag; packed refs keep every later listing fast.
            self.run("pack-refs", "--all")

    def fetch_branch(self, branch: str, tracking_ref: str, remote_url: str) -> None:
        """Fetch only ``branch`` into ``tracking_ref`` (no tags): the quick re-read after a lost push race."""
        refspec = f"+refs/heads/{branch}:{tracking_ref}"
        self.network(
            *_KEEP_PACK,
            "fetch",
            "--progress",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-auto-maintenance",  # housekeeping belongs to the next full fetch, not inside the race window
            "origin",
            refspec,
            remote_url=remote_url,
        )

    def ref_ids(self, *patterns: str) -> dict[str, str]:
        """Local refname -> object id for refs under ``patterns``."""
        out = self.run("for-each-ref", "--format=%(refname) %(objectname)", "--", *patterns)
        return {name: oid for name, oid in (line.split(" ", 1) for line in out.splitlines())}

    def list_refs(self, patterns: Sequence[str]) -> dict[str, TagListing]:
        """Refs under ``patterns`` in ONE for-each-ref, keyed by full refname."""
        out = self.run("for-each-ref", f"--format={_LISTING_FORMAT}", "--", *patterns)
        fields = out.split("\x00")
        listings: dict[str, TagListing] = {}
        for start in range(0, len(fields) - 7, 7):
            refname, kind, oid, peeled_kind, peeled, signed_name, body = fields[start : start + 7]
            refname = refname.lstrip("\n")  # each record ends with the newline for-each-ref adds
            commit = oid if kind == "commit" else (peeled if peeled_kind == "commit" else "")
            name = refname.removeprefix("refs/tags/")
            listings[refname] = TagListing(name, kind, oid, commit, body, signed_name)
        return listings

    def objects(self, specs: Iterable[str]) -> dict[str, GitObject | None]:
        """``rev:path`` -> object (None when absent) for all specs in ONE cat-file --batch-check."""
        wanted = list(dict.fromkeys(specs))
        if not wanted:
            return {}
        stdin = "".join(f"{spec}\n" for spec in wanted).encode()
        lines = self.run("cat-file", "--batch-check=%(objectname) %(objecttype)", stdin=stdin).splitlines()
        if len(lines) != len(wanted):
            raise PermanentError("git cat-file --batch-check answered an unexpected number of lines")
        found: dict[str, GitObject | None] = {}
        for spec, line in zip(wanted, lines, strict=True):
            oid, _, kind = line.rpartition(" ")
            found[spec] = None if kind in ("missing", "ambiguous") else GitObject(oid, kind)
        return found

    def verify_tag(self, tag_object: str, allowed_signers: Path) -> tuple[bool, str]:
        """Whether the tag's ssh signature verifies; trusts the exit code only.

        Rejected keys also print ``Good "git" signature``, so the text is used for the reason only.
        """
        outcome = self.attempt(
            "-c",
            "gpg.format=ssh",
            "-c",
            f"gpg.ssh.allowedSignersFile={allowed_signers}",
            "verify-tag",
            tag_object,
        )
        if outcome.status == 0:
            return True, ""
        lines = [line.strip() for line in outcome.stderr.splitlines() if line.strip()]
        last = lines[-1].removeprefix("error: ") if lines else f"exit status {outcome.status}"
        return False, one_line(last, 120)

    def manifests(self, commit: str, paths: Sequence[str]) -> dict[str, str]:
        """Text of every YAML/JSON file under ``paths`` at ``commit`` (ls-tree, then one cat-file --batch)."""
        listing = self.run("ls-tree", "-r", "-z", "--full-tree", commit, "--", *paths)
        blobs: dict[str, str] = {}
        for entry in filter(None, listing.split("\x00")):
            meta, _, path = entry.partition("\t")
            _, kind, oid = meta.split()
            if kind == "blob" and path.endswith(MANIFEST_SUFFIXES):
                blobs[oid] = path
        if not blobs:
            return {}
        raw = self.attempt("cat-file", "--batch", stdin="".join(f"{o}\n" for o in blobs).encode()).stdout
        texts: dict[str, str] = {}
        position = 0
        for path in blobs.values():
            header_end = raw.index(b"\n", position)
            size = int(raw[position:header_end].split()[2])
            content = raw[header_end + 1 : header_end + 1 + size]
            texts[path] = content[:MANIFEST_MAX_BYTES].decode("utf-8", "replace")
            position = header_end + 1 + size + 1
        return texts

    def diff(self, head: str, target: str, paths: Sequence[str]) -> tuple[str, tuple[str, ...]]:
        """``git diff --stat`` text and the changed files, from head to target, in one call."""
        out = self.run("diff", "--no-renames", "--raw", "-z", "--stat=200,200", head, target, "--", *paths)
        fields = out.split("\x00")
        changed = tuple(fields[i] for i in range(1, len(fields) - 1, 2))
        return fields[-1].rstrip("\n"), changed

    def entries(self, commit: str, paths: Sequence[str]) -> dict[str, TreeEntry | None]:
        """Mode and object of each path at ``commit`` (None when absent), in one ls-tree."""
        listing = self.run("ls-tree", "-z", "--full-tree", commit, "--", *paths)
        found: dict[str, TreeEntry | None] = dict.fromkeys(paths)
        for entry in filter(None, listing.split("\x00")):
            meta, _, path = entry.partition("\t")
            mode, _, oid = meta.split()
            if path in found:
                found[path] = TreeEntry(mode, oid)
        return found

    def rollback_commit(
        self,
        head: str,
        at_target: Mapping[str, TreeEntry | None],
        blobs: Mapping[str, bytes],
        *,
        message: bytes,
        identity: str,
        ref: str,
    ) -> str:
        """A commit on ``head`` whose paths are as in ``at_target`` and ``blobs``; written to ``ref``.

        One ``git fast-import``: a path absent at the target is deleted (files added since the
        release go away), every other path is replaced whole by the target's tree or file.
        One process keeps the window between fetching the head and pushing short, which is
        what decides a push race against busy writers.
        """
        stamp = f"{int(time.time())} +0000"
        stream = bytearray(f"commit {ref}\nmark :1\nauthor {identity} {stamp}\ncommitter {identity} {stamp}\n".encode())
        stream += b"data %d\n%s\nfrom %s\n" % (len(message), message, head.encode())
        for path, entry in at_target.items():
            stream += f"D {path}\n".encode() if entry is None else f"M {entry.mode} {entry.oid} {path}\n".encode()
        for path, content in blobs.items():
            stream += b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(content), content)
        stream += b"\nget-mark :1\ndone\n"
        commit = self.run("fast-import", "--quiet", "--force", "--done", stdin=bytes(stream)).strip()
        if not re.fullmatch(r"[0-9a-f]{40}", commit):
            raise PermanentError("git fast-import did not report the rollback commit")
        return commit


class RollbackIndex:
    """``Rollback-Incident`` trailers on the deploy branch, scanned once, then only new commits.

    A full ``git log --grep`` over 10,000 commits costs ~40 ms on every rollback; the branch
    mostly grows, so only ``<last tip>..<head>`` is read. A hit is re-checked for ancestry,
    and a rewritten history (the hit no longer on the branch) triggers a full rescan.
    """

    def __init__(self) -> None:
        self.tip: str | None = None
        self.commits: dict[str, str] = {}  # incident id -> commit

    def find(self, plumbing: Plumbing, head: str, incident_id: str) -> str | None:
        """The commit reachable from ``head`` whose Rollback-Incident trailer is ``incident_id``."""
        self.refresh(plumbing, head)
        commit = self.commits.get(incident_id)
        if commit is None or plumbing.attempt("merge-base", "--is-ancestor", commit, head).status == 0:
            return commit
        self.tip, self.commits = None, {}
        self.refresh(plumbing, head)
        return self.commits.get(incident_id)

    def refresh(self, plumbing: Plumbing, head: str) -> None:
        """Read the trailers of commits reachable from ``head`` not seen yet."""
        if head == self.tip:
            return
        fmt = ("log", "--fixed-strings", "--grep=Rollback-Incident: ", "--format=%H%x00%B%x00")
        outcome = plumbing.attempt(*fmt, head, f"^{self.tip}") if self.tip else None
        if outcome is None or outcome.status != 0:  # first scan, or the old tip is gone
            self.commits = {}
            outcome = GitOutcome(0, plumbing.run(*fmt, head).encode(), "")
        fields = outcome.text.split("\x00")
        for index in range(len(fields) - 2, -1, -2):  # oldest first, so the first commit per incident wins
            incident = parse_commit_trailers(fields[index]).get("Rollback-Incident")
            if incident:
                self.commits.setdefault(incident, fields[index - 1].strip())
        self.tip = head
