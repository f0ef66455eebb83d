"""Validate JSON documents against the Argo CD v3.5.1 swagger (tests/fixtures/argocd/swagger.json).

The swagger is generated from protobuf while the wire format is Go ``encoding/json``, so the schemas
are converted once: ``allOf`` is merged, every object with declared properties becomes strict
(``additionalProperties: false`` -- otherwise a typo'd or invented key would pass silently), ``v1Time``
must be second-precision UTC, and the documented wire-vs-swagger differences (docs/argocd-wire.md §8) are
whitelisted.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "argocd"
SWAGGER_PATH = FIXTURES / "swagger.json"
EXAMPLES = FIXTURES / "examples"

# Go's time.Time marshals metav1.Time as RFC 3339 with second precision in UTC.
TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"


def load_swagger() -> dict[str, Any]:
    """The raw swagger document."""
    data: dict[str, Any] = json.loads(SWAGGER_PATH.read_text())
    return data


def _strict(node: Any, definitions: dict[str, Any]) -> Any:
    """Recursively merge allOf and forbid undeclared keys on objects with declared properties."""
    if isinstance(node, list):
        return [_strict(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value, definitions) for key, value in node.items()}
    if "allOf" in out:
        # draft-4 additionalProperties does not see properties declared in allOf branches.
        merged = dict(out.get("properties", {}))
        for part in out.pop("allOf"):
            target = definitions[part["$ref"].rsplit("/", 1)[-1]] if "$ref" in part else part
            merged.update(_strict(target, definitions).get("properties", {}))
        out["properties"] = merged
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if out.get("type") == "string" and out.get("format") in {"int64", "uint64"}:
        out["type"] = ["integer", "string"]  # int64 is a JSON number on the wire
    return out


@cache
def _root() -> dict[str, Any]:
    raw = load_swagger()["definitions"]
    definitions = {name: _strict(schema, raw) for name, schema in raw.items()}
    definitions["v1Time"] = {"type": "string", "pattern": TIME_PATTERN}
    # Wire shape of SyncStrategyHook is {"force": bool} (embedded struct), swagger says syncStrategyApply.
    definitions["v1alpha1SyncStrategyHook"]["properties"]["force"] = {"type": "boolean"}
    return {"definitions": definitions}


def schema_for(ref: str) -> dict[str, Any]:
    """A self-contained schema for ``#/definitions/<name>``."""
    return {"$ref": ref, **_root()}


def response_schema(path: str, method: str = "get") -> dict[str, Any]:
    """The strict 200-response schema of a swagger path template (inline stream wrappers included)."""
    schema = load_swagger()["paths"][path][method.lower()]["responses"]["200"]["schema"]
    return {**_strict(schema, load_swagger()["definitions"]), **_root()}


def validation_errors(document: Any, schema: dict[str, Any]) -> list[str]:
    """Every violation as ``path: message``; empty when the document conforms."""
    validator = jsonschema.Draft4Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}" for err in errors]


def assert_valid(document: Any, ref_or_schema: str | dict[str, Any]) -> None:
    """Fail with all violations listed when the document does not match."""
    schema = schema_for(ref_or_schema) if isinstance(ref_or_schema, str) else ref_or_schema
    errors = validation_errors(document, schema)
    assert not errors, "\n".join(errors)


def _shape(document: Any, path: str, maps: frozenset[str]) -> Any:
    if isinstance(document, dict):
        if path in maps:
            return ("map",)
        return frozenset((k, _shape(v, f"{path}.{k}" if path else k, maps)) for k, v in document.items())
    if isinstance(document, list):
        return ("array", frozenset(_shape(item, f"{path}[]", maps) for item in document))
    return (type(document).__name__,)


def shape_differences(ours: Any, theirs: Any, maps: frozenset[str] = frozenset(), path: str = "") -> list[str]:
    """Where two documents differ in shape: keys, JSON types, and the set of distinct list-item shapes.

    Lists may differ in length, but every kind of item one side has (e.g. a resource without
    ``group``/``health``) must exist on the other side. Keys of maps listed in ``maps`` are free.
    """
    where = path or "<root>"
    if isinstance(ours, dict) and isinstance(theirs, dict):
        if path in maps:
            return []
        found = [f"{where}: missing key {k!r}" for k in theirs.keys() - ours.keys()]
        found += [f"{where}: extra key {k!r}" for k in ours.keys() - theirs.keys()]
        for key in ours.keys() & theirs.keys():
            found += shape_differences(ours[key], theirs[key], maps, f"{path}.{key}" if path else key)
        return found
    if isinstance(ours, list) and isinstance(theirs, list):
        item_path = f"{path}[]"
        our_items = {_shape(i, item_path, maps): i for i in ours}
        their_items = {_shape(i, item_path, maps): i for i in theirs}
        if len(our_items) == len(their_items) == 1:  # one kind each side: say precisely where
            return shape_differences(ours[0], theirs[0], maps, item_path)
        found = [
            f"{item_path}: item {_brief(i)} has no counterpart" for s, i in our_items.items() if s not in their_items
        ]
        return found + [f"{item_path}: no item like {_brief(i)}" for s, i in their_items.items() if s not in our_items]
    if type(ours) is not type(theirs):
        return [f"{where}: {type(ours).__name__} instead of {type(theirs).__name__}"]
    return []


def _brief(item: Any) -> str:
    return json.dumps(item, sort_keys=True)[:160]


def load_example(name: str) -> Any:
    """One recorded example payload from tests/fixtures/argocd/examples."""
    return json.loads((EXAMPLES / name).read_text())
