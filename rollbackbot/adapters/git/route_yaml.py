"""The route file's YAML: edited in place with ruamel.yaml's round-trip loader, checked against its CRD schema.

Comments, key order and quoting survive, so the diff of a canary step shows only the weights (and
the mirror). Imported on first use by ``route_commit`` (ruamel.yaml and jsonschema cost ~4 MB of a
service that may never run a canary).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from rollbackbot.core.commit_message import one_line
from rollbackbot.core.policy import TrafficRouter
from rollbackbot.core.traffic import TrafficPlan, apply_plan
from rollbackbot.errors import PolicyError

SCHEMAS = Path(__file__).parent / "route_schemas"  # openAPIV3Schema of each CRD; provenance in SOURCE.md
# ruamel's emitter indents block sequences one way per dump; GitOps files use either style.
_LAYOUTS = ({"mapping": 2, "sequence": 4, "offset": 2}, {"mapping": 2, "sequence": 2, "offset": 0})


def _yaml(layout: Mapping[str, int]) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line the author wrote on one
    yaml.indent(**layout)
    return yaml


def _dump(yaml: YAML, document: Any) -> str:
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def edit_route(text: str, router: TrafficRouter, plan: TrafficPlan) -> str:
    """The route file with ``plan`` applied; every other byte as the author wrote it where YAML allows."""
    layout = _layout_of(text)
    yaml = _yaml(layout)
    try:
        document = yaml.load(text)
    except YAMLError as exc:
        raise PolicyError(f"{router.file}: not valid YAML: {one_line(str(exc))}") from None
    if not isinstance(document, dict):
        raise PolicyError(f"{router.file}: expected one YAML mapping (a {router.kind.value})")
    apply_plan(document, router, plan)
    edited = _dump(yaml, document)
    check_schema(router.kind.value, YAML(typ="safe").load(edited), router.file)
    return edited


@cache
def _validator(kind: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{kind}.v1.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def check_schema(kind: str, rendered: object, where: str) -> None:
    """PolicyError unless the rendered route fits its CRD schema: the cluster would refuse it, mid-incident."""
    errors = sorted(_validator(kind).iter_errors(rendered), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        path = ".".join(str(p) for p in first.absolute_path) or "(root)"
        raise PolicyError(f"{where}: the edited {kind} would not fit its schema at {path}: {one_line(first.message)}")


def _layout_of(text: str) -> Mapping[str, int]:
    """The sequence layout that reproduces ``text`` best when dumped unedited."""

    def differing(layout: Mapping[str, int]) -> int:
        try:
            again = _dump(_yaml(layout), _yaml(layout).load(text)).splitlines()
        except YAMLError:
            return 1 << 30  # this layout cannot even read the file: never the best
        original = text.splitlines()
        return sum(a != b for a, b in zip(again, original, strict=False)) + abs(len(again) - len(original))

    return min(_LAYOUTS, key=differing)


def deployment_image(text: str, name: str) -> str | None:
    try:
        documents = list(YAML(typ="safe").load_all(text))
    except YAMLError:
        return None
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "Deployment":
            if (document.get("metadata") or {}).get("name") != name:
                continue
            containers = ((document.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
            if containers and isinstance(containers[0], dict) and containers[0].get("image"):
                return str(containers[0]["image"])
    return None
