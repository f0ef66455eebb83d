"""errors.classify is the one place that says store outage, transient or permanent; describe() is safe to record."""

from __future__ import annotations

import sqlite3

import git
import httpx
import pytest
from sqlalchemy.exc import OperationalError

from rollbackbot.errors import (
    ConflictError,
    Fault,
    PermanentError,
    StoreUnavailable,
    TransientError,
    classify,
    describe,
)


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (StoreUnavailable("incident store unavailable: database is locked"), Fault.store),
        (OperationalError("UPDATE incidents", {}, sqlite3.OperationalError("database or disk is full")), Fault.store),
        (TransientError("git fetch failed: Connection reset by peer"), Fault.transient),
        (ConnectionResetError(104, "Connection reset by peer"), Fault.transient),
        (TimeoutError(), Fault.transient),
        (httpx.ConnectError("connection refused"), Fault.transient),
        (httpx.ReadTimeout("timed out"), Fault.transient),
        (git.GitCommandError(["git", "fetch"], 128, b"fatal: the remote end hung up unexpectedly"), Fault.transient),
        (httpx.InvalidURL("Invalid port: ':1'"), Fault.permanent),
        (httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'gopher://'"), Fault.permanent),
        (PermanentError("Argo CD rejected the token (401)"), Fault.permanent),
        (ConflictError("apps/x changed by a human"), Fault.permanent),
        (ValueError("unexpected tag line"), Fault.permanent),
        (KeyError("status"), Fault.permanent),
    ],
)
def test_classify(error: Exception, fault: Fault) -> None:
    assert classify(error) is fault


def test_describe_strips_credentials_and_query_strings_and_stays_one_line() -> None:
    error = RuntimeError("GET https://bot:hunter2@observer:9100/forensics?token=s3cr3t failed\nsecond line")
    text = describe(error)
    assert text == "RuntimeError: GET https://***@observer:9100/forensics?*** failed second line"  # rollbackbot.redact
    assert len(describe(RuntimeError("x" * 1000))) == 300
