"""The fake GitHub's side of GitHub App authentication: App JWTs checked as GitHub does, installation tokens."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from rollbackbot.testing.forge.github_wire import DOCS, Answer, not_found

MAX_LIFETIME = 600  # GitHub: exp at most 10 minutes after iat
SKEW = 60  # an iat this far in the future is still accepted


def app_jwt_claims(apps: Mapping[str, rsa.RSAPublicKey], jwt: str, now: float) -> dict[str, Any] | None:
    """The claims of a valid App JWT: RS256, signed by the App ``iss`` names, current, at most 10 minutes long."""
    try:
        header, payload, signature = (base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) for p in jwt.split("."))
        claims = json.loads(payload)
        key = apps[str(claims["iss"])]
        key.verify(signature, jwt.rsplit(".", 1)[0].encode(), padding.PKCS1v15(), hashes.SHA256())
        issued, expires = int(claims["iat"]), int(claims["exp"])
        algorithm = json.loads(header).get("alg")
    except (ValueError, KeyError, TypeError, InvalidSignature):
        return None
    if algorithm != "RS256" or issued > now + SKEW or expires <= now or expires - issued > MAX_LIFETIME:
        return None
    return dict(claims)


class AppInstallations:
    """GitHub Apps installed on the fake's owner, and the installation tokens they were issued."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users  # token -> login: installation tokens join the personal ones
        self.apps: dict[str, rsa.RSAPublicKey] = {}  # GitHub App id -> its public key
        self.installations: dict[str, tuple[str, str]] = {}  # installation id -> (App id, the App's login)
        self.expires: dict[str, float] = {}  # installation token -> when it stops working
        self.token_ttl = 3600.0
        self.now: Callable[[], float] = time.time

    def install_app(self, app_id: str, public_key_pem: bytes, installation_id: str, login: str) -> None:
        """A GitHub App installed on the repository's owner; its installation tokens act as ``login``."""
        key = serialization.load_pem_public_key(public_key_pem)
        assert isinstance(key, rsa.RSAPublicKey)
        self.apps[app_id] = key
        self.installations[installation_id] = (app_id, login)

    def revoke(self, token: str) -> None:
        """Revoke an installation token before it expires (``DELETE /installation/token``)."""
        self.users.pop(token, None)

    def _installation_token(self, installation_id: str, jwt: str) -> Answer:
        """``POST /app/installations/{id}/access_tokens``: the App's RS256 JWT in, an installation token out."""
        claims = app_jwt_claims(self.apps, jwt, self.now())
        if claims is None:
            return Answer(401, {"message": "A JSON web token could not be decoded", "documentation_url": DOCS})
        app_id, login = self.installations.get(installation_id, ("", ""))
        if str(claims.get("iss")) != app_id:
            return not_found()
        token = "ghs_" + secrets.token_hex(18)
        self.users[token], self.expires[token] = login, self.now() + self.token_ttl
        expires_at = datetime.fromtimestamp(self.expires[token], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return Answer(201, {"token": token, "expires_at": expires_at, "repository_selection": "selected"})
