"""Commit and tag messages: the cases ``make mutation`` found unpinned in ``core/commit_message.py``."""

from __future__ import annotations

import pytest

from rollbackbot.core.commit_message import VALUE_LIMIT, build_commit_message, one_line, parse_trailers
from rollbackbot.core.model import ReleaseTag
from rollbackbot.errors import NoTargetError
from tests.core.test_releases import rollback_request


@pytest.mark.parametrize(
    ("char", "name"),
    [
        ("\u2028", "line separator (Zl)"),
        ("\u2029", "paragraph separator (Zp)"),
        ("\ue000", "private use (Co)"),
        ("\u0378", "unassigned (Cn)"),
        ("\ud800", "surrogate (Cs)"),
        ("\u202e", "bidi override (Cf)"),
        ("\x1b", "escape (Cc)"),
    ],
)
def test_unsafe_characters_become_spaces(char: str, name: str) -> None:
    assert one_line(f"a{char}b") == "a b", name


def test_values_are_cut_at_200_characters() -> None:
    assert VALUE_LIMIT == 200
    assert one_line("a" * 200) == "a" * 200
    assert one_line("a" * 201) == "a" * 197 + "..."
    assert one_line("abcdef", limit=5) == "ab..."


@pytest.mark.parametrize(
    ("body", "trailers"),
    [
        ("  indented first line\nModel-Digest: x", {}),  # a continuation needs a trailer before it
        ("Release 2.1\n\n  indented first line\nModel-Digest: x", {}),  # also after a blank line
        ("A: 1\n  more\nB: 2", {"A": "1 more", "B": "2"}),
        ("Key:", {"Key": ""}),
        ("model-digest: x", {"Model-Digest": "x"}),
    ],
)
def test_trailer_blocks(body: str, trailers: dict[str, str]) -> None:
    assert parse_trailers(body) == trailers


def test_a_plan_without_target_says_why() -> None:
    request = rollback_request(release=None)
    with pytest.raises(NoTargetError, match="the plan has no target release"):
        build_commit_message(request)


def test_a_target_without_trailers_is_described_as_unknown() -> None:
    message = build_commit_message(rollback_request(release=ReleaseTag("fraud-llm/v2.9.0", "c2", {})))
    assert "Target Model-Digest unknown, Data-Version unknown." in message
