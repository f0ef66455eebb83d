"""Alertmanager matcher syntax: ``label op value``, as written in ``spec.matchers``.

Purely computational. Semantics follow Alertmanager's classic matcher parser so that a
matcher means the same here as in the routing tree the platform team already knows:
regexes are fully anchored, a missing label reads as the empty string, and inside a value
``\\"``, ``\\\\`` and ``\\n`` are escapes while any other backslash is kept literally
(so ``"foo\\.bar"`` is the regex ``foo\\.bar``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from rollbackbot.errors import PolicyError

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# Lazy value and trailing \s* so surrounding blanks are not part of an unquoted value.
_MATCHER = re.compile(r"\s*([^\s=!~]*)\s*(=~|!=|!~|=)\s*(.*?)\s*", re.DOTALL)


class MatchOp(StrEnum):
    """A matcher operator."""

    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True)
class Matcher:
    """One parsed matcher; construction validates the name and compiles the regex."""

    name: str
    op: MatchOp
    value: str

    def __post_init__(self) -> None:
        if not LABEL_NAME.fullmatch(self.name):
            raise PolicyError(f"invalid label name {self.name!r}: must match {LABEL_NAME.pattern}")
        _ = self._pattern  # compile now: an invalid regex fails when the policy loads, not when an alert comes

    @cached_property
    def _pattern(self) -> re.Pattern[str] | None:
        """The compiled regex of ``=~``/``!~``; not a field, so equality and repr are name, op and value."""
        return _compile(self.value) if self.op in (MatchOp.RE, MatchOp.NRE) else None

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the labels satisfy this matcher; a missing label counts as ``""``."""
        actual = labels.get(self.name, "")
        if self._pattern is not None:
            found = self._pattern.fullmatch(actual) is not None
            return found if self.op is MatchOp.RE else not found
        return (actual == self.value) if self.op is MatchOp.EQ else (actual != self.value)

    def __str__(self) -> str:
        return f'{self.name} {self.op.value} "{_escape(self.value)}"'


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher such as ``alertname =~ "A|B"``; raise PolicyError if invalid."""
    found = _MATCHER.fullmatch(text)
    if found is None:
        raise PolicyError(f"invalid matcher {text!r}: expected label, one of = != =~ !~, and a value")
    name, op, raw = found.groups()
    if not LABEL_NAME.fullmatch(name):
        raise PolicyError(f"invalid matcher {text!r}: label name must match {LABEL_NAME.pattern}")
    return Matcher(name, MatchOp(op), _unescape(raw, text))


def _compile(value: str) -> re.Pattern[str]:
    # fullmatch() gives Alertmanager's ^(?:re)$ anchoring without Python's "$ also matches
    # before a trailing newline" quirk.
    try:
        return re.compile(f"(?:{value})")
    except (re.error, RecursionError, OverflowError, ValueError) as exc:
        raise PolicyError(f"invalid regular expression {value!r}: {exc}") from None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(raw: str, text: str) -> str:
    quoted = raw.startswith('"')
    body = raw[1:] if quoted else raw
    out: list[str] = []
    closed = False
    i = 0
    while i < len(body):
        char = body[i]
        if closed:
            raise PolicyError(f"invalid matcher {text!r}: text after the closing quote")
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(nxt, "\\" + nxt))
            i += 2
            continue
        if char == '"':
            if not quoted:
                raise PolicyError(f"invalid matcher {text!r}: unescaped double quote in value")
            closed = True
        else:
            out.append(char)
        i += 1
    if quoted and not closed:
        raise PolicyError(f"invalid matcher {text!r}: missing closing double quote")
    return "".join(out)
