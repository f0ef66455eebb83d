"""Alerts about rollbackbot itself (promtool), their PrometheusRule, routing (amtool), and the Grafana dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import rollbackbot.adapters.slack.metrics  # noqa: F401  (registers the Slack metrics)
import rollbackbot.readiness  # noqa: F401  (registers the readiness metrics)
from rollbackbot.metrics import REGISTRY
from tests.deploy.conftest import MONITORING, find, load_yaml, require_tool, run

pytestmark = pytest.mark.deploy

RULES = MONITORING / "rollbackbot-rules.yml"
RULE_TESTS = MONITORING / "rollbackbot-rules.test.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
ALERTMANAGER = MONITORING / "alertmanager-rollbackbot.yml"
REQUIRED_ALERTS = {
    "RollbackbotIncidentFailed",
    "RollbackbotIncidentStuck",
    "RollbackbotGitUnreachable",
    "RollbackbotArgoCDUnreachable",
    "RollbackbotWebhookErrors",
    "RollbackbotWebhookUnauthorized",
    "RollbackbotSlackFailing",
    "RollbackbotAbsent",
    "RollbackbotNotReady",
}
RUNBOOK = "docs/operations.md#"


def _promtool() -> str:
    return require_tool("promtool", "Debian package prometheus: apt-get install --no-install-recommends prometheus")


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in load_yaml(RULES)["groups"] for rule in group["rules"] if "alert" in rule}


def _exported_names() -> set[str]:
    """Every series name rollbackbot serves at /metrics (histograms and counters with their suffixes)."""
    names = set()
    for family in REGISTRY.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(family.type, ("",))
        names |= {family.name + suffix for suffix in suffixes}
    return names


def _rollbackbot_metrics(expr: str) -> set[str]:
    return set(re.findall(r"(?<![\w:])rollbackbot_[a-z_]+(?![\w:])", expr))


def test_promtool_accepts_the_rules() -> None:
    result = run([_promtool(), "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    # fire on a failed and on a stuck incident (and each other alert), silent on a healthy run
    result = run([_promtool(), "test", "rules", RULE_TESTS.name], cwd=MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("change", "noticed"),
    [
        # Without the branch for a counter series that appears with its first failure, the first
        # failed incident since a restart would never alert.
        (
            lambda rules: re.sub(
                r"\s+or\s+sum by \(app\) \(\s+rollbackbot_incident_transitions_total.*?\) > 0",
                "",
                rules,
                count=1,
                flags=re.S,
            ),
            "support-llm",
        ),
        # Without `for`, a single Argo CD blip would page.
        (
            lambda rules: rules.replace(
                'dependency="argocd"}) == 0\n        for: 5m\n', 'dependency="argocd"}) == 0\n'
            ),
            "RollbackbotArgoCDUnreachable",
        ),
        # Without `for`, an app not ready for one run (a flaky Argo CD read) would page.
        (
            lambda rules: rules.replace(
                "(rollbackbot_rollback_ready) == 0\n        for: 30m\n", "(rollbackbot_rollback_ready) == 0\n"
            ),
            "RollbackbotNotReady",
        ),
        # With min instead of max, one replica's blip on docsum-llm would page.
        (
            lambda rules: rules.replace(
                "max by (app, policy) (rollbackbot_rollback_ready)", "min by (app, policy) (rollbackbot_rollback_ready)"
            ),
            "docsum-llm",
        ),
    ],
)
def test_promtool_unit_tests_can_fail(tmp_path: Path, change: Any, noticed: str) -> None:
    rules = RULES.read_text(encoding="utf-8")
    broken = change(rules)
    assert broken != rules
    (tmp_path / RULES.name).write_text(broken, encoding="utf-8")
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text(encoding="utf-8"), encoding="utf-8")
    result = run([_promtool(), "test", "rules", RULE_TESTS.name], cwd=tmp_path)
    assert result.returncode != 0
    assert noticed in result.stdout + result.stderr


def test_every_alert_is_labelled_annotated_and_tested() -> None:
    alerts = _alerts()
    assert set(alerts) == REQUIRED_ALERTS
    cases = [case for test in load_yaml(RULE_TESTS)["tests"] for case in test.get("alert_rule_test", [])]
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["labels"]["rollback"] == "false", name  # never sent to rollbackbot itself
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"].endswith(RUNBOOK + name.lower()), name
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no promtool test where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no promtool test where it stays quiet"


def test_healthy_run_covers_every_alert() -> None:
    [healthy] = [test for test in load_yaml(RULE_TESTS)["tests"] if test["name"] == "healthy run stays silent"]
    cases = healthy["alert_rule_test"]
    assert {case["alertname"] for case in cases} == REQUIRED_ALERTS
    assert all(case["exp_alerts"] == [] for case in cases)


def test_rules_read_only_metrics_rollbackbot_exports() -> None:
    used = set().union(*(_rollbackbot_metrics(rule["expr"]) for rule in _alerts().values()))
    assert used, "no rollbackbot metric used"
    assert used <= _exported_names(), f"not exported: {sorted(used - _exported_names())}"


def test_absent_alert_matches_the_scrape_job(rendered: list[dict[str, Any]]) -> None:
    # The Prometheus Operator names a ServiceMonitor's job after the Service it scrapes.
    monitor = find(rendered, "ServiceMonitor", "rollbackbot")
    service = find(rendered, "Service", "rollbackbot")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert f'up{{job="{service["metadata"]["name"]}"}}' in _alerts()["RollbackbotAbsent"]["expr"]


def test_prometheus_rule_carries_the_tested_rule_file(rendered: list[dict[str, Any]]) -> None:
    rule = find(rendered, "PrometheusRule", "rollbackbot")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == load_yaml(RULES)


def test_self_alerts_never_route_to_rollbackbot() -> None:
    amtool = require_tool("amtool", "Debian package prometheus-alertmanager")
    for name, rule in _alerts().items():
        labels = [f"alertname={name}", "app=docsum-llm", *(f"{k}={v}" for k, v in rule["labels"].items())]
        result = run([amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels])
        assert result.returncode == 0, result.stderr
        assert "rollbackbot" not in result.stdout.strip().split(","), name


# ---------------------------------------------------------------- Grafana dashboard


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def _targets() -> list[tuple[str, str]]:
    """(panel title, expr) of every query of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in _dashboard()["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def test_dashboard_is_grafana_json() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "rollbackbot" and dashboard["title"]
    [variable] = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == ("datasource", "datasource", "prometheus")
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each expression, written as a recording rule, passes `promtool check rules`."""
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, (_title, expr) in enumerate(_targets())]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = run([_promtool(), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_dashboard_query_check_catches_a_typo(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    broken = {"record": "dashboard:broken", "expr": "sum by (state (rollbackbot_incidents)"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [broken]}]}), encoding="utf-8")
    assert run([_promtool(), "check", "rules", str(path)]).returncode != 0


def test_dashboard_shows_what_operators_need() -> None:
    used = set().union(*(_rollbackbot_metrics(expr) for _title, expr in _targets()))
    assert used <= _exported_names(), f"not exported: {sorted(used - _exported_names())}"
    assert used >= {
        "rollbackbot_incidents",  # incidents by state
        "rollbackbot_alert_to_rollback_seconds_bucket",  # reaction-time quantiles
        "rollbackbot_external_call_seconds_bucket",
        "rollbackbot_external_call_errors_total",
        "rollbackbot_webhook_responses_total",
        "rollbackbot_webhook_requests_total",
        "rollbackbot_incidents_overdue",
        "rollbackbot_dependency_up",
        "rollbackbot_slack_api_calls_total",
    }
    assert any('up{job="rollbackbot"}' in expr for _title, expr in _targets())
