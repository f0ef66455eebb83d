"""The one error tree of rollbackbot.

    RollbackBotError
    ├── ConfigError          settings or wiring are wrong; the service must not start
    ├── PolicyError          a policy file is invalid (carries file:line)
    ├── AlertRefused         an alert cannot be acted on safely (e.g. a label fails the name check)
    ├── ApprovalError        an approval request is not allowed or no longer applies
    └── AdapterError         an external system misbehaved
        ├── TransientError   worth retrying (transport errors, 5xx, timeouts)
        └── PermanentError   retrying will not help; a human must look
            ├── ConflictError  the deploy branch moved in a way we must not override
            └── Superseded     newer work on the deploy branch replaced the rollback commit

tenacity retries ``TransientError`` only.
"""

from __future__ import annotations


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


class Superseded(PermanentError):
    """A later commit changed the app's paths after our rollback commit: the outcome is newer work, not ours."""
