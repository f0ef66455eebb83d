"""Who may see the incident pages: a signed, expiring session cookie, or a trusted proxy's user header.

The cookie is ``<payload>.<signature>``: the payload is the user and the expiry time, the signature
an HMAC-SHA256 under a key derived from the API token, so every replica accepts the same cookie and
changing the token signs everybody out. Nothing secret is inside the cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

COOKIE_NAME = "rollbackbot_ui"
SESSION_SECONDS = 8 * 3600
_KEY_PURPOSE = b"rollbackbot ui session v1"
MAX_USER_LENGTH = 200


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SessionSigner:
    """Signs and checks session cookies with a key derived from the API token."""

    token: bytes
    lifetime: int = SESSION_SECONDS

    @property
    def _key(self) -> bytes:
        return hmac.new(self.token, _KEY_PURPOSE, hashlib.sha256).digest()

    def token_matches(self, offered: str) -> bool:
        """Whether the login form's token is the API token (constant time)."""
        return bool(offered) and hmac.compare_digest(offered.encode(), self.token)

    def issue(self, user: str, now: float | None = None) -> str:
        """A cookie value for ``user`` valid for ``lifetime`` seconds."""
        expires = int((time.time() if now is None else now) + self.lifetime)
        payload = _b64(json.dumps({"u": user[:MAX_USER_LENGTH], "exp": expires}, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def user_of(self, cookie: str | None, now: float | None = None) -> str | None:
        """The user a valid, unexpired cookie names; None for anything else."""
        if not cookie or cookie.count(".") != 1 or len(cookie) > 1024:
            return None
        payload, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            user, expires = str(data["u"]), int(data["exp"])
        except (ValueError, KeyError, TypeError):
            return None
        return user if expires > (time.time() if now is None else now) else None

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())


Network = IPv4Network | IPv6Network


def parse_ranges(text: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` → networks (settings validated the syntax)."""
    return tuple(ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class ProxyTrust:
    """An authenticating proxy (e.g. oauth2-proxy) in front of rollbackbot whose user header is believed."""

    ranges: Sequence[Network]
    header: str = "X-Forwarded-User"

    def user_of(self, peer: str | None, headers: dict[str, str]) -> str | None:
        """The proxy's user when the request comes straight from a trusted address; else None."""
        if not self.ranges or not peer:
            return None
        try:
            address = ip_address(peer)
        except ValueError:
            return None
        if not any(address in network for network in self.ranges):
            return None
        user = headers.get(self.header.lower(), "").strip()
        return user[:MAX_USER_LENGTH] or None


class LoginThrottle:
    """At most ``limit`` failed sign-ins per client address in ``window`` seconds; then 429 until they age out.

    In memory, per replica: it slows guessing down, the token's length is what makes guessing hopeless.
    """

    def __init__(self, limit: int = 10, window: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.setdefault(client, deque())
        horizon = self.clock() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        return failures

    def blocked(self, client: str) -> bool:
        """Whether ``client`` used up its failed attempts."""
        blocked = len(self._recent(client)) >= self.limit
        if not self._failures[client]:
            del self._failures[client]  # keep the table as small as the set of recent failures
        return blocked

    def failed(self, client: str) -> None:
        """Count one failed sign-in."""
        self._recent(client).append(self.clock())
