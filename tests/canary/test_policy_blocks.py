"""trafficRouter, strategy and shadow are validated when a policy is loaded; the pure rules behind a step."""

from __future__ import annotations

import math
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from rollbackbot.core.analysis import QueryResult, Verdict, combine, judge_query, next_streak
from rollbackbot.core.policy import Backends, policy_json_schema
from rollbackbot.core.traffic import StepPosition, TrafficPlan, canary_steps, check_weights, parse_step
from rollbackbot.errors import PolicyError
from tests.canary.helpers import BACKENDS, canary_policy

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("steps must rise", {"steps": [50, 25, 100]}, "strictly increasing"),
    ("steps end at 100", {"steps": [25, 50]}, "end at 100"),
    ("no zero step", {"steps": [0, 100]}, "above 0"),
    ("canary needs analysis", {"analysis": None}, "needs an analysis block"),
    ("unknown onFailure", {"onFailure": "rollforward"}, "onFailure"),
    ("unknown key", {"stepsize": 5}, "stepsize"),
]


@pytest.mark.parametrize(("case", "strategy", "message"), REFUSED, ids=[c[0] for c in REFUSED])
def test_bad_strategies_are_refused_at_load(case: str, strategy: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        canary_policy(**strategy)


def _with(spec_changes: dict[str, Any]) -> None:
    document = canary_policy().model_dump(by_alias=True, mode="json")
    for dotted, value in spec_changes.items():
        node = document["spec"]
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        if value is None:
            node.pop(last)
        else:
            node[last] = value
    type(canary_policy()).from_document(document)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"shadow.percent": None}, "percent"),  # mirroring defaults to 100 % in both APIs: never implicit
        ({"shadow.percent": 0}, "greater than 0"),
        ({"shadow.percent": 101}, "less than or equal to 100"),
        ({"trafficRouter": None}, "need a trafficRouter"),
        ({"trafficRouter.backends": {"safe": "a", "compromised": "a"}}, "different backends"),
        ({"trafficRouter.kind": "Ingress"}, "HTTPRoute"),
        ({"trafficRouter.file": "../etc/route.yaml"}, "must not contain"),
        ({"strategy.analysis.queries": [{"name": "q", "query": "up"}]}, "exactly one of max or min"),
        ({"strategy.analysis.queries": [{"name": "q", "query": "up", "max": 1, "min": 0}]}, "exactly one of"),
        ({"strategy.analysis.consecutiveSuccesses": 0}, "greater than or equal to 1"),
        ({"approval": None}, "onFailure hold needs an approval block"),  # a held canary must ask someone
        ({"git": {"mode": "pull-request", "forge": "github", "repository": "acme/gitops"}}, "not supported"),
    ],
)
def test_bad_traffic_blocks_are_refused_at_load(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _with(changes)


def test_the_example_policy_loads() -> None:
    _with({})
    _with({"approval": None, "strategy.onFailure": "complete"})  # never holds: nobody needs to be asked


def test_critical_alerts_go_instant_by_default_and_instant_policies_have_one_step() -> None:
    policy = canary_policy()
    assert canary_steps(policy.spec.strategy, {"severity": "warning"}) == (25, 50, 100)
    assert canary_steps(policy.spec.strategy, {"severity": "critical"}) == (100,)
    custom = canary_policy(instantWhen=['team = "secops"'])
    assert canary_steps(custom.spec.strategy, {"severity": "critical"}) == (25, 50, 100)
    assert canary_steps(custom.spec.strategy, {"team": "secops"}) == (100,)
    assert canary_steps(canary_policy(type="instant").spec.strategy, {}) == (100,)


def test_weights_are_integers_summing_to_100_and_read_as_trailers() -> None:
    backends = Backends.model_validate(BACKENDS)
    assert TrafficPlan(backends, 25).weights_trailer() == "chat-llm-v1=25,chat-llm-v2=75"
    for bad in ({"a": 50, "b": 49}, {"a": 0, "b": 0}, {"a": -10, "b": 110}):
        with pytest.raises(PolicyError):
            check_weights(bad)
    with pytest.raises(ValueError, match="not a percentage"):
        TrafficPlan(backends, 101)
    assert parse_step("2/4") == StepPosition(2, 4)
    assert parse_step("5/4") is None and parse_step("two/4") is None


@pytest.mark.parametrize(
    ("values", "maximum", "minimum", "verdict"),
    [
        ((), 0.01, None, Verdict.inconclusive),  # no data is never a pass
        ((0.001, 0.009), 0.01, None, Verdict.passed),
        ((0.001, 0.02), 0.01, None, Verdict.failed),  # any series over the threshold fails
        ((math.nan,), 0.01, None, Verdict.failed),
        ((0.5,), None, 0.2, Verdict.passed),
        ((0.1,), None, 0.2, Verdict.failed),
        ((0.01,), 0.01, None, Verdict.passed),  # the threshold itself passes
    ],
)
def test_judging_one_query(
    values: tuple[float, ...], maximum: float | None, minimum: float | None, verdict: Verdict
) -> None:
    assert judge_query(QueryResult("q", values), maximum, minimum)[0] is verdict


def test_a_run_fails_on_any_failure_and_only_passes_count_toward_the_streak() -> None:
    assert combine([Verdict.passed, Verdict.failed, Verdict.inconclusive]) is Verdict.failed
    assert combine([Verdict.passed, Verdict.inconclusive]) is Verdict.inconclusive
    assert combine([Verdict.passed, Verdict.passed]) is Verdict.passed
    assert next_streak(2, Verdict.passed) == 3
    assert next_streak(2, Verdict.inconclusive) == 0


def test_the_json_schema_also_asks_a_holding_canary_for_an_approval_block() -> None:
    validator = jsonschema.Draft202012Validator(policy_json_schema())
    document = canary_policy().model_dump(by_alias=True, mode="json", exclude_none=True)
    assert list(validator.iter_errors(document)) == []
    del document["spec"]["approval"]
    assert any("'approval' is a required property" in e.message for e in validator.iter_errors(document))
    document["spec"]["strategy"]["onFailure"] = "complete"
    assert list(validator.iter_errors(document)) == []
