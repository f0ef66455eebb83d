"""A real GitOps repository sandbox: bare remote, ssh-signed release tags, a human's clone.

Used by the tests, ``rollbackbot demo``, the end-to-end test and the benchmark. Release
history is written with one ``git fast-import`` and the tags are signed in one ``ssh-keygen``
call, so thousands of releases build in seconds; the result is what ``git tag -s`` produces
and ``git verify-tag`` accepts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BASE_TIME = 1_793_491_200  # 2026-11-01T00:00:00Z: fixed dates make release commit ids repeatable
RELEASE_TAGGER = "Release Pipeline <release@example.com>"
PRINCIPAL = "rollbackbot-release"
_ISOLATED_ENV = {
    # The sandbox must not depend on the caller's git config (signing, hooks, default branch).
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "Release Pipeline",
    "GIT_AUTHOR_EMAIL": "release@example.com",
    "GIT_COMMITTER_NAME": "Release Pipeline",
    "GIT_COMMITTER_EMAIL": "release@example.com",
}


def run_git(args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, stdin: bytes | None = None) -> str:
    """Run git (list form, no shell) with an isolated config; stdout, or CalledProcessError."""
    full_env = {**os.environ, **_ISOLATED_ENV, **(env or {})}
    done = subprocess.run(["git", *args], cwd=cwd, env=full_env, input=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, ["git", *args], done.stdout, done.stderr)
    return done.stdout.decode()


def _hex(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


@dataclass
class Release:
    """One release of an app: a commit to its paths and an annotated tag ``<app>/v<version>``."""

    version: str  # "2.1.0"
    signed: bool = True
    wrong_key: bool = False  # signed by a key NOT in allowed_signers
    trailers: dict[str, str] | None = None  # None: Model-Digest and Data-Version, deterministic
    image: str | None = None  # None: registry.example/<app>@sha256:<deterministic hex>
    health: str = "Healthy"  # annotation rollbackbot.dev/simulated-health on the Deployment
    feature_config: dict[str, str] | None = None  # file name -> content in apps/<app>-features/


@dataclass
class AppSpec:
    """An app and its releases, oldest first (list order is commit order, not semver order)."""

    name: str
    releases: list[Release]
    with_features: bool = False  # adds apps/<name>-features, restored together with apps/<name>


def default_trailers(app: str, release: Release, index: int) -> dict[str, str]:
    """The tag trailers a release gets when it does not set its own."""
    return {
        "Model-Digest": "sha256:" + _hex("model", app, release.version),
        "Data-Version": f"ds-2026-11-{index % 28 + 1:02d}-{index + 1}",
    }


def release_files(app: AppSpec, release: Release, index: int) -> dict[str, str]:
    """Every file of the app's paths at this release (path -> content)."""
    image = release.image or f"registry.example/{app.name}@sha256:" + _hex("image", app.name, release.version)
    trailers = default_trailers(app.name, release, index) | (release.trailers or {})
    files = {
        f"apps/{app.name}/deployment.yaml": _DEPLOYMENT.format(app=app.name, image=image, health=release.health),
        f"apps/{app.name}/model.yaml": _MODEL.format(
            app=app.name,
            version=release.version,
            digest=trailers.get("Model-Digest", ""),
            data=trailers.get("Data-Version", ""),
        ),
    }
    if app.with_features:
        config = release.feature_config
        if config is None:
            config = {"config.yaml": _FEATURES.format(app=app.name, version=release.version, index=index)}
        files.update({f"apps/{app.name}-features/{name}": text for name, text in config.items()})
    return files


_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}
  annotations:
    rollbackbot.dev/simulated-health: {health}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {app}
  template:
    metadata:
      labels:
        app: {app}
    spec:
      containers:
        - name: model
          image: {image}
"""
_MODEL = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {app}-model
data:
  MODEL_VERSION: "{version}"
  MODEL_DIGEST: "{digest}"
  DATA_VERSION: "{data}"
"""
_FEATURES = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {app}-features
data:
  release: "{version}"
  threshold: "0.{index:02d}"
"""
_README = "# GitOps repository (rollbackbot sandbox)\n"
_PLATFORM = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ml-prod\n"


@dataclass
class GitOpsSandbox:
    """A built sandbox: ``remote_path`` is the bare repo, ``work`` a clone for human commits."""

    root: Path
    branch: str = "main"
    tags: dict[str, str] = field(default_factory=dict)  # tag name -> release commit, as built

    @property
    def remote_path(self) -> Path:
        """The bare repository: the GitOps remote."""
        return self.root / "remote.git"

    @property
    def remote_url(self) -> str:
        """``file://`` URL of the remote."""
        return self.remote_path.resolve().as_uri()

    @property
    def work(self) -> Path:
        """A non-bare clone humans commit from."""
        return self.root / "work"

    @property
    def allowed_signers(self) -> Path:
        """The ssh allowed-signers file trusting ``signing_key`` only."""
        return self.root / "keys" / "allowed_signers"

    @property
    def signing_key(self) -> Path:
        """Private key that signs release tags."""
        return self.root / "keys" / "release_ed25519"

    @property
    def wrong_key(self) -> Path:
        """A key NOT in ``allowed_signers`` (for ``Release(wrong_key=True)``)."""
        return self.root / "keys" / "stranger_ed25519"

    def git(self, *args: str) -> str:
        """Run git in the bare remote."""
        return run_git(args, self.remote_path)

    def head(self) -> str:
        """The deploy branch head on the remote."""
        return self.git("rev-parse", f"refs/heads/{self.branch}").strip()

    def tag_names(self) -> list[str]:
        """Tag names on the remote, sorted."""
        return sorted(self.git("for-each-ref", "--format=%(refname:strip=2)", "refs/tags").split())

    def show(self, rev: str, path: str) -> str:
        """A file's content at ``rev`` on the remote."""
        return self.git("cat-file", "blob", f"{rev}:{path}")

    def tree_id(self, rev: str, path: str) -> str | None:
        """The object id at ``rev:path`` on the remote, None if absent."""
        try:
            return self.git("rev-parse", "--verify", "-q", f"{rev}:{path}").strip()
        except subprocess.CalledProcessError:
            return None

    def log_messages(self, n: int) -> list[str]:
        """The last ``n`` commit messages of the deploy branch, newest first."""
        out = self.git("log", f"-n{n}", "--format=%B%x00", f"refs/heads/{self.branch}")
        return [m.strip("\n") for m in out.split("\x00") if m.strip()]

    def commit_paths(
        self,
        changes: Mapping[str, str | None],
        message: str,
        author: str = "Human Operator <human@example.com>",
        branch: str | None = None,
    ) -> str:
        """Write (or delete, for None) files as a human would, commit on the deploy branch head and push.

        With ``branch`` the commit is pushed there instead (a side branch that never merges).
        Returns the new commit.
        """
        name, _, email = author.partition(" <")
        ident = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email.rstrip(">")}
        ident |= {"GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email.rstrip(">")}
        run_git(["fetch", "-q", "origin", self.branch], self.work)
        run_git(["reset", "-q", "--hard", "FETCH_HEAD"], self.work)
        for path, content in changes.items():
            target = self.work / path
            if content is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
        run_git(["add", "-A", "--", *changes], self.work)
        run_git(["commit", "-q", "-m", message], self.work, env=ident)
        force = ["--force"] if branch else []  # a side branch is the tester's own; the deploy branch never
        run_git(["push", "-q", *force, "origin", f"HEAD:refs/heads/{branch or self.branch}"], self.work)
        return run_git(["rev-parse", "HEAD"], self.work).strip()

    def sign_tag(self, name: str, commit: str, trailers: Mapping[str, str], wrong_key: bool = False) -> str:
        """Create a signed annotated release tag on the remote with ``git tag -s``; its tag object id."""
        key = self.wrong_key if wrong_key else self.signing_key
        lines = "".join(f"{k}: {v}\n" for k, v in trailers.items())
        message = f"{name}\n\n{lines}"
        config = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}"]
        run_git([*config, "tag", "-s", "-F", "-", name, commit], self.remote_path, stdin=message.encode())
        return self.git("rev-parse", f"refs/tags/{name}").strip()

    def republish_tag(self, old: str, new: str) -> None:
        """Point ``refs/tags/<new>`` at the signed tag object of ``old``: no signing key needed."""
        self.git("update-ref", f"refs/tags/{new}", self.git("rev-parse", f"refs/tags/{old}").strip())

    def tamper_tag(self, name: str, old: str, new: str) -> str:
        """Rewrite tag ``name`` on the remote with ``old`` replaced in its message, keeping the signature."""
        raw = self.git("cat-file", "tag", name)
        if old not in raw:
            raise ValueError(f"{old!r} not in tag {name}")
        oid = run_git(
            ["hash-object", "-t", "tag", "-w", "--stdin"], self.remote_path, stdin=raw.replace(old, new).encode()
        )
        self.git("update-ref", f"refs/tags/{name}", oid.strip())
        return oid.strip()


def _data(text: str) -> bytes:
    raw = text.encode()
    return b"data %d\n%s\n" % (len(raw), raw)


class _History:
    """A fast-import stream for the deploy branch: one commit per release, in list order."""

    def __init__(self, branch: str) -> None:
        self.branch = branch
        self.stream = bytearray()
        self.marks = 0

    def commit(self, message: str, files: Mapping[str, str], deleted_dirs: Sequence[str] = ()) -> int:
        self.marks += 1
        stamp = f"{BASE_TIME + 60 * self.marks} +0000"
        self.stream += f"commit refs/heads/{self.branch}\nmark :{self.marks}\n".encode()
        self.stream += f"committer {RELEASE_TAGGER} {stamp}\n".encode() + _data(message)
        if self.marks > 1:
            self.stream += f"from :{self.marks - 1}\n".encode()
        # Deleting the app directories first makes each release's paths exactly its file set.
        self.stream += b"".join(f"D {path}\n".encode() for path in deleted_dirs)
        for path, content in files.items():
            self.stream += f"M 100644 inline {path}\n".encode() + _data(content)
        self.stream += b"\n"
        return self.marks


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def _sign_all(key: Path, files: Sequence[Path]) -> None:
    # One ssh-keygen signs many files (writing <file>.sig each); a process per tag would dominate,
    # and one process per CPU splits the ~1 ms per signature of big benchmark histories.
    workers = max(1, min(os.cpu_count() or 1, len(files) // 200 + 1))
    procs = [
        subprocess.Popen(
            ["ssh-keygen", "-q", "-Y", "sign", "-n", "git", "-f", str(key), *map(str, files[i::workers])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(workers)
        if files[i::workers]
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, stderr=err)


def build_sandbox(root: Path, apps: list[AppSpec], branch: str = "main") -> GitOpsSandbox:
    """Build a bare GitOps remote with every app's releases tagged, plus a working clone."""
    sandbox = GitOpsSandbox(root=root, branch=branch)
    keys = sandbox.signing_key.parent
    keys.mkdir(parents=True, exist_ok=True)
    _keygen(sandbox.signing_key, PRINCIPAL)
    _keygen(sandbox.wrong_key, "stranger")
    public = sandbox.signing_key.with_suffix(".pub").read_text().strip()
    sandbox.allowed_signers.write_text(f'{PRINCIPAL} namespaces="git" {public}\n')

    run_git(["init", "-q", "--bare", f"--initial-branch={branch}", str(sandbox.remote_path)], root)
    history = _History(branch)
    history.commit("Initial layout", {"README.md": _README, "platform/namespace.yaml": _PLATFORM})
    releases: list[tuple[str, int, str]] = []  # tag name, commit mark, tag message
    for index in range(max((len(app.releases) for app in apps), default=0)):
        for app in apps:
            if index >= len(app.releases):
                continue
            release = app.releases[index]
            dirs = [f"apps/{app.name}"] + ([f"apps/{app.name}-features"] if app.with_features else [])
            mark = history.commit(f"release({app.name}): {release.version}", release_files(app, release, index), dirs)
            trailers = release.trailers if release.trailers is not None else default_trailers(app.name, release, index)
            lines = "".join(f"{key}: {value}\n" for key, value in trailers.items())
            releases.append((f"{app.name}/v{release.version}", mark, f"{app.name} {release.version}\n\n{lines}"))
    marks_file = root / "marks"
    run_git(
        ["fast-import", "--quiet", f"--export-marks={marks_file}"], sandbox.remote_path, stdin=bytes(history.stream)
    )
    commits = dict(line.split() for line in marks_file.read_text().splitlines())
    _write_tags(sandbox, apps, releases, commits)
    run_git(["clone", "-q", "--no-tags", str(sandbox.remote_path), str(sandbox.work)], root)
    marks_file.unlink()
    return sandbox


def _write_tags(
    sandbox: GitOpsSandbox, apps: list[AppSpec], releases: list[tuple[str, int, str]], commits: dict[str, str]
) -> None:
    by_name = {f"{app.name}/v{r.version}": r for app in apps for r in app.releases}
    staging = sandbox.root / "tag-objects"
    staging.mkdir(exist_ok=True)
    files: list[Path] = []
    for number, (name, mark, message) in enumerate(releases):
        stamp = f"{BASE_TIME + 60 * mark + 30} +0000"
        payload = f"object {commits[f':{mark}']}\ntype commit\ntag {name}\ntagger {RELEASE_TAGGER} {stamp}\n\n"
        files.append(staging / f"{number}.tag")
        files[-1].write_text(payload + message)
    signed = [(f, by_name[n].wrong_key) for f, (n, _, _) in zip(files, releases, strict=True) if by_name[n].signed]
    _sign_all(sandbox.signing_key, [f for f, wrong in signed if not wrong])
    _sign_all(sandbox.wrong_key, [f for f, wrong in signed if wrong])
    objects: list[bytes] = []
    for path in files:
        signature = path.with_suffix(".tag.sig")
        # A signed tag object is the payload followed by the armored signature, as `git tag -s` writes it.
        objects.append(path.read_bytes() + (signature.read_bytes() if signature.exists() else b""))
    oids = _store_tag_objects(sandbox.remote_path, objects)
    sandbox.tags = {name: commits[f":{mark}"] for name, mark, _ in releases}
    _write_packed_tags(
        sandbox.remote_path, {n: (oid, sandbox.tags[n]) for (n, _, _), oid in zip(releases, oids, strict=True)}
    )
    shutil.rmtree(staging)


def _store_tag_objects(git_dir: Path, objects: Sequence[bytes]) -> list[str]:
    """Write tag objects as ONE pack via index-pack: thousands of loose objects take seconds."""
    pack = bytearray(b"PACK" + struct.pack(">II", 2, len(objects)))
    oids = []
    for content in objects:
        oids.append(hashlib.sha1(b"tag %d\x00" % len(content) + content).hexdigest())  # noqa: S324 - git's object id
        size = len(content)
        header = bytearray([0x40 | (size & 0x0F)])  # object type 4 = tag
        size >>= 4
        while size:
            header[-1] |= 0x80
            header.append(size & 0x7F)
            size >>= 7
        pack += header + zlib.compress(content)
    pack += hashlib.sha1(pack).digest()  # noqa: S324 - the pack trailer is defined as SHA-1
    run_git(["index-pack", "--stdin"], git_dir, stdin=bytes(pack))
    return oids


def _write_packed_tags(git_dir: Path, tags: Mapping[str, tuple[str, str]]) -> None:
    """Tag refs in ``packed-refs`` (with peeled ids), as ``git pack-refs`` leaves a server repository."""
    lines = ["# pack-refs with: peeled fully-peeled sorted \n"]
    for name in sorted(tags, key=lambda n: f"refs/tags/{n}".encode()):
        oid, commit = tags[name]
        lines.append(f"{oid} refs/tags/{name}\n^{commit}\n")
    (git_dir / "packed-refs").write_text("".join(lines))
