"""The processes of the live loop (``rollbackbot.demo.live``), started on 127.0.0.1 and stopped together.

The model stand-in (``rollbackbot.testing.model``), the observer in front of it, real Prometheus
(1 s scrape and evaluation) loading the project's own model-anomaly rules time-scaled by
``manifests/generate.py --scaled-rules``, real Alertmanager with the shipped route, rollbackbot,
a GitOps remote with ssh-signed releases and the Argo CD stand-in. The compromised release
``docsum-llm/v1.1.0`` (``BEHAVIOUR: comply``) is deployed; ``v1.0.0`` is the safe one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml

from rollbackbot import procs
from rollbackbot.testing import slack as fake_slack
from rollbackbot.testing.gitops import AppSpec, GitOpsSandbox, Release, build_sandbox, default_trailers, release_files
from rollbackbot.testing.model import CANARY

APP = "docsum-llm"
WEBHOOK_TOKEN = "live-demo-webhook-token-0123456789"
ARGOCD_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwcm9qOm1sLXByb2Q6cm9sbGJhY2tib3QifQ.bGl2ZQ"
FORENSICS_TOKEN = "live-demo-forensics-token-0123456789"
SLACK_BOT_TOKEN = "xoxb-live-demo-bot-token-0123456789"
REPO = Path(__file__).resolve().parents[2]
RULES_GENERATOR = REPO / "manifests" / "generate.py"
SHIPPED_ROUTE = REPO / "manifests" / "monitoring" / "alertmanager-rollbackbot.yml"
EVALUATION_SECONDS = 1  # Prometheus scrape and rule evaluation interval
INSTALL_HINT = "apt-get install -y --no-install-recommends prometheus prometheus-alertmanager"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} is not installed: {INSTALL_HINT} (make demo-live installs it when run as root)")
    return path


def build_releases(root: Path) -> GitOpsSandbox:
    """GitOps remote: safe ``v1.0.0``, then the compromised ``v1.1.0`` (BEHAVIOUR: comply) as deploy head."""
    app = AppSpec(APP, [Release("1.0.0")])
    sandbox = build_sandbox(root, [app])
    bad = Release("1.1.0")
    files = release_files(app, bad, 1)
    files[f"apps/{APP}/model.yaml"] += '  BEHAVIOUR: "comply"  # output filter relaxed\n'
    commit = sandbox.commit_paths(files, f"release({APP}): 1.1.0", author="Release Pipeline <release@example.com>")
    sandbox.sign_tag(f"{APP}/v1.1.0", commit, default_trailers(APP, bad, 1))
    sandbox.tags[f"{APP}/v1.1.0"] = commit
    return sandbox


def demo_policies(target: Path, forensics_url: str) -> Path:
    """The shipped policies, the docsum-llm one reading this demo's observer for evidence."""
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted((REPO / "policies").glob("*.yaml")):
        text = source.read_text(encoding="utf-8")
        text = text.replace("http://model-observer.docsum-llm.svc:9100/forensics/requests", forensics_url)
        (target / source.name).write_text(text, encoding="utf-8")
    return target


def alertmanager_config(work: Path, webhook: str, divisor: int) -> Path:
    """The shipped route and receiver, pointed at this service; group_interval scaled like the rules."""
    config = yaml.safe_load(SHIPPED_ROUTE.read_text(encoding="utf-8"))
    token_file = work / "webhook-token"
    token_file.write_text(WEBHOOK_TOKEN, encoding="utf-8")
    route = config["route"]["routes"][0]
    route["group_interval"] = f"{max(1, 60 // divisor)}s"
    receiver = next(r for r in config["receivers"] if r["name"] == "rollbackbot")
    receiver["webhook_configs"][0]["url"] = webhook
    receiver["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"] = str(token_file)
    path = work / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def prometheus_config(work: Path, observer_admin: str, alertmanager: str, divisor: int) -> Path:
    """1 s scrape and evaluation of the observer; the generator's time-scaled rules; our Alertmanager."""
    rules = work / "model-anomaly-rules.scaled.yml"
    scaled = subprocess.run(
        [sys.executable, str(RULES_GENERATOR), "--scaled-rules", "--time-divisor", str(divisor)],
        capture_output=True,
        check=True,
    )
    rules.write_bytes(scaled.stdout)
    config = {
        "global": {"scrape_interval": f"{EVALUATION_SECONDS}s", "evaluation_interval": f"{EVALUATION_SECONDS}s"},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager.removeprefix("http://")]}]}]},
        "scrape_configs": [
            {"job_name": "model-observer", "static_configs": [{"targets": [observer_admin.removeprefix("http://")]}]}
        ],
    }
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@dataclass
class Loop:
    """URLs of the running loop."""

    work: Path
    sandbox: GitOpsSandbox
    model: str
    observer: str
    observer_admin: str
    prometheus: str
    alertmanager: str
    service: str
    argocd: str
    slack: str


def _start(stack: ExitStack, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    stack.callback(procs.stop, proc)
    return proc


def _start_observer(stack: ExitStack, work: Path, model: str, log: IO[bytes]) -> tuple[str, str]:
    config = work / "observer.yaml"
    config.write_text(yaml.safe_dump({"canary": CANARY}), encoding="utf-8")
    args = [sys.executable, "-m", "rollbackbot", "observer", "serve", "--upstream", model, "--endpoint", APP]
    args += ["--host", "127.0.0.1", "--port", "0", "--admin-port", "0", "--config", str(config)]
    env = {"ROLLBACKBOT_OBSERVER_FORENSICS_TOKEN": FORENSICS_TOKEN, "ROLLBACKBOT_OBSERVER_MODEL_VERSION": "live"}
    proc = _start(stack, subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, env={**_base_env(), **env}))
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if "listening on " not in line:
        raise RuntimeError(f"observer did not start: {line!r}")
    admin = line.split("admin on ", 1)[1].split(",", 1)[0]
    return admin, line.rsplit(" ", 1)[-1].strip()


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ROLLBACKBOT_")}


@contextmanager
def running_loop(work: Path, divisor: int, log: IO[bytes]) -> Iterator[Loop]:
    """Start every process of the loop; stop them all on exit."""
    prometheus_bin, alertmanager_bin = _binary("prometheus"), _binary("prometheus-alertmanager")
    sandbox = build_releases(work / "gitops")
    with ExitStack() as stack:
        argo_config = work / "argocd.json"
        apps = [{"name": APP, "project": "ml-prod", "path": f"apps/{APP}"}]
        argo_config.write_text(json.dumps({"token": ARGOCD_TOKEN, "repo": str(sandbox.remote_path), "apps": apps}))
        argo, argocd = procs.start_fake_argocd(argo_config, log)
        _start(stack, argo)
        model_args = [sys.executable, "-m", "rollbackbot.testing.model", "--argocd", argocd, "--token", ARGOCD_TOKEN]
        model_args += ["--app", APP, "--repo", str(sandbox.remote_path)]
        model_proc, model = procs.start_announced(model_args, log, "model stand-in")
        _start(stack, model_proc)
        observer_admin, observer = _start_observer(stack, work, model, log)
        slack_proc, slack = fake_slack.start_process(log, token=SLACK_BOT_TOKEN, users={"U012ABC": "Dana Ops"})
        _start(stack, slack_proc)
        port = procs.free_port()
        service = f"http://127.0.0.1:{port}"
        policies = demo_policies(work / "policies", f"{observer_admin}/forensics/requests")
        env = procs.service_env(
            git_url=sandbox.remote_url,
            allowed_signers=sandbox.allowed_signers,
            policies=policies,
            argocd_url=argocd,
            argocd_token=ARGOCD_TOKEN,
            webhook_token=WEBHOOK_TOKEN,
            state=work / "state",
        )
        env |= {
            "ROLLBACKBOT_SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
            "ROLLBACKBOT_SLACK_SIGNING_SECRET": "live-demo-signing-secret-0123456789",
            "ROLLBACKBOT_SLACK_API_URL": f"{slack}/api/",
            "ROLLBACKBOT_FORENSICS_TOKEN": FORENSICS_TOKEN,
        }
        service_proc = _start(stack, procs.start_service(env, port, log, cwd=work))
        procs.wait_ready(f"{service}/readyz", service_proc)
        am_port = procs.free_port()
        alertmanager = f"http://127.0.0.1:{am_port}"
        am_config = alertmanager_config(work, f"{service}/webhook/alertmanager", divisor)
        am_args = [alertmanager_bin, f"--config.file={am_config}", f"--storage.path={work / 'am-data'}"]
        am_args += [
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
            f"--web.external-url={alertmanager}",
        ]
        am_proc = _start(stack, subprocess.Popen(am_args, stdout=log, stderr=log))
        procs.wait_ready(f"{alertmanager}/-/ready", am_proc)
        prom_port = procs.free_port()
        prometheus = f"http://127.0.0.1:{prom_port}"
        prom_config = prometheus_config(work, observer_admin, alertmanager, divisor)
        prom_args = [prometheus_bin, f"--config.file={prom_config}", f"--storage.tsdb.path={work / 'prom-data'}"]
        prom_args += [f"--web.listen-address=127.0.0.1:{prom_port}", f"--web.external-url={prometheus}"]
        prom_args += ["--rules.alert.resend-delay=1s"]
        prom_proc = _start(stack, subprocess.Popen(prom_args, stdout=log, stderr=log))
        procs.wait_ready(f"{prometheus}/-/ready", prom_proc)
        yield Loop(work, sandbox, model, observer, observer_admin, prometheus, alertmanager, service, argocd, slack)
