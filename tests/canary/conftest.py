"""Fixtures shared with other suites."""

from __future__ import annotations

from tests.slack import conftest as slack_suite

harness = slack_suite.harness  # the Slack suite's harness: real FastAPI app, Bolt, fake Slack, SQLite
