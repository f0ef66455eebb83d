"""Plain HTTP GETs of evidence from the model's side (the policy's requestsUrl and snapshotUrl).

A body stays in memory up to ``SPOOL_OVER`` bytes; a larger one (a model server's state dump) is
streamed chunk by chunk to a temporary file, whose ``Path`` is returned instead of the bytes. The
caller owns that file and deletes it (``rollbackbot.forensics`` does once the bundle is written).
The file lives in the temporary directory (``TMPDIR``, ``/tmp`` in the shipped Deployment).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO

import httpx
from pydantic import SecretStr

from rollbackbot.errors import PermanentError, TransientError
from rollbackbot.redact import redact_url

FETCH_TIMEOUT_SECONDS = 10.0
SPOOL_OVER = 1 << 20  # bytes kept in memory before the body goes to a temporary file


class _Body:
    """At most ``cap`` bytes, in memory while small and in a temporary file beyond ``spool_over``."""

    def __init__(self, cap: int, spool_over: int) -> None:
        self.cap = cap
        self.spool_over = spool_over
        self.memory = bytearray()
        self.file: IO[bytes] | None = None
        self.path: Path | None = None
        self.size = 0
        self.truncated = False

    def add(self, chunk: bytes) -> bool:
        """Keep what fits under the cap; False once the cap is reached (stop reading)."""
        room = self.cap - self.size
        if len(chunk) > room:
            chunk, self.truncated = chunk[:room], True
        self.size += len(chunk)
        if self.file is None and len(self.memory) + len(chunk) > self.spool_over:
            self._spool()
        if self.file is not None:
            self.file.write(chunk)
        else:
            self.memory += chunk
        return not self.truncated

    def _spool(self) -> None:
        fd, name = tempfile.mkstemp(prefix="rollbackbot-evidence-")
        self.path = Path(name)
        self.file = os.fdopen(fd, "wb")
        self.file.write(self.memory)
        self.memory = bytearray()

    def result(self) -> bytes | Path:
        if self.file is not None and self.path is not None:
            self.file.close()
            return self.path
        return bytes(self.memory)

    def discard(self) -> None:
        if self.file is not None and self.path is not None:
            self.file.close()
            self.path.unlink(missing_ok=True)


async def fetch_capped(
    url: str,
    cap: int,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    spool_over: int = SPOOL_OVER,
    token: SecretStr | None = None,
) -> tuple[bytes | Path, bool]:
    """GET ``url``, keeping at most ``cap`` bytes; returns (body or the file holding it, truncated).

    ``token`` (``ROLLBACKBOT_FORENSICS_TOKEN``) goes out as ``Authorization: Bearer``: the observer's
    ``/forensics/requests`` answers 404 to anyone without it. Redirects are not followed, so the
    token never reaches a host the policy did not name.
    """
    body = _Body(cap, spool_over)
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    try:
        async with httpx.AsyncClient(
            timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False, transport=transport, headers=headers
        ) as client:
            async with client.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise PermanentError(f"GET {redact_url(url)} answered {response.status_code}")
                async for chunk in response.aiter_bytes():
                    if not body.add(chunk):
                        break
        return body.result(), body.truncated
    except httpx.HTTPError as exc:
        body.discard()
        raise TransientError(f"GET {redact_url(url)} failed: {type(exc).__name__}") from None
    except BaseException:  # cancelled by the capture budget, or an error answer: leave no file behind
        body.discard()
        raise
