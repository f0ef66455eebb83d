"""Rendering each step into the route file: golden files, byte-for-byte edits, CRD schema validation."""

from __future__ import annotations

import difflib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from rollbackbot.adapters.git.route_yaml import SCHEMAS, edit_route
from rollbackbot.core.policy import Backends
from rollbackbot.core.traffic import Mirror, TrafficPlan
from rollbackbot.errors import PermanentError, PolicyError
from tests.canary.helpers import BACKENDS, GOLDEN, KIND_FILES, ROUTES, router

CRDS = Path(__file__).parents[1] / "fixtures" / "crds"
CRD_FILES = {
    "HTTPRoute": "gateway.networking.k8s.io_httproutes.v1.6.1.yaml",
    "VirtualService": "istio-1.29.6-virtualservice-destinationrule.yaml",
}
SHADOW = Mirror("chat-llm-v2-shadow", "ml-quarantine", None, 5, (("x-suspect", "1"),))
# (golden name, safe weight, mirror): every step of [25, 50, 100], then shadow on (plain, header match, 0.5 %)
CASES = [
    ("step-1-of-3", 25, None),
    ("step-2-of-3", 50, None),
    ("step-3-of-3", 100, None),
    ("shadow-on", 100, Mirror("chat-llm-v2-shadow", "ml-quarantine", None, 5)),
    ("shadow-on-header-match", 100, SHADOW),
    ("shadow-on-half-percent", 100, Mirror("chat-llm-v2-shadow", "ml-quarantine", None, 0.5)),
]


def _plan(safe: int, mirror: Mirror | None) -> TrafficPlan:
    return TrafficPlan(Backends.model_validate(BACKENDS), safe, mirror)


@cache
def _schema(kind: str) -> dict[str, Any]:
    for crd in yaml.safe_load_all((CRDS / CRD_FILES[kind]).read_text()):
        if crd and crd["spec"]["names"]["kind"] == kind:
            version = {"HTTPRoute": "v1", "VirtualService": "v1"}[kind]
            served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
            return dict(served["schema"]["openAPIV3Schema"])
    raise AssertionError(f"no CRD for {kind}")


def validate(kind: str, text: str) -> None:
    """Raise jsonschema.ValidationError unless the rendered object fits its CRD schema."""
    jsonschema.validate(yaml.safe_load(text), _schema(kind))


@pytest.mark.parametrize("kind", KIND_FILES)
@pytest.mark.parametrize(("name", "safe", "mirror"), CASES)
def test_each_step_renders_as_the_golden_file_and_fits_the_crd(
    kind: str, name: str, safe: int, mirror: Mirror | None
) -> None:
    rendered = edit_route((ROUTES / KIND_FILES[kind]).read_text(), router(kind), _plan(safe, mirror))
    golden = GOLDEN / f"{kind.lower()}-{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert rendered == golden.read_text()
    validate(kind, rendered)


@pytest.mark.parametrize("kind", KIND_FILES)
def test_a_weight_step_changes_only_the_weight_lines(kind: str) -> None:
    original = (ROUTES / KIND_FILES[kind]).read_text()
    rendered = edit_route(original, router(kind), _plan(50, None))
    changed = [
        line
        for line in difflib.unified_diff(original.splitlines(), rendered.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert sorted(line[0] + line[1:].strip() for line in changed) == [
        "+weight: 50",
        "+weight: 50",
        "-weight: 0",
        "-weight: 100",
    ]


@pytest.mark.parametrize("kind", KIND_FILES)
def test_removing_the_shadow_restores_the_completed_route_exactly(kind: str) -> None:
    original = (ROUTES / KIND_FILES[kind]).read_text()
    completed = edit_route(original, router(kind), _plan(100, None))
    shadowed = edit_route(completed, router(kind), _plan(100, SHADOW))
    assert shadowed != completed
    assert edit_route(shadowed, router(kind), _plan(100, None)) == completed


@pytest.mark.parametrize("kind", KIND_FILES)
def test_the_rule_can_be_named_or_indexed(kind: str) -> None:
    original = (ROUTES / KIND_FILES[kind]).read_text()
    assert edit_route(original, router(kind, rule=0), _plan(25, None)) == edit_route(
        original, router(kind, rule="chat"), _plan(25, None)
    )
    with pytest.raises(PolicyError, match="no rule named 'other'"):
        edit_route(original, router(kind, rule="other"), _plan(25, None))
    with pytest.raises(PolicyError, match="no rule 3"):
        edit_route(original, router(kind, rule=3), _plan(25, None))


def test_the_schema_check_catches_a_broken_route() -> None:
    # The validator must be able to fail: a weight above the CRD's maximum and a string percent.
    rendered = edit_route((ROUTES / "httproute.yaml").read_text(), router("HTTPRoute"), _plan(25, None))
    with pytest.raises(jsonschema.ValidationError):
        validate("HTTPRoute", rendered.replace("weight: 25", "weight: 1000001"))
    with pytest.raises(jsonschema.ValidationError):
        validate(
            "VirtualService", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {http: [{route: 5}]}\n"
        )


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ("  annotations:\n    argo-rollouts.argoproj.io/managed-by-rollouts: chat-llm\n", "Argo Rollouts manages"),
        (
            "  ownerReferences:\n    - {apiVersion: flagger.app/v1beta1, kind: Canary, name: chat-llm, uid: u1}\n",
            "Flagger generated",
        ),
    ],
)
def test_a_route_another_controller_owns_is_refused(metadata: str, reason: str) -> None:
    original = (ROUTES / "httproute.yaml").read_text().replace("  labels:\n", metadata + "  labels:\n", 1)
    with pytest.raises(PermanentError, match=reason):
        edit_route(original, router("HTTPRoute"), _plan(25, None))


def test_the_route_must_be_the_one_the_policy_names() -> None:
    original = (ROUTES / "httproute.yaml").read_text()
    with pytest.raises(PolicyError, match="kind is 'HTTPRoute'"):
        edit_route(original, router("VirtualService"), _plan(25, None))
    with pytest.raises(PolicyError, match="named 'other-route'"):
        edit_route(original.replace("name: chat-llm\n", "name: other-route\n", 1), router("HTTPRoute"), _plan(25, None))


def test_a_rule_with_a_backend_the_policy_does_not_name_is_refused() -> None:
    original = (ROUTES / "httproute.yaml").read_text().replace("- name: chat-llm-v2", "- name: chat-llm-v3")
    with pytest.raises(PolicyError, match="does not name: \\['chat-llm-v3'\\]"):
        edit_route(original, router("HTTPRoute"), _plan(25, None))


@pytest.mark.parametrize("kind", KIND_FILES)
def test_the_shipped_route_schemas_are_the_vendored_crds(kind: str) -> None:
    shipped = json.loads((SCHEMAS / f"{kind}.v1.json").read_text())
    assert shipped == _schema(kind)


def test_a_route_the_cluster_would_refuse_is_never_committed() -> None:
    broken = (ROUTES / "httproute.yaml").read_text().replace("request: 30s", "request: 30 seconds")
    with pytest.raises(PolicyError, match="would not fit its schema at spec.rules.0.timeouts.request"):
        edit_route(broken, router("HTTPRoute"), _plan(25, None))


@pytest.mark.parametrize("kind", ["HTTPRoute", "VirtualService"])
def test_an_edit_never_lowers_the_safe_weight_the_route_already_has(kind: str) -> None:
    at_50 = edit_route((ROUTES / KIND_FILES[kind]).read_text(), router(kind), _plan(50, None))
    assert edit_route(at_50, router(kind), _plan(50, None)) == at_50  # the same weight again: fine
    with pytest.raises(PolicyError, match="already gives 50% to chat-llm-v1; 25% would move traffic back"):
        edit_route(at_50, router(kind), _plan(25, None))
