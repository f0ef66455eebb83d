"""Shared by the forge contract tests: find a vendored operation, record what a fake forge was asked and answered."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema

from rollbackbot.testing.forge.github_wire import Answer
from rollbackbot.testing.forge.server import FakeForge

GITHUB = json.loads((Path(__file__).parents[1] / "fixtures" / "forge" / "github-pulls.openapi.json").read_text())


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


def relaxed(node: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema without ``required`` (``nullable`` becomes a null type)."""
    if isinstance(node, list):
        return [relaxed(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: relaxed(v) for k, v in node.items() if k not in ("required", "nullable")}
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def github_schema(method: str, path: str, status: str) -> dict[str, Any]:
    """The JSON schema GitHub documents for an answer of the operation at ``path``."""
    return dict(operation(GITHUB, method, path)["responses"][status]["content"]["application/json"]["schema"])


def check_github_exchange(exchange: Exchange) -> None:
    """A documented status; the request body in full, the answer relaxed (fields GitHub may add left out)."""
    method, path, _, body, answer = exchange
    documented = operation(GITHUB, method, path)
    assert str(answer.status) in documented["responses"], f"{method} {path}: {answer.status} is not documented"
    if body is not None and "requestBody" in documented:
        jsonschema.validate(body, documented["requestBody"]["content"]["application/json"]["schema"])
    if "content" in documented["responses"][str(answer.status)]:
        jsonschema.validate(answer.body, relaxed(github_schema(method, path, str(answer.status))))
