"""Forensic bundles (docs/evidence.md): files written once under ``<incident-id>/`` with a sha256 manifest.

``file://DIR`` writes read-only files locally; ``s3://bucket/prefix`` writes objects with SHA-256
checksums and, where the bucket has Object Lock, a retention period so nobody can delete them.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rollbackbot.errors import ConfigError, PermanentError, TransientError

MANIFEST = "manifest.json"
OBJECT_LOCK_RETENTION = timedelta(days=90)


def manifest(files: dict[str, bytes]) -> bytes:
    """The manifest: sha256 and size of every file in the bundle."""
    entries = {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in files.items()}
    return json.dumps({"files": entries}, indent=2, sort_keys=True).encode()


def _safe_name(name: str) -> str:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise PermanentError(f"evidence file name escapes the bundle: {name!r}")
    return name


class FileEvidenceSink:
    """Bundles in a local directory (``file://DIR``); a bundle is never overwritten."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, incident_id: str, files: dict[str, bytes]) -> str:
        """Write the bundle with its manifest; return its URL."""
        bundle = self.root / _safe_name(incident_id)
        url = bundle.resolve().as_uri()
        if (bundle / MANIFEST).exists():
            return url  # already captured before a restart: write-once
        for name, data in {**files, MANIFEST: manifest(files)}.items():
            path = bundle / _safe_name(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                continue  # written by an attempt that died before the manifest; never rewrite
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            path.chmod(0o444)
        return url


class S3EvidenceSink:
    """Bundles in S3 (``s3://bucket/prefix``); boto3 finds credentials and endpoint the usual way."""

    def __init__(self, bucket: str, prefix: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client
        self._locked: bool | None = None

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

    def write(self, incident_id: str, files: dict[str, bytes]) -> str:
        """Upload the bundle write-once (manifest last); return its URL."""
        from botocore.exceptions import BotoCoreError, ClientError

        url = f"s3://{self.bucket}/{self._key(incident_id, MANIFEST).rsplit('/', 1)[0]}/"
        try:
            if self._exists(self._key(incident_id, MANIFEST)):
                return url
            for name, data in {**files, MANIFEST: manifest(files)}.items():
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(incident_id, name),
                    Body=data,
                    ChecksumAlgorithm="SHA256",
                    **self._lock_arguments(),
                )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise PermanentError(f"evidence upload to s3://{self.bucket} refused: {code}") from None
        except BotoCoreError as exc:
            raise TransientError(f"evidence upload to s3://{self.bucket} failed: {type(exc).__name__}") from None
        return url

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def _lock_arguments(self) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        if self._locked is None:
            try:
                config = self.client.get_object_lock_configuration(Bucket=self.bucket)
                self._locked = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            except ClientError:
                self._locked = False
        if not self._locked:
            return {}
        until = datetime.now(UTC) + OBJECT_LOCK_RETENTION
        return {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": until}


def evidence_sink_for(url: str) -> FileEvidenceSink | S3EvidenceSink:
    """The sink for ROLLBACKBOT_EVIDENCE_URL."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileEvidenceSink(Path(parsed.netloc + parsed.path))
    if parsed.scheme == "s3" and parsed.netloc:
        return S3EvidenceSink(parsed.netloc, parsed.path)
    raise ConfigError(
        f"ROLLBACKBOT_EVIDENCE_URL: unsupported {url.split(':', 1)[0]!r} (use file://DIR or s3://bucket/prefix)"
    )
