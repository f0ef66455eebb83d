"""What an incident page reads besides the incident: the rollback commit and the evidence bundle.

Both are read locally and bounded: the commit from the service's own clone (never a fetch while a
page renders), the bundle from a ``file://`` evidence directory. An ``s3://`` bundle is linked, not read.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rollbackbot.core.commit_message import parse_commit_trailers

COMMIT_RE = re.compile(r"[0-9a-f]{40}")
MAX_DIFF_BYTES = 512 * 1024
MAX_EXCERPT_BYTES = 64 * 1024
MAX_EXCERPT_LINES = 50
MANIFEST = "manifest.json"
REQUESTS_FILE = "requests.jsonl"
GIT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class FileDiff:
    """One file's part of the rollback commit's diff."""

    path: str
    lines: tuple[str, ...]
    added: int
    removed: int


@dataclass(frozen=True)
class CommitView:
    """The rollback commit as the page shows it."""

    sha: str
    author: str
    date: str
    message: str
    trailers: dict[str, str]
    files: tuple[FileDiff, ...]
    truncated: bool = False


@dataclass(frozen=True)
class EvidenceFile:
    """One file of the bundle with its manifest entry."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class EvidenceView:
    """The bundle: its files from the manifest and an excerpt of the flagged requests."""

    url: str
    readable: bool
    files: tuple[EvidenceFile, ...] = ()
    requests_excerpt: tuple[str, ...] = ()
    excerpt_truncated: bool = False
    problem: str = ""
    root: Path | None = field(default=None, compare=False)


def _git(workdir: Path, *args: str) -> bytes | None:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}
    try:
        done = subprocess.run(
            ["git", "-C", str(workdir), *args],
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def split_diff(patch: str) -> tuple[FileDiff, ...]:
    """A ``git show`` patch cut into one part per file, with added and removed line counts."""
    files: list[FileDiff] = []
    current: list[str] = []
    for line in patch.splitlines():
        if line.startswith("diff --git ") and current:
            files.append(_file_diff(current))
            current = []
        if line.startswith("diff --git ") or current:
            current.append(line)
    if current:
        files.append(_file_diff(current))
    return tuple(files)


def _file_diff(lines: list[str]) -> FileDiff:
    path = lines[0].removeprefix("diff --git ")
    for line in lines:
        if line.startswith("+++ ") and line != "+++ /dev/null":
            path = line[4:].removeprefix("b/")
            break
        if line.startswith("--- ") and line != "--- /dev/null":
            path = line[4:].removeprefix("a/")
    body_start = next((i for i, line in enumerate(lines) if line.startswith("@@")), len(lines))
    body = lines[body_start:]
    added = sum(1 for line in body if line.startswith("+"))
    removed = sum(1 for line in body if line.startswith("-"))
    return FileDiff(path=path, lines=tuple(body), added=added, removed=removed)


def read_commit(workdir: Path, sha: str | None) -> CommitView | None:
    """The commit with its message, trailers and per-file diff; None when it is not in the clone."""
    if not sha or not COMMIT_RE.fullmatch(sha) or not workdir.is_dir():
        return None
    header = _git(workdir, "log", "-1", "--no-color", "--format=%H%x00%an <%ae>%x00%aI%x00%B", sha, "--")
    if header is None:
        return None
    parts = header.decode("utf-8", "replace").split("\x00", 3)
    if len(parts) != 4:
        return None
    patch = _git(workdir, "show", "--no-color", "--no-ext-diff", "--format=", "--patch", sha, "--") or b""
    truncated = len(patch) > MAX_DIFF_BYTES
    text = patch[:MAX_DIFF_BYTES].decode("utf-8", "replace")
    message = parts[3].strip()
    return CommitView(
        sha=parts[0],
        author=parts[1],
        date=parts[2],
        message=message,
        trailers=parse_commit_trailers(message),
        files=split_diff(text),
        truncated=truncated,
    )


def bundle_dir(evidence_url: str | None) -> Path | None:
    """The local directory of a ``file://`` bundle, else None."""
    if not evidence_url:
        return None
    parsed = urlsplit(evidence_url)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.netloc + parsed.path))


def read_evidence(evidence_url: str | None, incident_id: str) -> EvidenceView | None:
    """The bundle's manifest and requests excerpt, when it is a readable local bundle of this incident."""
    if not evidence_url:
        return None
    root = bundle_dir(evidence_url)
    if root is None:
        return EvidenceView(url=evidence_url, readable=False, problem="stored remotely; open it with your S3 tools")
    if root.name != incident_id:
        return EvidenceView(url=evidence_url, readable=False, problem="bundle is not this incident's")
    try:
        manifest = json.loads((root / MANIFEST).read_bytes())
        entries = manifest["files"]
        files = tuple(
            EvidenceFile(str(name), int(entry["bytes"]), str(entry["sha256"]))
            for name, entry in sorted(entries.items())
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return EvidenceView(url=evidence_url, readable=False, problem=f"manifest unreadable ({type(exc).__name__})")
    excerpt, truncated = _requests_excerpt(root / REQUESTS_FILE)
    return EvidenceView(
        url=evidence_url,
        readable=True,
        files=files,
        requests_excerpt=excerpt,
        excerpt_truncated=truncated,
        root=root,
    )


def _requests_excerpt(path: Path) -> tuple[tuple[str, ...], bool]:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_EXCERPT_BYTES + 1)
    except OSError:
        return (), False
    lines = data[:MAX_EXCERPT_BYTES].decode("utf-8", "replace").splitlines()
    truncated = len(data) > MAX_EXCERPT_BYTES or len(lines) > MAX_EXCERPT_LINES
    return tuple(lines[:MAX_EXCERPT_LINES]), truncated


def evidence_file(root: Path, manifest_names: set[str], name: str) -> Path | None:
    """A file of the bundle by its manifest name; nothing outside the manifest is ever served."""
    if name != MANIFEST and name not in manifest_names:
        return None
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        return None
    return path
