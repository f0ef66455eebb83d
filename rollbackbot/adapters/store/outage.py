"""Database outages as the service sees them: ``StoreUnavailable``, in the driver's own words."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from rollbackbot.errors import StoreUnavailable, redact

P = ParamSpec("P")
R = TypeVar("R")


def outage_cause(exc: SQLAlchemyError) -> str:
    """The driver's own words (``database is locked``), without SQL, parameters or credentials."""
    cause = getattr(exc, "orig", None) or exc
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {redact(first)[:200]}" if first else type(cause).__name__


def store_call(method: Callable[P, R]) -> Callable[P, R]:
    """Turn an outage of the database into ``StoreUnavailable`` (the service waits it out)."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(f"incident store unavailable: {outage_cause(exc)}") from exc

    return call
