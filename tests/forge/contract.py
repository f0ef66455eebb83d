"""Shared by the forge contract tests: find a vendored operation, record what a fake forge was asked and answered."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from rollbackbot.testing.forge.github_wire import Answer
from rollbackbot.testing.forge.server import FakeForge


class Exchange(NamedTuple):
    method: str
    path: str
    query: dict[str, str]
    body: Any
    answer: Answer


def operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The operation of the vendored description whose path template matches ``path``."""
    for template, operations in spec["paths"].items():
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", template)
        if re.fullmatch(pattern, path) and method.lower() in operations:
            return dict(operations[method.lower()])
    raise AssertionError(f"{method} {path} is not an operation of the vendored description")


@contextlib.contextmanager
def recorded(fake: FakeForge) -> Iterator[list[Exchange]]:
    """Every request the fake handles meanwhile, with its answer."""
    exchanges: list[Exchange] = []
    handle = fake.handle

    def recording(method: str, path: str, query: dict[str, str], body: Any, token: str | None) -> Answer:
        answer = handle(method, path, query, body, token)
        exchanges.append(Exchange(method, path, query, body, answer))
        return answer

    fake.handle = recording  # type: ignore[method-assign]
    try:
        yield exchanges
    finally:
        fake.handle = handle  # type: ignore[method-assign]
