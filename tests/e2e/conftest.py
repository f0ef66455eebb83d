"""Real processes on loopback: git daemon, the fake Argo CD, the service and Alertmanager."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

from rollbackbot import procs
from rollbackbot.testing import slack as fake_slack
from rollbackbot.testing.gitops import AppSpec, GitOpsSandbox, Release, build_sandbox

WEBHOOK_TOKEN = "e2e-webhook-token-0123456789abcdef"
API_AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}  # /api/* and /status take the webhook token by default
ARGOCD_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwcm9qOm1sLXByb2Q6cm9sbGJhY2tib3QifQ.ZTJl"
REPO_ROOT = Path(__file__).resolve().parents[2]
SLACK_BOT_TOKEN = "xoxb-e2e-bot-token-0123456789abcdef"
SLACK_SIGNING_SECRET = "e2e-slack-signing-secret-0123456789"
SLACK_USERS = {"U012ABC": "Dana Ops"}  # an approver of policies/20-support-llm-refusal.yaml


def service_env(git_url: str, allowed_signers: Path, argocd_url: str, state: Path) -> dict[str, str]:
    """The service settings every end-to-end test uses: shipped policies, the test tokens."""
    return procs.service_env(
        git_url=git_url,
        allowed_signers=allowed_signers,
        policies=REPO_ROOT / "policies",
        argocd_url=argocd_url,
        argocd_token=ARGOCD_TOKEN,
        webhook_token=WEBHOOK_TOKEN,
        state=state,
    )


def slack_env(slack_url: str = "http://127.0.0.1:9") -> dict[str, str]:
    """Slack settings for a service process: the shipped policies include mode propose, which needs them.

    Point it at a fake Slack process (``fake_slack.start_process``); the default is a closed port,
    for tests that never look at Slack (posting fails fast and never holds up a rollback).
    """
    return {
        "ROLLBACKBOT_SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
        "ROLLBACKBOT_SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "ROLLBACKBOT_SLACK_API_URL": f"{slack_url}/api/",
    }


def start_git_daemon(base: Path, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Serve the bare repositories under ``base`` over git:// on 127.0.0.1:``port`` (pushes allowed)."""
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            f"--base-path={base}",
            "--export-all",
            "--enable=receive-pack",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stdout=log,
        stderr=log,
    )
    _wait_port(port)
    return daemon


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture(scope="session")
def alertmanager_bin() -> str:
    path = shutil.which("prometheus-alertmanager")
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("prometheus-alertmanager is missing under CI=true: .ci/run must install it")
    pytest.skip("prometheus-alertmanager not installed (make test installs it when run as root with apt-get)")


@dataclass
class Stack:
    sandbox: GitOpsSandbox
    service_url: str
    argocd_url: str
    git_url: str
    work: Path
    log: Path
    service: subprocess.Popen[bytes]
    slack_url: str = ""  # the fake Slack process; the service's ROLLBACKBOT_SLACK_API_URL is slack_url + "/api/"

    def slack_calls(self) -> list[dict[str, object]]:
        return list(httpx.get(f"{self.slack_url}/_fake/calls", timeout=5).json())

    def slack_click(self, action: str, incident_id: str, user: str = "U012ABC") -> httpx.Response:
        """Press a Slack button as Slack would deliver it, correctly signed."""
        payload = fake_slack.block_actions(action, incident_id, user, user_name="dana.ops")
        body, headers = fake_slack.signed_request(SLACK_SIGNING_SECRET, payload)
        return httpx.post(f"{self.service_url}/slack/actions", content=body, headers=headers, timeout=5)

    def incident(self, incident_id: str) -> dict[str, object]:
        return dict(httpx.get(f"{self.service_url}/api/incidents/{incident_id}", headers=API_AUTH, timeout=5).json())

    def incidents(self) -> list[dict[str, object]]:
        return list(httpx.get(f"{self.service_url}/api/incidents", headers=API_AUTH, timeout=5).json()["incidents"])

    def wait_state(self, incident_id: str, states: set[str], timeout: float = 30.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        data: dict[str, object] = {}
        while time.monotonic() < deadline:
            data = self.incident(incident_id)
            if data.get("state") in states:
                return data
            time.sleep(0.05)
        raise AssertionError(f"incident {incident_id} never reached {states}: {data}\n{self.log.read_text()[-4000:]}")

    def argocd_requests(self) -> list[dict[str, object]]:
        return list(httpx.get(f"{self.argocd_url}/_fake/requests", timeout=5).json())

    def argocd_app(self, name: str) -> dict[str, object]:
        return dict(httpx.get(f"{self.argocd_url}/_fake/apps/{name}", timeout=5).json())


def docsum_releases() -> list[AppSpec]:
    return [
        AppSpec(
            "docsum-llm",
            [
                Release("1.0.0"),
                Release("1.1.0"),
                Release("1.2.0", signed=False),
                Release("1.3.0", health="Degraded"),
            ],
        ),
        AppSpec("badge-vision", [Release("3.0.0"), Release("3.1.0", health="Degraded")], with_features=True),
    ]


def support_llm_releases() -> AppSpec:
    """A propose-mode app (policies/20-support-llm-refusal.yaml): 1.2.0 is deployed and misbehaving."""
    return AppSpec("support-llm", [Release("1.0.0"), Release("1.1.0"), Release("1.2.0", health="Degraded")])


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    marker = request.node.get_closest_marker("stack_env")
    extra_env: dict[str, str] = dict(marker.kwargs) if marker else {}
    sandbox = build_sandbox(tmp_path / "gitops", [*docsum_releases(), support_llm_releases()])
    log_path = tmp_path / "processes.log"
    started: list[subprocess.Popen[bytes]] = []
    with open(log_path, "wb") as log:
        try:
            git_port = procs.free_port()
            base = sandbox.remote_path.parent
            daemon = subprocess.Popen(
                [
                    "git",
                    "daemon",
                    "--reuseaddr",
                    f"--base-path={base}",
                    "--export-all",
                    "--enable=receive-pack",
                    "--listen=127.0.0.1",
                    f"--port={git_port}",
                    str(base),
                ],
                stdout=log,
                stderr=log,
            )
            started.append(daemon)
            _wait_port(git_port)
            git_url = f"git://127.0.0.1:{git_port}/{sandbox.remote_path.name}"
            config = tmp_path / "argocd.json"
            config.write_text(
                json.dumps(
                    {
                        "token": ARGOCD_TOKEN,
                        "repo": str(sandbox.remote_path),
                        "branch": sandbox.branch,
                        "apps": [
                            {"name": "docsum-llm", "project": "ml-prod", "path": "apps/docsum-llm"},
                            {"name": "badge-vision", "project": "ml-prod", "path": "apps/badge-vision"},
                            {
                                "name": "badge-vision-features",
                                "project": "ml-prod",
                                "path": "apps/badge-vision-features",
                            },
                            {"name": "support-llm", "project": "ml-prod", "path": "apps/support-llm"},
                        ],
                    }
                )
            )
            argo, argo_url = procs.start_fake_argocd(config, log)
            started.append(argo)
            slack, slack_url = fake_slack.start_process(log, token=SLACK_BOT_TOKEN, users=SLACK_USERS)
            started.append(slack)
            port = procs.free_port()
            env = service_env(git_url, sandbox.allowed_signers, argo_url, tmp_path / "state") | slack_env(slack_url)
            service = procs.start_service(env | extra_env, port, log, cwd=tmp_path)
            started.append(service)
            url = f"http://127.0.0.1:{port}"
            procs.wait_ready(f"{url}/readyz", service)
            yield Stack(sandbox, url, argo_url, git_url, tmp_path, log_path, service, slack_url=slack_url)
        finally:
            for proc in reversed(started):
                procs.stop(proc)


@dataclass
class Alertmanager:
    url: str

    def fire(self, labels: dict[str, str], annotations: dict[str, str] | None = None) -> None:
        body = [{"labels": labels, "annotations": annotations or {}}]
        httpx.post(f"{self.url}/api/v2/alerts", json=body, timeout=5).raise_for_status()

    def alerts(self) -> list[dict[str, object]]:
        return list(httpx.get(f"{self.url}/api/v2/alerts", timeout=5).json())


@pytest.fixture
def alertmanager(alertmanager_bin: str, stack: Stack, tmp_path: Path) -> Iterator[Alertmanager]:
    port = procs.free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route:\n"
        "  receiver: rollbackbot\n"
        "  group_by: [alertname, app]\n"
        "  group_wait: 0s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1s\n"
        "receivers:\n"
        "  - name: rollbackbot\n"
        "    webhook_configs:\n"
        f"      - url: {stack.service_url}/webhook/alertmanager\n"
        "        send_resolved: true\n"
        "        http_config:\n"
        "          authorization:\n"
        f"            credentials: {WEBHOOK_TOKEN}\n"
    )
    storage = tmp_path / "am-data"
    storage.mkdir()
    with open(tmp_path / "alertmanager.log", "wb") as log:
        proc = subprocess.Popen(
            [
                alertmanager_bin,
                f"--config.file={config}",
                f"--storage.path={storage}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                f"--web.external-url=http://127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=log,
        )
        try:
            procs.wait_ready(f"http://127.0.0.1:{port}/-/ready", proc)
            yield Alertmanager(f"http://127.0.0.1:{port}")
        finally:
            procs.stop(proc)
