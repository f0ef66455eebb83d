"""The synthetic GitOps repository: 200 apps x 25 ssh-signed releases, ~10,000 commits, cached.

Release history comes from ``rollbackbot.testing.gitops.build_sandbox`` (one commit and one
signed tag per release); about 5,000 ordinary commits touching other paths (platform config,
docs) follow, as in a busy GitOps repository, so history walks and pushes see ~10,000 commits.
The build is cached under ``bench/cache/`` keyed by ``CACHE_VERSION``; each run works on a fresh
copy because rollbacks change the remote.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rollbackbot.testing.gitops import BASE_TIME, AppSpec, Release, build_sandbox, run_git

APPS = 200
RELEASES = 25
EXTRA_COMMITS = 5_000
BRANCH = "main"
CACHE_VERSION = f"gitops-v1-{APPS}x{RELEASES}-{EXTRA_COMMITS}"
CACHE_DIR = Path(__file__).resolve().parent / "cache"


@dataclass(frozen=True)
class SyntheticRepo:
    """A built repository: bare remote plus the allowed-signers file that trusts its tags."""

    root: Path
    build_seconds: float | None  # None when it came from the cache

    @property
    def remote(self) -> Path:
        return self.root / "remote.git"

    @property
    def allowed_signers(self) -> Path:
        return self.root / "keys" / "allowed_signers"


def app_name(index: int) -> str:
    """The name of app ``index`` (0-based): model-000 ... model-199."""
    return f"model-{index:03d}"


def _apps() -> list[AppSpec]:
    return [AppSpec(app_name(i), [Release(f"1.{n}.0") for n in range(RELEASES)]) for i in range(APPS)]


def _extra_history(count: int) -> bytes:
    """A fast-import stream of ``count`` non-release commits on top of the branch head."""
    stream = bytearray()
    for n in range(count):
        stamp = f"{BASE_TIME + 86_400 * 30 + 60 * n} +0000"
        message = f"platform: tune shared config ({n})\n".encode()
        content = f"# change {n}\nreplicas: {n % 7 + 1}\n".encode()
        stream += f"commit refs/heads/{BRANCH}\n".encode()
        stream += f"committer Platform Team <platform@example.com> {stamp}\n".encode()
        stream += b"data %d\n%s\n" % (len(message), message)
        if n == 0:
            stream += f"from refs/heads/{BRANCH}^0\n".encode()
        path = f"platform/shared/config-{n % 50:02d}.yaml" if n % 5 else f"docs/changes/{n // 5 % 100:03d}.md"
        stream += f"M 100644 inline {path}\n".encode() + b"data %d\n%s\n\n" % (len(content), content)
    return bytes(stream)


def _build(root: Path) -> None:
    sandbox = build_sandbox(root, _apps(), branch=BRANCH)
    run_git(["fast-import", "--quiet"], sandbox.remote_path, stdin=_extra_history(EXTRA_COMMITS))
    # A server repository is packed: one pack, packed refs.
    run_git(["repack", "-a", "-d", "-q"], sandbox.remote_path)
    run_git(["pack-refs", "--all"], sandbox.remote_path)
    shutil.rmtree(sandbox.work)  # the human's clone is not needed


def ensure_repo(cache_dir: Path = CACHE_DIR) -> SyntheticRepo:
    """The cached repository, built first when missing (into a temp dir, then renamed)."""
    root = cache_dir / CACHE_VERSION
    if (root / "remote.git" / "packed-refs").is_file():
        return SyntheticRepo(root, None)
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=f"{CACHE_VERSION}.", dir=cache_dir))
    try:
        _build(staging)
        shutil.rmtree(root, ignore_errors=True)
        staging.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return SyntheticRepo(root, time.monotonic() - started)


def fresh_copy(repo: SyntheticRepo, dest: Path) -> Path:
    """A private copy of the bare remote at ``dest`` (rollbacks push to it)."""
    shutil.copytree(repo.remote, dest, symlinks=True)
    return dest


def counts(remote: Path) -> tuple[int, int]:
    """(commits on the branch, tags) of a bare repository."""
    commits = int(run_git(["rev-list", "--count", f"refs/heads/{BRANCH}"], remote))
    tags = len(run_git(["for-each-ref", "--format=%(refname)", "refs/tags"], remote).splitlines())
    return commits, tags


def platform_commit(remote: Path, number: int) -> str:
    """A platform-team commit on the branch of the bare ``remote`` (not a release, not a rollback)."""
    with tempfile.TemporaryDirectory(prefix="bench-index-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        head = run_git(["rev-parse", f"refs/heads/{BRANCH}"], remote).strip()
        run_git(["read-tree", head], remote, env=env)
        blob = run_git(["hash-object", "-w", "--stdin"], remote, stdin=f"change: {number}\n".encode()).strip()
        entry = f"100644,{blob},platform/shared/hotfix.yaml"
        run_git(["update-index", "--add", "--cacheinfo", entry], remote, env=env)
        tree = run_git(["write-tree"], remote, env=env).strip()
    message = f"platform: hotfix {number}"
    commit = run_git(["commit-tree", tree, "-p", head, "-m", message], remote).strip()
    run_git(["update-ref", f"refs/heads/{BRANCH}", commit, head], remote)
    return commit
