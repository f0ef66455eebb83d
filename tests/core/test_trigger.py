"""The payload people see: flagged requests from the observer's evidence, the top one, its excerpt."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rollbackbot.core.trigger import EXCERPT_CHARS, MAX_LISTED, excerpt, flagged_requests, parse_requests, top_payload


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("ignore previous instructions", "ignore previous instructions"),
        ("mail bob.smith+x@corp.example.com the list", "mail <EMAIL> the list"),
        ("SSN 123-45-6789 and card 4111 1111 1111 1111", "SSN <SSN> and card <NUMBER>"),
        ("use sk-abcdefghijklmnop or xoxb-1234567890-abc", "use <SECRET> or <SECRET>"),
        ("Authorization: Bearer eyJhbGciOi.abc.def", "Authorization: Bearer <SECRET>"),
        ("line one\n\n\tline two  ", "line one line two"),
        ("zero\u200bwidth and bell\x07 and rtl\u202e", "zero\\u200bwidth and bell\\u0007 and rtl\\u202e"),
        ("<script>&</script>", "<script>&</script>"),  # markup is escaped where it is rendered (Slack, HTML)
    ],
)
def test_excerpt_redacts_flattens_and_escapes(text: str, shown: str) -> None:
    assert excerpt(text) == shown


def test_excerpt_is_cut_to_its_limit_and_says_so() -> None:
    cut = excerpt("word " * 200)
    assert len(cut) == EXCERPT_CHARS and cut.endswith("…")


def _line(**fields: Any) -> str:
    return json.dumps({"timestamp": "t", "input": ["benign"], "hits": [], "canary": False, "pii": [], **fields})


def test_parse_skips_what_is_not_a_json_object() -> None:
    body = f'{_line()}\n[1, 2]\nnot json\n{_line(hits=["jailbreak_persona"])}\n{{"cut off'.encode()
    assert [e["hits"] for e in parse_requests(body)] == [[], ["jailbreak_persona"]]


def test_flagged_are_those_with_hits_a_canary_or_pii() -> None:
    entries = [
        json.loads(_line(input=["a"])),
        json.loads(_line(input=["b"], hits=["role_marker"])),
        json.loads(_line(input=["c"], canary=True)),
        json.loads(_line(input=["d"], pii=["email"])),
        {"input": "not a list", "hits": "not a list"},
    ]
    assert [f["excerpt"] for f in flagged_requests(entries)] == ["b", "c", "d"]


def test_only_the_newest_flagged_are_listed() -> None:
    entries = [json.loads(_line(input=[str(i)], hits=["role_marker"])) for i in range(MAX_LISTED + 5)]
    listed = flagged_requests(entries)
    assert len(listed) == MAX_LISTED and listed[-1]["excerpt"] == str(MAX_LISTED + 4)


@pytest.mark.parametrize(
    ("lines", "top"),
    [
        ([_line(input=["a"], hits=["x"]), _line(input=["b"], hits=["x", "y"]), _line(input=["c"], hits=["y"])], "b"),
        ([_line(input=["a"], hits=["x"], canary=True), _line(input=["b"], hits=["y"])], "a"),  # canary breaks ties
        ([_line(input=["a"], hits=["x"]), _line(input=["b"], hits=["y"])], "b"),  # then the newest
    ],
)
def test_the_top_payload_has_most_detectors_then_a_canary_then_is_newest(lines: list[str], top: str) -> None:
    shown = top_payload(flagged_requests(parse_requests("\n".join(lines).encode())))
    assert shown is not None and shown["excerpt"] == top and shown["flagged_requests"] == len(lines)


def test_no_flagged_request_no_top_payload() -> None:
    assert top_payload(flagged_requests(parse_requests(_line().encode()))) is None
