"""The scripted Prometheus answers like the real one (/usr/bin/prometheus on loopback), and the client reads both."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollbackbot.adapters.prometheus import PrometheusClient
from rollbackbot.errors import PermanentError
from rollbackbot.testing.prometheus import ScriptedPrometheus, format_value, query_body
from tests.canary.promserver import PROMETHEUS, prometheus_server

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="prometheus binary not installed"),
]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prometheus_server(tmp_path_factory.mktemp("prometheus")) as url:
        yield url


def _shape(value: Any) -> Any:
    """Keys and value types, not values: what a client depends on."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items()) if k not in {"warnings", "infos"}}
    if isinstance(value, list):
        return [_shape(v) for v in value[:1]]
    return type(value).__name__


@pytest.mark.parametrize(
    ("promql", "answer"),
    [
        ("vector(0.25)", 0.25),
        ("vector(3)", 3.0),
        ("vector(0) / 0", math.nan),
        ("vector(1) / 0", math.inf),
        ("no_such_metric_anywhere", None),
        ("sum(", "error"),
    ],
)
def test_the_stand_in_answers_with_prometheus_shape_and_values(prometheus: str, promql: str, answer: Any) -> None:
    real = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql})
    status, fake = query_body(answer, 1.0)
    assert real.status_code == status
    body = real.json()
    assert _shape(fake) == _shape(body)
    if answer not in (None, "error"):
        assert body["data"]["result"][0]["value"][1] == format_value(answer)


@pytest.mark.parametrize("promql", ["vector(0.25)", "vector(0) / 0", "no_such_metric_anywhere"])
async def test_the_client_reads_the_real_server_and_the_stand_in_alike(prometheus: str, promql: str) -> None:
    real = PrometheusClient(prometheus)
    real_values = (await real.query("q", promql)).values
    await real.aclose()
    expected = {"vector(0.25)": 0.25, "vector(0) / 0": math.nan, "no_such_metric_anywhere": None}[promql]
    fake = PrometheusClient("http://prometheus:9090", transport=ScriptedPrometheus({promql: [expected]}).transport())
    fake_values = (await fake.query("q", promql)).values
    await fake.aclose()
    assert str(real_values) == str(fake_values)


async def test_a_promql_error_is_permanent(prometheus: str) -> None:
    client = PrometheusClient(prometheus)
    with pytest.raises(PermanentError, match="bad_data"):
        await client.query("broken", "sum(")
    await client.aclose()
