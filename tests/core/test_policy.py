"""The RollbackPolicy model (docs/policies.md), policy selection and target substitution."""

from __future__ import annotations

import copy
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from rollbackbot.core import policy_select
from rollbackbot.core.matchers import Matcher, MatchOp
from rollbackbot.core.model import ResolvedTarget, target_from_dict, target_to_dict
from rollbackbot.core.policy import (
    OnTimeout,
    Policy,
    PolicyMode,
    format_duration,
    parse_duration,
    policy_json_schema,
)
from rollbackbot.core.policy_select import policy_matches, resolve_target, select_policy
from rollbackbot.errors import AlertRefused

CASES = Path(__file__).parent / "cases"


def document(**spec: Any) -> dict[str, Any]:
    """A minimal valid policy document; keyword arguments replace keys of ``spec``."""
    base: dict[str, Any] = {
        "apiVersion": "rollbackbot/v1",
        "kind": "RollbackPolicy",
        "metadata": {"name": "fraud-llm-security"},
        "spec": {
            "matchers": ['alertname =~ "ModelRefusalRateDrop|PromptInjectionSpike"', 'app = "fraud-llm"'],
            "target": {
                "argocdApps": ["fraud-llm"],
                "project": "ml-prod",
                "paths": ["apps/fraud-llm"],
                "tags": "fraud-llm/v*",
            },
            "mode": "auto",
        },
    }
    base["spec"].update(spec)
    return base


def target(**fields: Any) -> dict[str, Any]:
    return {**document()["spec"]["target"], **fields}


def errors_of(doc: dict[str, Any]) -> list[tuple[tuple[int | str, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        Policy.from_document(doc)
    return [(e["loc"], e["msg"]) for e in caught.value.errors()]


def test_defaults_are_the_documented_ones() -> None:
    spec = Policy.from_document(document()).spec
    assert spec.target.require_trailers == ("Model-Digest", "Data-Version")
    assert (spec.debounce, spec.cooldown) == (timedelta(0), timedelta(minutes=30))
    assert (spec.budget.max, spec.budget.per) == (3, timedelta(hours=24))
    assert spec.approval is None
    assert (spec.sync.timeout, spec.sync.prune) == (timedelta(minutes=5), True)
    assert (spec.forensics.requests_url, spec.forensics.snapshot_url) == (None, None)
    assert (spec.forensics.budget, spec.forensics.required) == (timedelta(seconds=10), False)
    assert spec.verify.within == timedelta(minutes=10)


def test_the_design_example_parses_to_snake_case_attributes() -> None:
    doc = document(
        debounce="60s",
        budget={"max": 5, "per": "12h"},
        approval={"channel": "C0ML0NCALL", "approvers": ["U012ABC", "S0SECOPS", "W0ENT"], "onTimeout": "rollback"},
        forensics={"requestsUrl": "http://model-observer:9100/forensics/requests?limit=1000", "required": True},
        sync={"timeout": "90s", "prune": False},
    )
    policy = Policy.from_document(doc, source="10-fraud.yaml", index=2)
    assert (policy.name, policy.source, policy.index) == ("fraud-llm-security", "10-fraud.yaml", 2)
    assert policy.spec.matchers[1] == Matcher("app", MatchOp.EQ, "fraud-llm")
    assert policy.spec.target.argocd_apps == ("fraud-llm",)
    assert policy.spec.mode is PolicyMode.auto
    assert policy.spec.debounce == timedelta(seconds=60)
    assert policy.spec.approval is not None and policy.spec.approval.on_timeout is OnTimeout.rollback
    assert policy.spec.forensics.requests_url == "http://model-observer:9100/forensics/requests?limit=1000"
    assert (policy.spec.sync.timeout, policy.spec.sync.prune) == (timedelta(seconds=90), False)


def test_dump_uses_the_file_syntax_and_validates_again() -> None:
    policy = Policy.from_document(document(debounce="1h30m", approval={"channel": "C1X", "approvers": ["U1X"]}))
    dumped = policy.model_dump(mode="json")
    assert dumped["spec"]["debounce"] == "1h30m"
    assert dumped["spec"]["target"]["argocdApps"] == ["fraud-llm"]
    assert dumped["spec"]["matchers"][1] == 'app = "fraud-llm"'
    assert Policy.from_document(dumped) == policy


def test_policies_are_frozen() -> None:
    policy = Policy.from_document(document())
    with pytest.raises(ValidationError):
        policy.spec.mode = PolicyMode.notify  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0s", timedelta(0)),
        ("500ms", timedelta(milliseconds=500)),
        ("60s", timedelta(seconds=60)),
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1m30ms", timedelta(minutes=1, milliseconds=30)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "0", "60", "s", "1.5s", "-1s", "1h1h", "30m1h", "1 h", "5 m", "PT5M", "1y", "99999999999999999999w"]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**12))
def test_format_duration_round_trips(millis: int) -> None:
    value = timedelta(milliseconds=millis)
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize(
    ("spec", "loc", "message"),
    [
        ({"debounce": 60}, ("spec", "debounce"), "must be a string"),
        ({"cooldown": "30 minutes"}, ("spec", "cooldown"), "invalid duration"),
        ({"sync": {"timeout": "0s"}}, ("spec", "sync", "timeout"), "longer than 0s"),
        ({"budget": {"max": 0}}, ("spec", "budget", "max"), "greater than or equal to 1"),
        ({"budget": {"max": "3"}}, ("spec", "budget", "max"), "valid integer"),
        ({"budget": {"max": True}}, ("spec", "budget", "max"), "valid integer"),
        ({"sync": {"prune": "yes"}}, ("spec", "sync", "prune"), "valid boolean"),
        ({"mode": "automatic"}, ("spec", "mode"), "'auto', 'propose' or 'notify'"),
        ({"matchers": []}, ("spec", "matchers"), "at least 1"),
        ({"matchers": ["app"]}, ("spec", "matchers", 0), "invalid matcher"),
        ({"matchers": [{"app": "x"}]}, ("spec", "matchers", 0), "must be a string"),
        ({"mode": "propose"}, ("spec",), "mode propose needs an approval block"),
        (
            {"approval": {"channel": "#ml-oncall", "approvers": ["U1X"]}},
            ("spec", "approval", "channel"),
            "Slack channel ID",
        ),
        ({"approval": {"channel": "C1X", "approvers": ["alice"]}}, ("spec", "approval", "approvers", 0), "Slack user"),
        ({"approval": {"channel": "C1X", "approvers": []}}, ("spec", "approval", "approvers"), "at least 1"),
        (
            {"approval": {"channel": "C1X", "approvers": ["U1X"], "onTimeout": "approve"}},
            ("spec", "approval", "onTimeout"),
            "'expire' or 'rollback'",
        ),
        ({"forensics": {"requestsUrl": "file:///etc/passwd"}}, ("spec", "forensics", "requestsUrl"), "http(s) URL"),
        ({"verify": {"within": "10m", "after": "1m"}}, ("spec", "verify", "after"), "Extra inputs"),
        ({"target": target(argocd_apps=["x"])}, ("spec", "target", "argocd_apps"), "Extra inputs"),
        ({"target": target(argocdApps=[])}, ("spec", "target", "argocdApps"), "at least 1"),
        ({"target": target(argocdApps=["a/b"])}, ("spec", "target", "argocdApps", 0), "Argo CD application name"),
        ({"target": target(project="${labels.project}")}, ("spec", "target", "project"), "not a valid name"),
        ({"target": target(paths=[])}, ("spec", "target", "paths"), "at least 1"),
        ({"target": target(paths=["/apps/x"])}, ("spec", "target", "paths", 0), "no leading '/'"),
        ({"target": target(paths=["apps/../x"])}, ("spec", "target", "paths", 0), "'..'"),
        ({"target": target(paths=[".."])}, ("spec", "target", "paths", 0), "'..'"),
        ({"target": target(paths=["apps//x"])}, ("spec", "target", "paths", 0), "empty segments"),
        ({"target": target(paths=["apps/x/"])}, ("spec", "target", "paths", 0), "empty segments"),
        ({"target": target(paths=["apps/x y"])}, ("spec", "target", "paths", 0), "repository path"),
        ({"target": target(tags="fraud llm/v*")}, ("spec", "target", "tags"), "glob"),
        ({"target": target(requireTrailers=["Model Digest"])}, ("spec", "target", "requireTrailers", 0), "trailer"),
        ({"target": target(allowDelete="yes")}, ("spec", "target", "allowDelete"), "valid boolean"),
        ({"target": target(allow_delete=True)}, ("spec", "target", "allow_delete"), "Extra inputs"),
    ],
)
def test_invalid_spec(spec: dict[str, Any], loc: tuple[int | str, ...], message: str) -> None:
    errors = errors_of(document(**spec))
    assert any(found == loc and message in msg for found, msg in errors), errors


@pytest.mark.parametrize(
    "template",
    ["${app}", "${labels.}", "${labels.a-b}", "${env.HOME}", "${labels.app", "${ labels.app }", "$${labels.app}"],
)
def test_only_label_placeholders_may_be_substituted(template: str) -> None:
    errors = errors_of(document(target=target(argocdApps=[template])))
    assert errors and errors[0][0] == ("spec", "target", "argocdApps", 0)


def test_approval_is_optional_outside_propose() -> None:
    assert Policy.from_document(document(mode="notify")).spec.approval is None


@pytest.mark.parametrize(
    ("key", "value", "loc"),
    [
        ("apiVersion", "rollbackbot/v2", ("apiVersion",)),
        ("kind", "Deployment", ("kind",)),
        ("metadata", {"name": "Fraud_LLM"}, ("metadata", "name")),
        ("metadata", {"name": "-fraud"}, ("metadata", "name")),
        ("metadata", {"name": "a" * 64}, ("metadata", "name")),
        ("metadata", {"name": "fraud", "labels": {}}, ("metadata", "labels")),
        ("status", {}, ("status",)),
        ("source", "elsewhere.yaml", ("source",)),
    ],
)
def test_invalid_header(key: str, value: Any, loc: tuple[str, ...]) -> None:
    doc = document()
    doc[key] = value
    assert loc in [found for found, _ in errors_of(doc)]


# --- selection ---------------------------------------------------------------------------------


def named(name: str, source: str, index: int, *matchers: str) -> Policy:
    doc = document(matchers=list(matchers))
    doc["metadata"]["name"] = name
    return Policy.from_document(doc, source=source, index=index)


def test_first_match_by_file_name_then_position() -> None:
    late = named("late", "20-b.yaml", 0, 'app = "x"')
    second = named("second", "10-a.yaml", 1, 'app = "x"')
    first = named("first", "10-a.yaml", 0, 'app = "x"', 'alertname = "A"')
    policies = [late, second, first]
    assert select_policy(policies, {"app": "x", "alertname": "A"}) is first
    assert select_policy(policies, {"app": "x", "alertname": "B"}) is second
    assert select_policy(policies[:1], {"app": "x"}) is late
    assert select_policy(policies, {"app": "y"}) is None
    assert select_policy([], {"app": "x"}) is None


def test_every_matcher_must_hold() -> None:
    policy = Policy.from_document(document())
    assert policy_matches(policy, {"alertname": "PromptInjectionSpike", "app": "fraud-llm"})
    assert not policy_matches(policy, {"alertname": "PromptInjectionSpike", "app": "fraud-llm-2"})


# --- substitution --------------------------------------------------------------------------------


def _substitution_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load((CASES / "substitution.yaml").read_text(encoding="utf-8"))
    return cases


@pytest.mark.parametrize("case", _substitution_cases(), ids=lambda case: case["name"])
def test_substitution(case: dict[str, Any]) -> None:
    policy = Policy.from_document(document(target=target(**case["target"])))
    if "refused" in case:
        with pytest.raises(AlertRefused) as caught:
            resolve_target(policy, case["labels"])
        message = str(caught.value)
        for fragment in case["refused"]:
            assert fragment in message
        assert not re.search(r"[\x00-\x1f\x7f\u202e]", message), "control characters echoed raw"
        return
    expected = case["resolved"]
    assert resolve_target(policy, case["labels"]) == ResolvedTarget(
        apps=tuple(expected["apps"]),
        project="ml-prod",
        paths=tuple(expected["paths"]),
        tag_pattern=expected["tag_pattern"],
    )


def test_resolved_target_carries_project_and_trailers() -> None:
    policy = Policy.from_document(document(target=target(requireTrailers=["Model-Digest"])))
    resolved = resolve_target(policy, {})
    assert (resolved.app, resolved.project, resolved.require_trailers) == ("fraud-llm", "ml-prod", ("Model-Digest",))


def test_allow_delete_is_off_unless_the_policy_says_so() -> None:
    assert Policy.from_document(document()).spec.target.allow_delete is False
    assert resolve_target(Policy.from_document(document()), {}).allow_delete is False
    allowing = Policy.from_document(document(target=target(allowDelete=True)))
    resolved = resolve_target(allowing, {})
    assert resolved.allow_delete is True
    assert target_from_dict(target_to_dict(resolved)) == resolved  # survives the incident record
    schema = policy_json_schema()["$defs"]["Target"]["properties"]["allowDelete"]
    assert schema["default"] is False and "delete" in schema["description"]


def test_long_values_are_cut_in_the_refusal() -> None:
    policy = Policy.from_document(document(target=target(argocdApps=["${labels.app}"])))
    with pytest.raises(AlertRefused, match=r"\(100000 chars\)") as caught:
        resolve_target(policy, {"app": "/" * 100_000})
    assert len(str(caught.value)) < 300


def test_joined_path_is_checked_even_if_the_value_check_were_loosened(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = Policy.from_document(document(target=target(paths=["apps/${labels.app}"])))
    monkeypatch.setattr(policy_select, "SAFE_VALUE", re.compile(r".*"))
    with pytest.raises(AlertRefused, match="resolved path 'apps//etc'"):
        resolve_target(policy, {"app": "/etc"})


# --- JSON schema ------------------------------------------------------------------------------


def test_json_schema_accepts_valid_and_rejects_invalid_documents() -> None:
    schema = policy_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(document()))
    bad = copy.deepcopy(document(mode="propose"))
    bad["spec"]["cooldown"] = "30 minutes"
    bad["spec"]["target"]["argocd_apps"] = ["x"]
    messages = " | ".join(error.message for error in validator.iter_errors(bad))
    assert "'approval' is a required property" in messages
    assert "'30 minutes' does not match" in messages
    assert "'argocd_apps' was unexpected" in messages


def test_json_schema_defaults_use_the_file_syntax() -> None:
    defs = policy_json_schema()["$defs"]
    assert defs["Spec"]["properties"]["cooldown"]["default"] == "30m"
    assert defs["Budget"]["properties"]["per"]["default"] == "24h"
    assert policy_json_schema()["properties"]["apiVersion"]["const"] == "rollbackbot/v1"
