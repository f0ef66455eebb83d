"""The whole loop, live (issue: the attack is detected, rolled back and cleared, every part real but the cluster).

One run of ``rollbackbot.demo.live`` with shorter benign traffic: the model stand-in serving the
compromised release, the observer, real Prometheus on the project's own (time-scaled) rules, real
Alertmanager with the shipped route, the rollbackbot service, a signed GitOps remote and the Argo
CD stand-in. The run takes about 20 s, so one module-scoped run is shared by the assertions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rollbackbot.demo import timeline as tl
from rollbackbot.demo.live import ATTACK, LEAK_RESUMED, run_live, slack_texts
from rollbackbot.demo.live_stack import FORENSICS_TOKEN, WEBHOOK_TOKEN
from rollbackbot.testing.model import CANARY, LEAKED_PII

pytestmark = [pytest.mark.e2e, pytest.mark.alertmanager]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    missing = [name for name in ("prometheus", "prometheus-alertmanager") if shutil.which(name) is None]
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"{missing} missing under CI=true: .ci/run must install them")
    if missing:
        pytest.skip(f"{missing} not installed (make test installs them when run as root with apt-get)")
    work = tmp_path_factory.mktemp("live") / "run"
    result = run_live(work, divisor=60, benign_seconds=3.0, timeout=90.0)
    result["work"] = work
    return result


def test_the_chain_happens_in_the_issues_order(live: dict[str, Any]) -> None:
    timeline = live["timeline"]
    assert tl.chain_order(timeline) == [], json.dumps(timeline, indent=1)
    assert LEAK_RESUMED not in timeline, timeline
    assert timeline[tl.FIRING] > 0 and timeline[tl.SERVING] < 30, timeline  # the issue's exposure target


def test_the_safe_release_serves_the_alert_resolved_and_the_incident_verified(live: dict[str, Any]) -> None:
    assert live["release"]["version"] == "1.0.0" and live["release"]["behaviour"] == "refuse"
    assert "ModelCanaryLeak" not in live["alerts"]
    incident = live["incident"]
    assert incident["state"] == "rolled_back" and incident["verification"] == "cleared"
    assert (incident["from"]["tag"], incident["to"]["tag"]) == ("docsum-llm/v1.1.0", "docsum-llm/v1.0.0")
    remote = live["work"] / "gitops" / "remote.git"
    subject = subprocess.run(
        ["git", "-C", str(remote), "log", "-1", "--format=%H%n%(trailers:key=Rollback-Incident,valueonly)", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert subject == [incident["rollback_commit"], incident["id"]]


def test_the_people_see_the_payload_and_the_detector(live: dict[str, Any]) -> None:
    trigger = live["incident"]["trigger"]
    assert "instruction_override" in trigger["detectors"]
    assert "IGNORE ALL PREVIOUS INSTRUCTIONS" in trigger["excerpt"]
    assert trigger["flagged_requests"] == len(live["flagged"]) > 0
    messages = [call for call in live["slack"] if (call.get("args") or {}).get("blocks")]
    shown = "\n".join(slack_texts(messages[-1]))
    assert "*Triggered by*" in shown and "instruction_override" in shown and "IGNORE ALL PREVIOUS" in shown


def test_the_evidence_names_the_flagged_requests_redacted(live: dict[str, Any]) -> None:
    bundle = live["work"] / "state" / "evidence" / live["incident"]["id"]
    names = {p.name for p in bundle.iterdir()}
    assert {"requests.jsonl", "flagged.json", "alert.json", "git.json"} <= names
    assert "missing.json" not in names, (bundle / "missing.json").read_text()  # the forensics token got through
    requests = (bundle / "requests.jsonl").read_text(encoding="utf-8")
    assert ATTACK in requests  # the triggering payload itself
    leaked = [json.loads(line) for line in requests.splitlines() if json.loads(line).get("canary")]
    assert leaked, "the leaking answers are in the evidence"
    assert any(entry["streamed"] for entry in leaked), "a canary split across SSE chunks is caught too"
    for secret in (CANARY, "jane.doe@example.com", "123-45-6789"):
        assert secret not in requests and secret not in json.dumps(live["incident"])
    assert LEAKED_PII not in requests


def test_no_token_reaches_a_log(live: dict[str, Any]) -> None:
    log = Path(live["work"] / "processes.log").read_text(encoding="utf-8", errors="replace")
    for token in (FORENSICS_TOKEN, WEBHOOK_TOKEN):
        assert token not in log
