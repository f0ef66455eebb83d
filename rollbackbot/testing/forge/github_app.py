"""The fake GitHub's side of GitHub App authentication: checking an App's JWT as GitHub does."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

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
