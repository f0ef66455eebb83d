"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902) for PATCH /api/v1/applications/{name}."""

from __future__ import annotations

import copy
import json
from typing import Any

from rollbackbot.testing.argocd.decode import ArgoError


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _split(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ArgoError(3, f"JSON pointer must start with '/': {pointer!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _get(doc: Any, parts: list[str]) -> Any:
    return _parent(doc, [*parts, ""])


def _remove(doc: Any, parts: list[str]) -> Any:
    parent = _parent(doc, parts)
    return parent.pop(int(parts[-1])) if isinstance(parent, list) else parent.pop(parts[-1])


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _parent(doc, parts)
    if isinstance(parent, list):
        index = len(parent) if parts[-1] == "-" else int(parts[-1])
        if index > len(parent):
            raise IndexError(index)
        parent.insert(index, value)
    else:
        parent[parts[-1]] = value
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch; any failure is a 400 with the failing operation."""
    if not isinstance(operations, list):
        raise ArgoError(3, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(target)
    for op in operations:
        try:
            kind, parts = op["op"], _split(op["path"])
            if kind == "add":
                doc = _add(doc, parts, copy.deepcopy(op["value"]))
            elif kind == "remove":
                _remove(doc, parts)
            elif kind == "replace":
                _remove(doc, parts)
                doc = _add(doc, parts, copy.deepcopy(op["value"]))
            elif kind in ("move", "copy"):
                source = _split(op["from"])
                value = _remove(doc, source) if kind == "move" else copy.deepcopy(_get(doc, source))
                doc = _add(doc, parts, value)
            elif kind == "test":
                if _get(doc, parts) != op["value"]:
                    raise ArgoError(3, f"testing value {op['path']} failed: test failed")
            else:
                raise ArgoError(3, f"Unexpected kind: {kind}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ArgoError(3, f"error in patch operation {json.dumps(op)}: {exc!r}") from None
    return doc


def apply_patch(document: dict[str, Any], patch: str, patch_type: str) -> dict[str, Any]:
    """Apply the PATCH request's ``patch`` string of ``patchType`` (``json`` is the default)."""
    if patch_type not in ("", "json", "merge"):
        raise ArgoError(3, f"Patch type '{patch_type}' is not supported")
    try:
        parsed = json.loads(patch)
    except json.JSONDecodeError as exc:
        raise ArgoError(3, f"invalid patch: {exc.msg}") from None
    result = merge_patch(document, parsed) if patch_type == "merge" else json_patch(document, parsed)
    if not isinstance(result, dict):
        raise ArgoError(3, "patch result is not an object")
    return result
