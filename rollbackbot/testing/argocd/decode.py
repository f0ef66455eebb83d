"""Request-body decoding the way grpc-gateway + Go ``encoding/json`` do it, with Go's error texts.

Unknown keys are dropped, keys match case-insensitively, ``null`` leaves a field unset, an empty body
is ``{}``; a type mismatch is ``400 {"code":3,"error":"json: cannot unmarshal …"}`` (docs/argocd-wire.md §1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

GRPC_TO_HTTP = {
    1: 408, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429,
    9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}  # fmt: skip
HTTP_TO_GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 408: 1, 409: 10, 429: 8, 500: 13, 501: 12, 503: 14, 504: 4}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ArgoError(Exception):
    """An API error with its gRPC code; rendered as ``{"error","code","message"}``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """HTTP status grpc-gateway v1.16 maps the code to (FailedPrecondition is 400, not 412)."""
        return GRPC_TO_HTTP.get(self.code, 500)

    def body(self) -> dict[str, Any]:
        """The wire error body."""
        return {"error": self.message, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class Struct:
    """A Go struct: its qualified type name and JSON fields (``name -> type``)."""

    go_type: str
    fields: dict[str, Any]

    @property
    def short(self) -> str:
        """Unqualified name, as Go prints it in ``Go struct field <Struct>.<path>``."""
        return self.go_type.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Slice:
    """A Go slice of ``item`` (a scalar name or a Struct)."""

    item: Any

    def go_name(self) -> str:
        """Go's spelling of the slice type."""
        inner = self.item.go_type if isinstance(self.item, Struct) else self.item
        return f"[]*{inner}" if isinstance(self.item, Struct) else f"[]{inner}"


_FORCE = {"force": "bool"}
_INFO = Struct("v1alpha1.Info", {"name": "string", "value": "string"})
_RESOURCE = Struct(
    "application.SyncOperationResource",
    {"group": "string", "kind": "string", "name": "string", "namespace": "string"},
)
_BACKOFF = Struct("v1alpha1.Backoff", {"duration": "string", "factor": "int64", "maxDuration": "string"})
SYNC_REQUEST = Struct(
    "application.ApplicationSyncRequest",
    {
        "name": "string",
        "revision": "string",
        "dryRun": "bool",
        "prune": "bool",
        "strategy": Struct(
            "v1alpha1.SyncStrategy",
            {
                "apply": Struct("v1alpha1.SyncStrategyApply", _FORCE),
                "hook": Struct("v1alpha1.SyncStrategyHook", _FORCE),
            },
        ),
        "resources": Slice(_RESOURCE),
        "manifests": Slice("string"),
        "infos": Slice(_INFO),
        "retryStrategy": Struct("v1alpha1.RetryStrategy", {"limit": "int64", "backoff": _BACKOFF, "refresh": "bool"}),
        "syncOptions": Struct("application.SyncOptions", {"items": Slice("string")}),
        "appNamespace": "string",
        "project": "string",
        "revisions": Slice("string"),
        "sourcePositions": Slice("int64"),
    },
)
ROLLBACK_REQUEST = Struct(
    "application.ApplicationRollbackRequest",
    {"name": "string", "id": "int64", "dryRun": "bool", "prune": "bool", "appNamespace": "string", "project": "string"},
)
PATCH_REQUEST = Struct(
    "application.ApplicationPatchRequest",
    {"name": "string", "patch": "string", "patchType": "string", "appNamespace": "string", "project": "string"},
)
SESSION_REQUEST = Struct(
    "session.SessionCreateRequest", {"username": "string", "password": "string", "token": "string"}
)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names[type(value)]


def _mismatch(value: Any, go_type: str, struct: Struct | None, path: str, top: Struct) -> ArgoError:
    kind = _json_kind(value)
    if kind == "number" and go_type == "int64":
        kind = f"number {json.dumps(value)}"
    if struct is None:
        return ArgoError(3, f"json: cannot unmarshal {kind} into Go value of type {top.go_type}")
    return ArgoError(3, f"json: cannot unmarshal {kind} into Go struct field {struct.short}.{path} of type {go_type}")


def _decode(value: Any, spec: Any, parent: Struct | None, path: str, top: Struct) -> Any:
    if isinstance(spec, Struct):
        if not isinstance(value, dict):
            return _raise(_mismatch(value, spec.go_type, parent, path, top))
        by_lower = {name.lower(): name for name in spec.fields}
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = by_lower.get(key.lower())
            if name is not None and item is not None:
                out[name] = _decode(item, spec.fields[name], spec, f"{path}.{name}" if path else name, top)
        return out
    if isinstance(spec, Slice):
        if not isinstance(value, list):
            return _raise(_mismatch(value, spec.go_name(), parent, path, top))
        return [_decode(item, spec.item, parent, path, top) for item in value if item is not None]
    ok = {
        "string": isinstance(value, str),
        "bool": isinstance(value, bool),
        "int64": isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX,
    }[spec]
    return value if ok else _raise(_mismatch(value, spec, parent, path, top))


def _raise(error: ArgoError) -> Any:
    raise error


def _syntax_error(text: str, exc: json.JSONDecodeError) -> ArgoError:
    if exc.pos >= len(text.rstrip()):
        return ArgoError(3, "unexpected EOF")
    char = text[exc.pos]
    context = "looking for beginning of value" if exc.msg == "Expecting value" else "after top-level value"
    if exc.msg.startswith("Expecting") and exc.msg != "Expecting value":
        context = (
            "after object key:value pair" if "delimiter" in exc.msg else "looking for beginning of object key string"
        )
    return ArgoError(3, f"invalid character {char!r} {context}")


def decode_body(raw: bytes, spec: Struct) -> dict[str, Any]:
    """Decode a request body into the canonical field names of ``spec``; raise ArgoError(3) like Go."""
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        return {}  # grpc-gateway treats io.EOF (empty body) as an empty message
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _syntax_error(text, exc) from None
    if value is None:
        return {}
    decoded: dict[str, Any] = _decode(value, spec, None, "", spec)
    return decoded
