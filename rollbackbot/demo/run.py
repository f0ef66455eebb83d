"""``rollbackbot demo``: the whole loop on an embedded sandbox, on loopback, in a few seconds.

A real GitOps repository with ssh-signed release tags, the fake Argo CD API server and the real
service run as processes; an alert is delivered exactly as Alertmanager sends it, and the
timeline, the rollback commit and the final health are printed. The service serves the incident
pages (docs/ui.md); the demo ends by printing their URL, and with ``--serve`` keeps every process
running until interrupted (Ctrl-C or SIGTERM) so the pages can be browsed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from rollbackbot import procs
from rollbackbot.core.incidents import TERMINAL_STATES
from rollbackbot.demo import propose as demo_propose
from rollbackbot.demo import readiness as demo_readiness
from rollbackbot.testing import slack as fake_slack
from rollbackbot.testing.alertmanager import alert, notification
from rollbackbot.testing.gitops import AppSpec, Release, build_sandbox

APP = "docsum-llm"
WEBHOOK_TOKEN = "demo-webhook-token-0123456789abcdef"
ARGOCD_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwcm9qOm1sLXByb2Q6cm9sbGJhY2tib3QifQ.ZGVtbw"
TERMINAL = {state.value for state in TERMINAL_STATES}

EMBEDDED_POLICY = """\
apiVersion: rollbackbot/v1
kind: RollbackPolicy
metadata: {name: docsum-llm-injection}
spec:
  matchers: ['alertname =~ "PromptInjectionSpike|ModelCanaryLeak|ModelOutputPIILeak"', 'app = "docsum-llm"']
  target: {argocdApps: [docsum-llm], project: ml-prod, paths: [apps/docsum-llm], tags: "docsum-llm/v*"}
  mode: auto
  sync: {timeout: 1m, prune: true}
"""


def _policies_dir(work: Path) -> Path:
    shipped = Path("policies")
    if shipped.is_dir() and any(shipped.glob("*.yaml")):
        return shipped.resolve()
    embedded = work / "policies"
    embedded.mkdir(exist_ok=True)
    (embedded / "10-docsum-llm-injection.yaml").write_text(EMBEDDED_POLICY)
    (embedded / "20-support-llm-refusal.yaml").write_text(demo_propose.EMBEDDED_POLICY)
    (embedded / "30-badge-vision-access.yaml").write_text(demo_readiness.EMBEDDED_POLICY)
    return embedded


def _say(text: str = "") -> None:
    print(text, flush=True)


def _build(work: Path) -> Any:
    return build_sandbox(
        work / "gitops",
        [
            AppSpec(
                APP,
                [
                    Release("1.0.0"),
                    Release("1.1.0"),
                    Release("1.2.0", signed=False),  # never signed: must be skipped
                    Release("1.3.0", health="Degraded"),  # deployed now, and compromised
                ],
            ),
            demo_propose.releases(),
            demo_readiness.releases(),
        ],
    )


def _print_timeline(events: list[dict[str, Any]], shown: int, t0: datetime) -> int:
    for event in events[shown:]:
        at = datetime.fromisoformat(event["at"].replace("Z", "+00:00"))
        offset = (at - t0).total_seconds()
        label = event["state"]
        for step in ("plan", "evidence"):
            if event["detail"].startswith(step):
                label = step
        _say(f"  +{offset:7.3f}s  {label:<18} {event['detail']}")
    return len(events)


async def run_demo(workdir: Path | None = None, serve: bool = False) -> int:
    """Run the demo; exit code 0 when the app ends rolled back and Healthy; ``serve`` keeps the pages up."""
    started = time.monotonic()
    work = Path(workdir or tempfile.mkdtemp(prefix="rollbackbot-demo-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    _say("rollbackbot demo: the GitOps circuit breaker, end to end on loopback")
    _say(f"sandbox: {work}")
    sandbox = _build(work)
    _say(f"\n1. GitOps repository {sandbox.remote_url} with releases of {APP}:")
    for tag in sandbox.tag_names():
        note = {
            f"{APP}/v1.2.0": "unsigned",
            f"{APP}/v1.3.0": "deployed now — compromised, Degraded",
            f"{demo_readiness.BROKEN_APP}/v3.0.0": "unsigned, on purpose: badge-vision cannot be rolled back",
        }.get(tag, "")
        _say(f"     {tag:<22} {note}")
    config = work / "argocd.json"
    config.write_text(
        json.dumps(
            {
                "token": ARGOCD_TOKEN,
                "subject": "proj:ml-prod:rollbackbot",
                "repo": str(sandbox.remote_path),
                "branch": sandbox.branch,
                "apps": [
                    *({"name": app, "project": "ml-prod", "path": f"apps/{app}"} for app in (APP, demo_propose.APP)),
                    *demo_readiness.argo_apps(),
                ],
            }
        )
    )
    with ExitStack() as stack:
        log = stack.enter_context(open(work / "processes.log", "wb"))
        argo_proc, argo_url = procs.start_fake_argocd(config, log)
        stack.callback(procs.stop, argo_proc)
        users = {demo_propose.APPROVER_ID: demo_propose.APPROVER_NAME}
        slack_proc, slack_url = fake_slack.start_process(log, token=demo_propose.SLACK_BOT_TOKEN, users=users)
        stack.callback(procs.stop, slack_proc)
        port = procs.free_port()
        base = f"http://127.0.0.1:{port}"
        env = procs.service_env(
            git_url=sandbox.remote_url,
            branch=sandbox.branch,
            allowed_signers=sandbox.allowed_signers,
            policies=_policies_dir(work),
            argocd_url=argo_url,
            argocd_token=ARGOCD_TOKEN,
            webhook_token=WEBHOOK_TOKEN,
            state=work / "state",
            readiness_interval=600,  # GET /api/readiness and the rollbackbot_rollback_ready metric while serving
        ) | demo_propose.slack_env(slack_url)
        env |= {"ROLLBACKBOT_UI": "true", "ROLLBACKBOT_PUBLIC_URL": base}  # incident pages, linked from Slack
        service = procs.start_service(env, port, log, cwd=work)
        stack.callback(procs.stop, service)
        procs.wait_ready(f"{base}/readyz", service)
        _say(f"\n2. fake Argo CD at {argo_url}; fake Slack at {slack_url}; rollbackbot serving at {base}")
        ready = await asyncio.to_thread(demo_readiness.check, env, work, _say)
        api_auth = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}  # /api/* takes the webhook token by default
        async with httpx.AsyncClient(base_url=base, timeout=10.0, headers=api_auth) as client:
            auto = await _deliver_and_follow(client, sandbox, argo_url, work, started)
            setting = demo_propose.Setting(
                client,
                WEBHOOK_TOKEN,
                slack_url,
                argo_url,
                sandbox.remote_path,
                env["ROLLBACKBOT_DATABASE_URL"],
                Path(env["ROLLBACKBOT_POLICIES"]),
            )
            proposed = await demo_propose.propose_act(setting)
            if not serve:
                _say("\nthe incident pages close with the demo; `rollbackbot demo --serve` keeps them up")
            pages = f"incident pages: {base}/ui/incidents (sign in with the API token {WEBHOOK_TOKEN})"
            ok = auto == proposed == ready == 0
            _say(f"\ndemo {'OK' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s; {pages}")
            if serve:
                await _serve_until_interrupted()
            return auto or proposed or ready


async def _serve_until_interrupted() -> None:
    """Keep the demo's processes running until Ctrl-C or SIGTERM; the caller's ExitStack stops them."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    _say("   serving until interrupted (Ctrl-C)")
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    _say("stopping the demo's processes")


async def _deliver_and_follow(
    client: httpx.AsyncClient, sandbox: Any, argo_url: str, work: Path, started: float
) -> int:
    labels = {"alertname": "PromptInjectionSpike", "app": APP, "severity": "critical", "namespace": "ml-prod"}
    body = notification(
        [
            alert(
                labels,
                datetime.now(UTC) - timedelta(minutes=2),
                annotations={"summary": "Prompt-injection detections on docsum-llm at 14x baseline"},
            )
        ]
    )
    _say('\n3. Alertmanager delivers PromptInjectionSpike{app="docsum-llm"}')
    t0 = datetime.now(UTC)
    sent = time.monotonic()
    answer = await client.post("/webhook/alertmanager", json=body, headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"})
    _say(f"   webhook answered {answer.status_code} in {1000 * (time.monotonic() - sent):.1f} ms: {answer.json()}")
    if answer.status_code != 202:
        return 1
    incident_id = answer.json()["incidents"][0]
    _say(f"\n4. timeline of {incident_id}:")
    shown, incident = 0, {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        incident = (await client.get(f"/api/incidents/{incident_id}")).json()
        shown = _print_timeline(incident["events"], shown, t0)
        if incident["state"] in TERMINAL:
            break
        await asyncio.sleep(0.05)
    _say(f"\n5. the rollback commit on {sandbox.branch}:")
    if incident.get("rollback_commit"):
        show = subprocess.run(
            [
                "git",
                "--git-dir",
                str(sandbox.remote_path),
                "show",
                "--stat",
                "--format=%H%n%an <%ae>%n%n%B",
                incident["rollback_commit"],
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        for line in show.stdout.rstrip().splitlines():
            _say(f"   {line}")
    async with httpx.AsyncClient(timeout=5.0) as argo:
        app = (await argo.get(f"{argo_url}/_fake/apps/{APP}")).json()
    status = app.get("status", app)
    health = status.get("health", {}).get("status")
    revision = status.get("sync", {}).get("revision", "")
    _say(f"\n6. Argo CD: {APP} is {status.get('sync', {}).get('status')} at {revision[:12]}, health {health}")
    _say(f"   evidence bundle: {incident.get('evidence_url')}")
    ok = incident.get("state") == "rolled_back" and health == "Healthy"
    _say(
        f"\n{'OK' if ok else 'FAILED'}: incident {incident.get('state')} "
        f"({incident.get('from', {}).get('tag')} -> {incident.get('to', {}).get('tag')}) "
        f"in {time.monotonic() - started:.1f}s total; logs in {work / 'processes.log'}"
    )
    return 0 if ok else 1


def cleanup(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
