"""The canary's analysis against the real Prometheus server, scraping real counters over loopback.

An exporter serves the observer's request counter for three endpoints: a healthy safe release
(no 5xx), a failing one (half 5xx) and an idle one (no traffic: the ratio is 0/0 = NaN). The
step machine runs the PromQL of the policy against /usr/bin/prometheus, not a script.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rollbackbot.canary import CanaryState
from rollbackbot.core.policy import Policy
from tests.canary.helpers import canary_policy
from tests.canary.promserver import PROMETHEUS, exporter, prometheus_server
from tests.canary.rig import canary_rig

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="prometheus binary not installed"),
]
LABELS = {"alertname": "ModelRefusalRateDrop", "app": "chat-llm", "severity": "warning"}
# Per scrape: (requests, of which 5xx) added to the counters of each endpoint.
TRAFFIC = {"chat-llm-v1": (100, 0), "chat-llm-v1-broken": (100, 50), "chat-llm-v1-idle": (0, 0)}


def ratio(endpoint: str) -> str:
    """The safe release's 5xx ratio, as a policy writes it (docs/traffic.md)."""
    errors = f'sum(rate(model_observer_requests_total{{endpoint="{endpoint}",status_class="5xx"}}[10s]))'
    return f'{errors} / sum(rate(model_observer_requests_total{{endpoint="{endpoint}"}}[10s]))'


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    scrapes = itertools.count(1)
    lock = threading.Lock()

    def metrics() -> str:
        with lock:
            n = next(scrapes)
        lines = ["# TYPE model_observer_requests_total counter"]
        for endpoint, (total, errors) in TRAFFIC.items():
            lines.append(
                f'model_observer_requests_total{{endpoint="{endpoint}",status_class="2xx"}} {(total - errors) * n}'
            )
            lines.append(f'model_observer_requests_total{{endpoint="{endpoint}",status_class="5xx"}} {errors * n}')
        return "\n".join(lines) + "\n"

    with exporter(metrics) as target, prometheus_server(tmp_path_factory.mktemp("prometheus"), target) as url:
        # rate() needs two samples in its window: wait until every ratio has a value.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answers = [httpx.get(f"{url}/api/v1/query", params={"query": ratio(e)}).json() for e in TRAFFIC]
            if all(a["data"]["result"] for a in answers):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("prometheus never had two scrapes of the exporter")
        yield url


def _policy(query: str) -> Policy:
    analysis = {
        "prometheus": {"url": "http://prometheus.monitoring:9090"},
        "interval": "1s",
        "consecutiveSuccesses": 2,
        "queries": [{"name": "safe-5xx-ratio", "query": query, "max": 0.01}],
    }
    return canary_policy(analysis=analysis)


async def test_a_healthy_safe_release_passes_every_step(tmp_path: Path, prometheus: str) -> None:
    async with canary_rig(tmp_path, {}, prometheus_url=prometheus) as rig:
        outcome = await rig.rollout.run("inc-real-1", _policy(ratio("chat-llm-v1")), LABELS)
        assert outcome.state is CanaryState.completed
        assert [c["Rollback-Step"] for c in rig.step_commits()] == ["1/3", "2/3", "3/3"]
        assert sum("analysis passed: safe-5xx-ratio: ok (0)" in e for e in rig.events) == 4, rig.events


async def test_a_failing_safe_release_holds_at_the_first_step(tmp_path: Path, prometheus: str) -> None:
    async with canary_rig(tmp_path, {}, prometheus_url=prometheus) as rig:
        outcome = await rig.rollout.run("inc-real-2", _policy(ratio("chat-llm-v1-broken")), LABELS)
        assert outcome.state is CanaryState.held and outcome.safe_weight == 25
        assert "safe-5xx-ratio: 0.5 > max 0.01" in outcome.detail, outcome.detail
        assert [c["Rollback-Step"] for c in rig.step_commits()] == ["1/3"]


async def test_no_traffic_is_nan_and_an_unknown_metric_is_inconclusive_never_a_pass(
    tmp_path: Path, prometheus: str
) -> None:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": ratio("chat-llm-v1-idle")}).json()
    assert math.isnan(float(answer["data"]["result"][0]["value"][1]))  # what the real server says for 0/0
    async with canary_rig(tmp_path, {}, prometheus_url=prometheus) as rig:
        idle = await rig.rollout.run("inc-real-3", _policy(ratio("chat-llm-v1-idle")), LABELS)
        missing = await rig.rollout.run("inc-real-4", _policy(ratio("chat-llm-v9")), LABELS)
        assert idle.state is CanaryState.held and "NaN" in idle.detail, idle.detail
        assert missing.state is CanaryState.held and "step timeout: 0 of 2 passes" in missing.detail, missing.detail
        assert not any("analysis passed" in e for e in rig.events)
