"""Crash-test hooks: ``ROLLBACKBOT_FAILPOINTS=after_push`` kills the process with SIGKILL at that point.

Used only by the crash-safety tests, which restart the service and check that it resumes without
acting twice. Unset (the default), every checkpoint is a dictionary lookup and nothing else.
"""

from __future__ import annotations

import os
import signal

POINTS = ("after_decision", "after_evidence", "after_commit", "after_push", "during_sync")
# Pull-request mode (rollbackbot/prmode.py): after the head branch is pushed, after the pull request is
# created, after the merge call returned; each before the step's result is saved.
PULL_REQUEST_POINTS = ("after_branch_push", "after_pull_request", "after_merge")
# The inbox (rollbackbot/inbox.py): a webhook committed but not answered yet; a row claimed but not
# decided; a row decided (its incidents stored) but not deleted yet.
INBOX_POINTS = ("after_inbox_commit", "before_inbox_decide", "after_inbox_decide")


def checkpoint(name: str) -> None:
    """Die here, like a node losing power, if the failpoint is armed."""
    armed = os.environ.get("ROLLBACKBOT_FAILPOINTS", "")
    if armed and name in armed.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
