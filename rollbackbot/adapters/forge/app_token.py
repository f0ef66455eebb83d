"""GitHub App authentication: installation tokens minted from the App's private key, renewed before they expire.

A GitHub App proves itself with a JWT (RS256, ``iss`` = the App id, valid at most 10 minutes) and exchanges it
at ``POST /app/installations/{installation_id}/access_tokens`` for an installation token valid one hour.
``InstallationTokens`` is an ``httpx.Auth``: every forge request carries the current token; the token is
renewed 5 minutes before its ``expires_at``, and once more when the forge answers 401 (revoked early). The
key, the JWT and the tokens never appear in a log line or an error.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncGenerator, Callable
from datetime import datetime

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import SecretStr

from rollbackbot.errors import ConfigError, PermanentError, TransientError

RENEW_BEFORE = 300.0  # seconds before expires_at
JWT_LIFETIME = 540  # GitHub accepts at most 600 s; iat is back-dated 60 s for clock drift
API_VERSION = "2022-11-28"


def load_private_key(pem: SecretStr) -> rsa.RSAPrivateKey:
    """The App's RSA private key from PEM; ConfigError (never the key's content) when it is not one."""
    try:
        key = serialization.load_pem_private_key(pem.get_secret_value().encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError("ROLLBACKBOT_FORGE_APP_PRIVATE_KEY_FILE: not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("ROLLBACKBOT_FORGE_APP_PRIVATE_KEY_FILE: a GitHub App key is RSA; this one is not")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def app_jwt(app_id: str, key: rsa.RSAPrivateKey, now: float) -> str:
    """The App's JWT (RS256) as GitHub asks for it: ``iat`` 60 s back, ``exp`` under 10 minutes, ``iss``."""
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"iat": int(now) - 60, "exp": int(now) + JWT_LIFETIME, "iss": app_id}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64(signature)}"


class InstallationTokens(httpx.Auth):
    """The installation token of one GitHub App installation, as request auth for the forge client."""

    def __init__(
        self,
        api_url: str,
        app_id: str,
        installation_id: str,
        private_key: SecretStr,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = app_id
        self.installation_id = installation_id
        self._key = load_private_key(private_key)
        self._url = f"{api_url.rstrip('/')}/app/installations/{installation_id}/access_tokens"
        self._transport = transport
        self._clock = clock
        self._token: SecretStr | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.minted = 0  # how many tokens were minted (tests, status)

    def __repr__(self) -> str:
        return f"InstallationTokens(app_id={self.app_id!r}, installation_id={self.installation_id!r})"

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self.token()}"
        response = yield request
        if response.status_code == 401:  # revoked or expired early: one fresh token, one more try
            request.headers["Authorization"] = f"Bearer {await self.token(renew=True)}"
            yield request

    async def token(self, *, renew: bool = False) -> str:
        """The current installation token, minted when there is none, it expires soon, or ``renew``."""
        async with self._lock:
            if renew or self._token is None or self._clock() >= self._expires_at - RENEW_BEFORE:
                self._token, self._expires_at = await self._mint()
                self.minted += 1
            return self._token.get_secret_value()

    async def _mint(self) -> tuple[SecretStr, float]:
        headers = {
            "Authorization": f"Bearer {app_jwt(self.app_id, self._key, self._clock())}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "rollbackbot",
        }
        try:
            async with httpx.AsyncClient(transport=self._transport, timeout=10.0) as client:
                answer = await client.post(self._url, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientError(f"github app: minting an installation token: {type(exc).__name__}") from None
        if answer.status_code >= 500 or answer.status_code == 429:
            raise TransientError(f"github app: minting an installation token: HTTP {answer.status_code}")
        if answer.status_code != 201:
            raise PermanentError(
                f"github app {self.app_id}: installation {self.installation_id} refused an installation token:"
                f" HTTP {answer.status_code} (check the App id, the installation id and the private key)"
            )
        body = answer.json()
        expires = datetime.fromisoformat(str(body["expires_at"]).replace("Z", "+00:00")).timestamp()
        return SecretStr(str(body["token"])), expires
