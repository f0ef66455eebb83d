"""The demo's third act: a canary rollback of the support LLM, 25 → 50 → 100 %, then a shadow.

A GitOps sandbox of its own holds support-llm's HTTPRoute with all traffic on the compromised
release. The canary step machine (``rollbackbot.canary``) writes one commit per step through the
real git adapter, the Argo CD stand-in syncs each step, and a scripted Prometheus HTTP API answers
the analysis queries (one inconclusive answer shows that "no data" is never a pass). At 100 % the
sandbox and the mirror go in, 2 % of flagged requests to the quarantined copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from pydantic import SecretStr

from rollbackbot.adapters.argocd.client import ArgoCDClient
from rollbackbot.adapters.git.repo import GitOpsRepository
from rollbackbot.adapters.git.route_commit import RouteCommitter
from rollbackbot.adapters.prometheus import PrometheusClient
from rollbackbot.canary import CanaryRollout, CanaryState
from rollbackbot.core.policy import Analysis, Policy
from rollbackbot.testing.argocd import FakeArgoState, create_app, get_state
from rollbackbot.testing.argocd.config import FakeArgoConfig, make_token
from rollbackbot.testing.gitops import AppSpec, GitOpsSandbox, Release, build_sandbox
from rollbackbot.testing.prometheus import ScriptedPrometheus

APP = "support-llm"
ROUTE_FILE = f"apps/{APP}/route.yaml"
QUERY = (
    'sum(rate(model_observer_requests_total{endpoint="support-llm-stable",status_class="5xx"}[1m]))'
    ' / sum(rate(model_observer_requests_total{endpoint="support-llm-stable"}[1m]))'
)
FLAGGED = (
    'sum(rate(model_observer_flagged_requests_total{endpoint="support-llm-stable",direction="output"}[5m]))'
    ' / sum(rate(model_observer_responses_total{endpoint="support-llm-stable"}[5m]))'
)
IMAGE = f"registry.example/{APP}@sha256:" + "c0" * 32  # the compromised release's digest
TOKEN = make_token("proj:ml-prod:rollbackbot")

ROUTE = """\
# support-llm public route; rollbackbot moves the weights of rule "chat" during a canary rollback.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: support-llm
  namespace: ml-prod
spec:
  parentRefs:
    - name: public-gateway
      namespace: gateway-system
  rules:
    - name: chat
      backendRefs:
        - name: support-llm-stable      # 1.1.0, the release rolled back to
          port: 8000
          weight: 0
        - name: support-llm-candidate   # 1.2.0, guardrails bypassed
          port: 8000
          weight: 100
"""


def policy() -> Policy:
    """The act's policy: policies/25-support-llm-injection-canary.yaml, with demo-sized waits.

    Kept inline because an installed package has no ``policies/`` directory; a test holds the two equal.
    """
    return Policy.from_document(
        {
            "apiVersion": "rollbackbot/v1",
            "kind": "RollbackPolicy",
            "metadata": {"name": "support-llm-injection-canary"},
            "spec": {
                "matchers": [
                    'alertname =~ "PromptInjectionSpike|ModelOutputPIILeak|ModelCanaryLeak"',
                    f'app = "{APP}"',
                ],
                "target": {"argocdApps": [APP], "project": "ml-prod", "paths": [f"apps/{APP}"], "tags": f"{APP}/v*"},
                "mode": "auto",
                "sync": {"timeout": "30s"},
                "trafficRouter": {
                    "kind": "HTTPRoute",
                    "file": ROUTE_FILE,
                    "name": APP,
                    "rule": "chat",
                    "backends": {"safe": "support-llm-stable", "compromised": "support-llm-candidate"},
                },
                "strategy": {
                    "type": "canary",
                    "steps": [25, 50, 100],
                    "pause": "100ms",
                    "stepTimeout": "10s",
                    "onFailure": "hold",
                    "instantWhen": ['alertname = "ModelCanaryLeak"'],
                    "analysis": {
                        "prometheus": {"url": "http://prometheus.monitoring:9090"},
                        "interval": "100ms",
                        "consecutiveSuccesses": 2,
                        "queries": [
                            {"name": "safe-5xx-ratio", "query": QUERY, "max": 0.01},
                            {"name": "safe-flagged-output-ratio", "query": FLAGGED, "max": 0.02},
                        ],
                    },
                },
                "shadow": {
                    "percent": 2,
                    "match": {"x-suspect": "1"},
                    "sandbox": {"namespace": "ml-quarantine", "name": "support-llm-shadow", "replicas": 1},
                    "ttl": "72h",
                },
                "approval": {"channel": "C0ML0NCALL", "approvers": ["U012ABC", "S0SECOPS"], "timeout": "30m"},
            },
        }
    )


def _say(text: str = "") -> None:
    print(text, flush=True)


async def _controller(state: FakeArgoState) -> None:
    while True:  # the stand-in's controller moves when time is advanced in-process
        state.advance(0.05)
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def _argocd(sandbox: GitOpsSandbox) -> AsyncIterator[ArgoCDClient]:
    apps = [{"name": APP, "project": "ml-prod", "path": f"apps/{APP}", "autoSync": False}]
    app = create_app(FakeArgoConfig(token=TOKEN, repo=str(sandbox.remote_path), apps=apps, reconcileInterval=0))
    ticker = asyncio.create_task(_controller(get_state(app)))
    client = ArgoCDClient("http://argocd", SecretStr(TOKEN), transport=httpx.ASGITransport(app=app), poll_interval=0.02)
    try:
        yield client
    finally:
        ticker.cancel()
        await client.aclose()


async def canary_act(work: Path) -> int:
    """Run the canary scenario; 0 when all traffic ends on the safe release and the shadow is on."""
    started = time.monotonic()
    sandbox = build_sandbox(work / "canary-gitops", [AppSpec(APP, [Release("1.1.0"), Release("1.2.0")])])
    sandbox.commit_paths({ROUTE_FILE: ROUTE}, f"{APP}: public route")
    head_before = sandbox.head()
    _say(f'\n10. canary rollback: PromptInjectionSpike{{app="{APP}", severity="critical"}}, route {ROUTE_FILE}')
    # One empty answer between passes: inconclusive, so the streak starts again.
    prometheus = ScriptedPrometheus(
        {QUERY: [0.002, 0.001, None, 0.003, 0.002, 0.001], FLAGGED: [0.004, 0.003, 0.002, 0.002, 0.001, 0.001]}
    )
    clients: list[PrometheusClient] = []

    def queries(analysis: Analysis) -> PrometheusClient:
        clients.append(PrometheusClient(analysis.prometheus.url, transport=prometheus.transport()))
        return clients[-1]

    repo = GitOpsRepository(sandbox.remote_url, sandbox.branch, work / "canary-clone", sandbox.allowed_signers)
    async with _argocd(sandbox) as argocd:
        rollout = CanaryRollout(
            steps_log=RouteCommitter(repo),
            argocd=argocd,
            queries=queries,
            record=lambda _incident, detail: _say(f"    +{time.monotonic() - started:6.2f}s  {detail}"),
        )
        labels = {"alertname": "PromptInjectionSpike", "app": APP, "severity": "critical"}
        outcome = await rollout.run("demo-canary", policy(), labels)
        _say(f"\n11. {APP} at 100 % on the safe release; shadowing 2 % of x-suspect requests to ml-quarantine")
        await rollout.shadow_on("demo-canary", policy(), labels, image=IMAGE, proxy_namespace="gateway-system")
    for client in clients:
        await client.aclose()
    log = sandbox.git("log", "--reverse", "--format=   %h %s", f"{head_before}..{sandbox.branch}")
    _say(f"\n12. the deploy branch, one commit per step:\n{log}")
    route = sandbox.show(sandbox.branch, ROUTE_FILE)
    ok = outcome.state is CanaryState.completed and "support-llm-shadow" in route
    _say(f"\n{'OK' if ok else 'FAILED'}: canary {outcome.state.value}; {time.monotonic() - started:.1f}s for this act")
    return 0 if ok else 1
