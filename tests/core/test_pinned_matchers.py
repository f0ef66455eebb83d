"""Matcher parsing and equality: the cases ``make mutation`` found unpinned in ``core/matchers.py``."""

from __future__ import annotations

import pytest

from rollbackbot.core.matchers import Matcher, MatchOp, parse_matcher
from rollbackbot.errors import PolicyError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("app = a\\", "a\\"),  # a trailing backslash is kept, not an escape of nothing
        ("app = a\\n", "a\n"),  # an escape as the last two characters of an unquoted value
        ('app = "a\\n"', "a\n"),
        ("app = \\", "\\"),
    ],
)
def test_escapes_at_the_end_of_a_value(text: str, value: str) -> None:
    assert parse_matcher(text).value == value


def test_a_quoted_value_whose_closing_quote_is_escaped_is_unterminated() -> None:
    with pytest.raises(PolicyError, match="missing closing double quote"):
        parse_matcher('app = "a\\"')


def test_matchers_are_equal_by_name_op_and_value_and_compile_once() -> None:
    first = parse_matcher('app =~ "fraud-.*"')
    second = Matcher("app", MatchOp.RE, "fraud-.*")
    assert first == second and hash(first) == hash(second)
    assert repr(first) == "Matcher(name='app', op=<MatchOp.RE: '=~'>, value='fraud-.*')"
    assert first.matches({"app": "fraud-llm"}) and not first.matches({"app": "x-fraud-llm"})
    with pytest.raises(PolicyError, match="invalid regular expression"):
        Matcher("app", MatchOp.NRE, "(")
    with pytest.raises(TypeError):
        Matcher("app", MatchOp.EQ, "x", None)  # type: ignore[call-arg]
