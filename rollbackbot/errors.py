"""The one error tree of rollbackbot.

    RollbackBotError
    ├── ConfigError          settings or wiring are wrong; the service must not start
    ├── PolicyError          a policy file is invalid (carries file:line)
    ├── AlertRefused         an alert cannot be acted on safely (e.g. a label fails the name check)
    ├── ApprovalError        an approval request is not allowed or no longer applies
    └── AdapterError         an external system misbehaved
        ├── TransientError   worth retrying (transport errors, 5xx, timeouts)
        │   ├── StoreUnavailable  the incident store is locked, full or unreachable
        │   └── NotMergeable      the forge will not merge a pull request yet (405)
        └── PermanentError   retrying will not help; a human must look
            ├── ConflictError  the deploy branch moved in a way we must not override
            │   └── HeadMoved  a pull request's head is not the approved commit (409)
            └── Superseded     newer work on the deploy branch replaced the rollback commit

tenacity retries ``TransientError`` only.

``classify(exc)`` is the one place that says how the incident engine treats any exception: the
store being unavailable is waited out (the incident cannot even record a failure), a transient
error is retried with backoff within the incident's retry budget, anything else ends the incident
``failed`` with ``describe(exc)``. Foreign exceptions are classified by class name, so this module
imports no library (core imports it and must stay pure); URLs are redacted by ``rollbackbot.redact``.
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum

from rollbackbot.redact import redact_urls


class RollbackBotError(Exception):
    """Base of every error rollbackbot raises on purpose."""


class ConfigError(RollbackBotError):
    """Settings or wiring are invalid."""


class PolicyError(RollbackBotError):
    """A policy file is invalid; ``location`` is ``file:line`` when known."""

    def __init__(self, message: str, location: str | None = None) -> None:
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class AlertRefused(RollbackBotError):
    """An alert matched a policy but cannot be acted on safely."""


class ApprovalError(RollbackBotError):
    """An approval or rejection is not allowed or no longer applies."""


class AdapterError(RollbackBotError):
    """An external system (git, Argo CD, Slack, store, evidence sink) failed."""


class TransientError(AdapterError):
    """A failure that may go away when retried."""


class PermanentError(AdapterError):
    """A failure that retrying will not fix."""


class ConflictError(PermanentError):
    """The deploy branch changed the paths we restore; we never override a human's change."""


class NoTargetError(PermanentError):
    """There is no verified release older than the current one."""


class HeadMoved(ConflictError):
    """A pull request's head is no longer the commit that was approved (the forge answered 409)."""


class NotMergeable(TransientError):
    """The forge will not merge the pull request yet (405: checks, reviews, conflicts, still computing)."""


class StoreUnavailable(TransientError):
    """The incident store cannot be read or written right now (locked, disk full, connection lost)."""


class Fault(StrEnum):
    """How the incident engine treats an exception."""

    store = "store"  # wait until the store is back, without limit: nothing can be recorded meanwhile
    transient = "transient"  # retry with backoff and jitter within the incident's retry budget
    permanent = "permanent"  # end the incident failed, with the error's class and message


# Exceptions of libraries we do not import here: (module prefix, class name) anywhere in the MRO.
# Matched on the top-level package, since libraries re-export their errors from private modules.
_FOREIGN_STORE = {("sqlalchemy", "OperationalError"), ("sqlite3", "OperationalError")}
_FOREIGN_TRANSIENT = {("httpx", "TransportError"), ("git", "GitCommandError")}
_FOREIGN_PERMANENT = {("httpx", "InvalidURL"), ("httpx", "UnsupportedProtocol")}


def _foreign(exc: BaseException, known: set[tuple[str, str]]) -> bool:
    """Whether ``exc`` is (a subclass of) one of the ``known`` foreign exception classes."""
    return any((cls.__module__.split(".")[0], cls.__name__) in known for cls in type(exc).__mro__)


def classify(exc: BaseException) -> Fault:
    """Store outage, transient (retry) or permanent (fail): the one classification of errors."""
    if isinstance(exc, StoreUnavailable) or _foreign(exc, _FOREIGN_STORE):
        return Fault.store
    if isinstance(exc, PermanentError) or _foreign(exc, _FOREIGN_PERMANENT):
        return Fault.permanent
    if isinstance(exc, TransientError | ConnectionError | TimeoutError) or _foreign(exc, _FOREIGN_TRANSIENT):
        return Fault.transient
    return Fault.permanent


_UNSAFE = ("Cc", "Cf", "Zl", "Zp")  # control, format (bidi, zero-width) and line separators


def redact(text: str) -> str:
    """``text`` with every URL's userinfo and query string hidden (``rollbackbot.redact``, the one redaction)."""
    return redact_urls(text)


def describe(exc: BaseException, limit: int = 300) -> str:
    """``Class: message`` on one line, credentials removed, length bounded: safe for events and logs."""
    text = redact(str(exc))
    text = " ".join("".join(" " if unicodedata.category(c) in _UNSAFE else c for c in text).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


class Superseded(PermanentError):
    """A later commit changed the app's paths after our rollback commit: the outcome is newer work, not ours."""
