"""Forensic bundles (docs/evidence.md): files under ``<incident-id>/`` sealed by a sha256 manifest.

``file://DIR`` writes read-only files locally; ``s3://bucket/prefix`` writes objects with SHA-256
checksums and, where the bucket has Object Lock, a retention period so nobody can delete them.

The manifest (``manifest.json``, written last) always describes what is stored:

- A bundle is sealed once its manifest exists; a later capture for the same incident changes nothing.
- Before that, a capture resumed after a crash rewrites every file it has (each one through a
  temporary name and a rename, so no reader ever sees half a file), and the file sink hashes the
  manifest from the files on disk, so a file only the earlier attempt wrote is listed as it is.
- File contents are ``bytes`` or the ``Path`` of a file holding them (a large snapshot spooled to
  disk), copied and hashed in chunks, never read whole into memory.

S3 Object Lock (``ROLLBACKBOT_EVIDENCE_OBJECT_LOCK_MODE``): ``GOVERNANCE`` (default) or ``COMPLIANCE``,
for ``OBJECT_LOCK_RETENTION``. GOVERNANCE protects against mistakes, not against an administrator:
principals with ``s3:BypassGovernanceRetention`` can shorten the retention or delete the objects.
COMPLIANCE binds everyone, the root user included, until the retention ends. Whether the bucket
has Object Lock is asked once (``GetObjectLockConfiguration``); a role not allowed to ask tries
with the lock first and writes without it when the bucket has no Object Lock. A role that may
write but not read (403 on ``HeadObject``) cannot tell whether the bundle is sealed: it writes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlparse

from rollbackbot.errors import ConfigError, PermanentError, TransientError

MANIFEST = "manifest.json"
PROBE_PREFIX = ".readiness-probe-"  # written and removed by the readiness check; never a bundle
OBJECT_LOCK_RETENTION = timedelta(days=90)
CHUNK = 1 << 20
TEMP_PREFIX = ".tmp-"  # a file being written; never part of a bundle
LockMode = Literal["GOVERNANCE", "COMPLIANCE"]
Content = bytes | Path  # a file's bytes, or a file holding them
_DENIED = ("403", "AccessDenied", "Forbidden")
_NOT_FOUND = ("404", "NoSuchKey", "NotFound")


@contextmanager
def _reader(content: Content) -> Iterator[IO[bytes]]:
    if isinstance(content, Path):
        with content.open("rb") as stream:
            yield stream
    else:
        import io

        yield io.BytesIO(content)


def _digest(content: Content) -> dict[str, Any]:
    """sha256 and size, read in chunks."""
    sha, size = hashlib.sha256(), 0
    with _reader(content) as stream:
        while chunk := stream.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return {"sha256": sha.hexdigest(), "bytes": size}


def _manifest_of(entries: Mapping[str, dict[str, Any]]) -> bytes:
    return json.dumps({"files": dict(entries)}, indent=2, sort_keys=True).encode()


def manifest(files: Mapping[str, Content]) -> bytes:
    """The manifest: sha256 and size of every file in the bundle."""
    return _manifest_of({name: _digest(content) for name, content in files.items()})


def _safe_name(name: str) -> str:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise PermanentError(f"evidence file name escapes the bundle: {name!r}")
    if any(p.startswith(TEMP_PREFIX) for p in parts):
        raise PermanentError(f"evidence file name is reserved for temporary files: {name!r}")
    return name


def _bundle_names(files: Mapping[str, Content]) -> list[str]:
    names = [_safe_name(name) for name in files]
    if MANIFEST in names:
        raise PermanentError(f"{MANIFEST} is written by the sink, not given to it")
    return names


def _write_atomically(path: Path, content: Content, *, sync_directory: bool = True) -> None:
    """Write to a temporary name beside ``path``, flush to disk, then rename over it (read-only).

    The rename is durable once the directory is flushed too: here, or by the caller, once for many
    files (``sync_directory=False``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, _reader(content) as source:
            while chunk := source.read(CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(0o444)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_directory:
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileEvidenceSink:
    """Bundles in a local directory (``file://DIR``); a sealed bundle is never overwritten."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, incident_id: str, files: Mapping[str, Content]) -> str:
        """Write the bundle, then its manifest of what is on disk; return its URL."""
        bundle = self.root / _safe_name(incident_id)
        url = bundle.resolve().as_uri()
        if (bundle / MANIFEST).exists():
            return url  # sealed by an earlier capture (before a restart): write-once
        written = [(bundle / safe, files[name]) for name, safe in zip(files, _bundle_names(files), strict=True)]
        for path, content in written:
            _write_atomically(path, content, sync_directory=False)
        # Every rename durable before the manifest seals the bundle: each directory flushed once.
        directories = {parent for path, _ in written for parent in path.relative_to(bundle).parents}
        for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
            _fsync_dir(bundle / directory)
        _fsync_dir(bundle.parent)  # the bundle directory itself
        _write_atomically(bundle / MANIFEST, _manifest_of(self._stored(bundle)))
        return url

    def probe(self) -> None:
        """Prove the directory is writable now: write a small file and remove it (readiness check)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=PROBE_PREFIX) as handle:
                handle.write(b"rollbackbot readiness probe\n")
                handle.flush()
        except OSError as exc:
            raise PermanentError(f"evidence directory {self.root} is not writable: {exc.strerror or exc}") from None

    @staticmethod
    def _stored(bundle: Path) -> dict[str, dict[str, Any]]:
        """Digest of every file in the bundle directory, as it is on disk now."""
        entries = {}
        for path in sorted(bundle.rglob("*")):
            relative = path.relative_to(bundle)
            if not path.is_file() or any(part.startswith(TEMP_PREFIX) for part in relative.parts):
                continue
            if relative.as_posix() != MANIFEST:
                entries[relative.as_posix()] = _digest(path)
        return entries


class S3EvidenceSink:
    """Bundles in S3 (``s3://bucket/prefix``); boto3 finds credentials and endpoint the usual way."""

    def __init__(self, bucket: str, prefix: str, client: Any | None = None, lock_mode: LockMode = "GOVERNANCE") -> None:
        if lock_mode not in ("GOVERNANCE", "COMPLIANCE"):
            raise ConfigError(f"ROLLBACKBOT_EVIDENCE_OBJECT_LOCK_MODE: {lock_mode!r} is not GOVERNANCE or COMPLIANCE")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.lock_mode = lock_mode
        self._client = client
        self._asked = False
        self._locked: bool | None = None  # None: not known (not asked yet, or not allowed to ask)

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"})
            self._client = boto3.client("s3", config=config)
        return self._client

    def _key(self, incident_id: str, name: str) -> str:
        return "/".join(p for p in (self.prefix, _safe_name(incident_id), _safe_name(name)) if p)

    def write(self, incident_id: str, files: Mapping[str, Content]) -> str:
        """Upload the bundle (manifest last) unless it is sealed already; return its URL."""
        from botocore.exceptions import BotoCoreError, ClientError

        url = f"s3://{self.bucket}/{self._key(incident_id, MANIFEST).rsplit('/', 1)[0]}/"
        try:
            if self._exists(self._key(incident_id, MANIFEST)):
                return url
            entries = {}
            for name in _bundle_names(files):
                entries[name] = _digest(files[name])
                self._put(self._key(incident_id, name), files[name])
            self._put(self._key(incident_id, MANIFEST), _manifest_of(entries))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise PermanentError(f"evidence upload to s3://{self.bucket} refused: {code}") from None
        except BotoCoreError as exc:
            raise TransientError(f"evidence upload to s3://{self.bucket} failed: {type(exc).__name__}") from None
        return url

    def probe(self) -> None:
        """Prove the bucket takes writes now: put a small object without a lock, then delete it."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = "/".join(p for p in (self.prefix, f"{PROBE_PREFIX}{os.urandom(6).hex()}") if p)
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"rollbackbot readiness probe\n")
        except ClientError as exc:
            raise PermanentError(f"evidence bucket s3://{self.bucket} refused a write: {_code(exc)}") from None
        except BotoCoreError as exc:
            raise TransientError(f"evidence bucket s3://{self.bucket} not reachable: {type(exc).__name__}") from None
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError):
            pass  # writable is what matters; a lifecycle rule on the prefix expires what is left

    def _put(self, key: str, content: Content) -> None:
        from botocore.exceptions import ClientError

        while True:
            with _reader(content) as body:
                try:
                    self.client.put_object(
                        Bucket=self.bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256", **self._lock_arguments()
                    )
                    if self._locked is None:
                        self._locked = True  # the bucket took the lock without us being allowed to ask
                    return
                except ClientError as exc:
                    if self._locked is not None or _code(exc) != "InvalidRequest":
                        raise
                    self._locked = False  # not allowed to ask, and the bucket has no Object Lock: plain

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return False
            if _code(exc) in _DENIED:
                return False  # a write-only role cannot tell: unknown, so write it
            raise
        return True

    def _lock_arguments(self) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        if not self._asked:
            self._asked = True
            try:
                config = self.client.get_object_lock_configuration(Bucket=self.bucket)
                self._locked = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            except ClientError as exc:
                if _code(exc) not in _DENIED:
                    self._locked = False  # ObjectLockConfigurationNotFoundError: no Object Lock
        if self._locked is False:
            return {}
        until = datetime.now(UTC) + OBJECT_LOCK_RETENTION
        return {"ObjectLockMode": self.lock_mode, "ObjectLockRetainUntilDate": until}


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def evidence_sink_for(url: str, lock_mode: LockMode = "GOVERNANCE") -> FileEvidenceSink | S3EvidenceSink:
    """The sink for ROLLBACKBOT_EVIDENCE_URL (and ROLLBACKBOT_EVIDENCE_OBJECT_LOCK_MODE for S3)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileEvidenceSink(Path(parsed.netloc + parsed.path))
    if parsed.scheme == "s3" and parsed.netloc:
        return S3EvidenceSink(parsed.netloc, parsed.path, lock_mode=lock_mode)
    raise ConfigError(
        f"ROLLBACKBOT_EVIDENCE_URL: unsupported {url.split(':', 1)[0]!r} (use file://DIR or s3://bucket/prefix)"
    )
