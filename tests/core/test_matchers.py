"""Alertmanager matcher syntax and semantics, driven by cases/matching.yaml and cases/matcher_syntax.yaml."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from rollbackbot.core.matchers import Matcher, MatchOp, parse_matcher
from rollbackbot.errors import PolicyError

CASES = Path(__file__).parent / "cases"


def _cases(name: str) -> list[Any]:
    loaded: list[Any] = yaml.safe_load((CASES / name).read_text(encoding="utf-8"))
    return loaded


@pytest.mark.parametrize("case", _cases("matching.yaml"), ids=lambda case: case["name"])
def test_matching(case: dict[str, Any]) -> None:
    matchers = [parse_matcher(text) for text in case["matchers"]]
    assert all(m.matches(case["labels"]) for m in matchers) is case["match"]


@pytest.mark.parametrize("case", _cases("matcher_syntax.yaml"), ids=lambda case: case["text"])
def test_syntax(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(PolicyError, match=re.escape(case["error"])):
            parse_matcher(case["text"])
        return
    name, op, value = case["parsed"]
    assert parse_matcher(case["text"]) == Matcher(name, MatchOp(op), value)


def test_str_is_the_alertmanager_form() -> None:
    assert str(parse_matcher('alertname=~"A|B"')) == 'alertname =~ "A|B"'
    assert str(parse_matcher('s = "a \\"q\\" \\\\ b"')) == 's = "a \\"q\\" \\\\ b"'


def test_constructing_directly_validates() -> None:
    with pytest.raises(PolicyError, match="invalid label name"):
        Matcher("bad-name", MatchOp.EQ, "x")
    with pytest.raises(PolicyError, match="invalid regular expression"):
        Matcher("app", MatchOp.RE, "[")


def test_equality_ignores_the_compiled_pattern() -> None:
    assert parse_matcher('a =~ "x|y"') == parse_matcher('a=~"x|y"')
    assert hash(parse_matcher('a =~ "x|y"')) == hash(parse_matcher('a=~"x|y"'))
    assert parse_matcher('a =~ "x"') != parse_matcher('a = "x"')


label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True)


@given(name=label_names, op=st.sampled_from([MatchOp.EQ, MatchOp.NE]), value=st.text(max_size=40))
def test_str_round_trips_any_value(name: str, op: MatchOp, value: str) -> None:
    matcher = Matcher(name, op, value)
    assert parse_matcher(str(matcher)) == matcher


@given(name=label_names, value=st.text(max_size=40), other=st.text(max_size=40))
def test_escaped_regex_matches_exactly_its_value(name: str, value: str, other: str) -> None:
    matcher = parse_matcher(str(Matcher(name, MatchOp.RE, re.escape(value))))
    assert matcher.matches({name: value})
    assert matcher.matches({name: other}) is (other == value)
