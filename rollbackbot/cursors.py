"""Opaque keyset cursors shared by ``GET /api/incidents`` and the incident list page.

A cursor is the (created, id) of the last incident of a page, base64url-encoded JSON; the store pages
newest first by (created, id), so an incident inserted meanwhile never shifts a page.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime


class InvalidCursor(ValueError):
    """The cursor was not produced by ``encode_cursor`` (or was damaged on the way)."""


def encode_cursor(after: tuple[datetime, str]) -> str:
    """The opaque ``cursor`` of the page after (created, id)."""
    raw = json.dumps([after[0].isoformat(), after[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created, id) from a ``cursor``; ``InvalidCursor`` when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, last_id = json.loads(raw)
        when = datetime.fromisoformat(created)
        if not isinstance(last_id, str) or when.tzinfo is None:
            raise ValueError("not a cursor")
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidCursor("invalid cursor") from None
    return when, last_id
