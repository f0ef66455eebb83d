"""Alert rules (promtool), their fit with the shipped policies, and the Alertmanager route (amtool)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from rollbackbot.core.matchers import MatchOp
from rollbackbot.core.policy_select import resolve_target, select_policy
from rollbackbot.policy_files import load_policies
from tests.deploy.conftest import MONITORING, NAMESPACE, REPO, find, load_yaml, require_tool, run

pytestmark = pytest.mark.deploy

RULES = MONITORING / "model-anomaly-rules.yml"
RULE_TESTS = MONITORING / "model-anomaly-rules.test.yml"
ALERTMANAGER = MONITORING / "alertmanager-rollbackbot.yml"

# docs/model-signals.md: the observer's metrics; histograms as their _bucket/_sum/_count series.
OBSERVER_METRICS = {
    "model_observer_requests_total",
    "model_observer_responses_total",
    "model_observer_refusals_total",
    "model_observer_injection_detections_total",
    "model_observer_flagged_requests_total",
    "model_observer_output_pii_total",
    "model_observer_canary_leaks_total",
    "model_observer_feedback_errors_total",
    "model_observer_build_info",
} | {
    f"{histogram}_{suffix}"
    for histogram in (
        "model_observer_input_bytes",
        "model_observer_confidence",
        "model_observer_check_duration_seconds",
    )
    for suffix in ("bucket", "sum", "count")
}
# The anomalies issue 5 names, and the ones the shipped policies match on.
REQUIRED_ALERTS = {
    "ModelRefusalRateDrop",
    "PromptInjectionSpike",
    "ModelHighConfidenceMisclassification",
    "ModelFalseNegativeSpike",
    "GuardLayerLatencySpike",
    "ModelInputLengthAnomaly",
}


def _promtool() -> str:
    return require_tool("promtool", "Debian package prometheus: apt-get install --no-install-recommends prometheus")


def _amtool() -> str:
    return require_tool("amtool", "Debian package prometheus-alertmanager")


def _rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _expected_alerts() -> list[tuple[str, dict[str, str]]]:
    """(alertname, labels) of every alert the promtool tests expect to fire."""
    return [
        (case["alertname"], {"alertname": case["alertname"], **expected["exp_labels"]})
        for test in load_yaml(RULE_TESTS)["tests"]
        for case in test.get("alert_rule_test", [])
        for expected in case["exp_alerts"]
    ]


def test_promtool_accepts_the_rules() -> None:
    result = run([_promtool(), "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    # fire on the anomaly, quiet on steady traffic, quiet at low traffic, per alert
    result = run([_promtool(), "test", "rules", RULE_TESTS.name], cwd=MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Any) -> None:
    """Without the traffic guard the low-traffic endpoints alert, and the unit tests notice."""
    rules = RULES.read_text(encoding="utf-8")
    unguarded = re.sub(r"\) > 0\.1\n", ") > 0\n", rules)
    assert unguarded != rules
    (tmp_path / RULES.name).write_text(unguarded, encoding="utf-8")
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text(encoding="utf-8"), encoding="utf-8")
    result = run([_promtool(), "test", "rules", RULE_TESTS.name], cwd=tmp_path)
    assert result.returncode != 0
    assert "tiny" in result.stdout + result.stderr  # the low-traffic endpoints fired


def test_every_alert_is_labelled_annotated_and_tested() -> None:
    alerts = _alerts()
    assert set(alerts) >= REQUIRED_ALERTS
    tested = load_yaml(RULE_TESTS)["tests"]
    cases = [case for test in tested for case in test.get("alert_rule_test", [])]
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["labels"]["rollback"] in {"true", "false"}, name
        assert "{{ $labels.app }}" in rule["annotations"]["summary"], name
        # `app` comes from the endpoint label (label_replace in the recording rules or the alert).
        assert "app" not in rule["labels"], name
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no promtool test where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no promtool test where it stays quiet"
        for case in mine:
            for expected in case["exp_alerts"]:
                assert expected["exp_labels"]["app"] == expected["exp_labels"]["endpoint"], name


def test_rules_read_only_the_observer_metrics() -> None:
    used: set[str] = set()
    for rule in _rules():
        # not the recorded series (level:metric:operations), only raw metric names
        used |= set(re.findall(r"(?<![\w:])model_observer_[a-z_]+(?![\w:])", rule["expr"]))
    assert used, "no observer metric used"
    assert used <= OBSERVER_METRICS, f"not in docs/model-signals.md: {sorted(used - OBSERVER_METRICS)}"


def test_rollback_alerts_are_what_the_policies_match() -> None:
    policies = load_policies(REPO / "policies")
    alerts = _alerts()
    # Every alertname a policy names has a rule that routes to rollbackbot...
    for policy in policies:
        for matcher in policy.spec.matchers:
            if matcher.name != "alertname":
                continue
            names = [matcher.value] if matcher.op is MatchOp.EQ else matcher.value.split("|")
            assert matcher.op in {MatchOp.EQ, MatchOp.RE} and all(re.fullmatch(r"\w+", n) for n in names)
            for name in names:
                assert name in alerts, f"policy {policy.name} matches {name}, which no rule raises"
                assert alerts[name]["labels"]["rollback"] == "true", name
    # ...and every rollback alert, with the labels the promtool tests see on it, selects a
    # policy whose target is its app.
    for name, labels in _expected_alerts():
        if labels["rollback"] != "true":
            continue
        policy = select_policy(policies, labels)
        assert policy is not None, f"{name} {labels} matches no shipped policy"
        assert labels["app"] in resolve_target(policy, labels).apps


def test_alertmanager_config_is_valid() -> None:
    result = run([_amtool(), "check-config", str(ALERTMANAGER)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_routes_exactly_the_rollback_alerts_to_rollbackbot() -> None:
    amtool = _amtool()
    for name, rule in _alerts().items():
        labels = [f"alertname={name}", "app=docsum-llm", "endpoint=docsum-llm"]
        labels += [f"{key}={value}" for key, value in rule["labels"].items()]
        result = run([amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels])
        assert result.returncode == 0, result.stderr
        receivers = result.stdout.strip().split(",")
        assert ("rollbackbot" in receivers) == (rule["labels"]["rollback"] == "true"), (name, receivers)


def test_alertmanager_webhook_reaches_the_service(rendered: list[dict[str, Any]]) -> None:
    config = load_yaml(ALERTMANAGER)
    [route] = [r for r in config["route"]["routes"] if r["receiver"] == "rollbackbot"]
    assert route["matchers"] == ['rollback="true"']
    assert route["group_by"] == ["alertname", "app"]
    assert route["continue"] is True  # people are paged as well
    [receiver] = [r for r in config["receivers"] if r["name"] == "rollbackbot"]
    [webhook] = receiver["webhook_configs"]
    service = find(rendered, "Service", "rollbackbot")
    port = service["spec"]["ports"][0]["port"]
    assert webhook["url"] == f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{port}/webhook/alertmanager"
    assert webhook["send_resolved"] is True
    authorization = webhook["http_config"]["authorization"]
    assert authorization.get("type", "Bearer") == "Bearer"
    assert authorization["credentials_file"].startswith("/")
    assert "credentials" not in authorization  # no token in the configuration
