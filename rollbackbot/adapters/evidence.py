"""Forensic bundles (DESIGN §9): files written once under ``<incident-id>/`` with a sha256 manifest."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from urllib.parse import urlparse

from rollbackbot.errors import ConfigError, PermanentError


def _manifest(files: dict[str, bytes]) -> bytes:
    entries = {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in files.items()}
    return json.dumps({"files": entries}, indent=2, sort_keys=True).encode()


class FileEvidenceSink:
    """Bundles in a local directory (``file://DIR``); a bundle is never overwritten."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, incident_id: str, files: dict[str, bytes]) -> str:
        """Write the bundle with its manifest; return its URL."""
        bundle = self.root / incident_id
        url = bundle.resolve().as_uri()
        if (bundle / "manifest.json").exists():
            return url  # already captured before a restart: write-once
        bundle.mkdir(parents=True, exist_ok=True)
        for name, data in {**files, "manifest.json": _manifest(files)}.items():
            path = (bundle / name).resolve()
            if bundle.resolve() not in path.parents:
                raise PermanentError(f"evidence file name escapes the bundle: {name!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            path.chmod(0o444)
        return url


def evidence_sink_for(url: str) -> FileEvidenceSink:
    """The sink for ROLLBACKBOT_EVIDENCE_URL."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileEvidenceSink(Path(parsed.netloc + parsed.path))
    raise ConfigError(f"ROLLBACKBOT_EVIDENCE_URL: unsupported scheme {parsed.scheme!r} (file:// is supported)")
