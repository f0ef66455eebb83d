"""The image's install steps, without Docker: wheel, fresh virtualenv, then the entrypoint command.

No Docker engine runs here, so this test repeats the Dockerfile's build stage step by step (and
first checks the Dockerfile still says exactly that): copy the build context it copies, `pip wheel
--no-deps`, a fresh virtualenv, `pip install` of the wheel with its dependencies. The virtualenv
then runs the CLI, the image's entrypoint command with a missing setting, and the same command
with the Deployment's path layout until the image's HEALTHCHECK passes. ~20-60 s (pip).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rollbackbot import procs
from rollbackbot.testing.gitops import AppSpec, Release, build_sandbox
from tests.deploy.conftest import MANIFESTS, REPO, load_yaml, run
from tests.deploy.dockerfile import DOCKER_BUILD_STEPS, build_steps, healthcheck_command, parse, serve_command

pytestmark = [pytest.mark.deploy, pytest.mark.e2e]

WEBHOOK_TOKEN = "wheel-test-webhook-token-0123456789"


def _clean_env(venv: Path) -> dict[str, str]:
    """The process environment without settings or the dev virtualenv; the venv first on PATH, as in the image."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ROLLBACKBOT_") and key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _deployment_settings(root: Path) -> dict[str, str]:
    """The Deployment's literal ROLLBACKBOT_* values, with its absolute paths moved under ``root``."""
    container = load_yaml(MANIFESTS / "deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    settings = {}
    for entry in container["env"]:
        if entry["name"].startswith("ROLLBACKBOT_") and "value" in entry:
            value = entry["value"]
            for prefix in ("/var/lib/rollbackbot", "/etc/rollbackbot"):
                value = value.replace(prefix, f"{root}{prefix}")
            settings[entry["name"]] = value
    return settings


def _build_context(destination: Path) -> None:
    """Copy what the Dockerfile's build stage copies, as .dockerignore lets it."""
    _, stages = parse()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    for source in stages[0].copy_sources():
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, destination / source, ignore=ignore)
        else:
            destination.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, destination / source)


def _wait_healthy(healthcheck: list[str], env: dict[str, str], service: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert service.poll() is None, f"rollbackbot serve exited with {service.returncode}:\n{log.read_text()}"
        if subprocess.run(healthcheck, env=env, capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"HEALTHCHECK never passed:\n{log.read_text()}")


def test_wheel_in_a_fresh_virtualenv_runs_the_image_entrypoint(tmp_path: Path) -> None:
    assert build_steps() == DOCKER_BUILD_STEPS, "the Dockerfile's build steps changed: change this test to match"

    # The build stage, with temporary paths: context copy, wheel, fresh virtualenv, install.
    context, wheels, venv = tmp_path / "src", tmp_path / "wheels", tmp_path / "venv"
    _build_context(context)
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), "."], cwd=context)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = wheels.glob("rollbackbot-*.whl")
    created = run([sys.executable, "-m", "venv", str(venv)])
    assert created.returncode == 0, created.stderr
    installed = run(
        [str(venv / "bin" / "pip"), "install", "--quiet", f"{wheel}[postgresql]"], cwd=tmp_path, timeout=600
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    env = _clean_env(venv)
    where = subprocess.run(
        ["python", "-c", "import rollbackbot; print(rollbackbot.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), "imported the source tree, not the wheel"

    def rollbackbot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["rollbackbot", *args], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
        )

    helped = rollbackbot("--help")
    assert helped.returncode == 0 and "serve" in helped.stdout, helped.stderr
    checked = rollbackbot("policy", "check", str(REPO / "policies"))
    assert checked.returncode == 0 and "OK" in checked.stdout, checked.stderr

    # The image's command without its settings: stops with one line naming the first missing one.
    command = serve_command()
    assert command[0] == "rollbackbot"
    refused = rollbackbot(*command[1:])
    assert refused.returncode != 0
    assert refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "ROLLBACKBOT_GIT_URL" in lines[0], refused.stderr

    # The same command with the Deployment's settings and path layout serves until the image's
    # HEALTHCHECK passes and /readyz (store, clone, policies) answers 200.
    root = tmp_path / "root"
    settings = _deployment_settings(root)
    shutil.copytree(REPO / "policies", settings["ROLLBACKBOT_POLICIES"])
    sandbox = build_sandbox(tmp_path / "gitops", [AppSpec("docsum-llm", [Release("1.0.0"), Release("1.1.0")])])
    signers = Path(settings["ROLLBACKBOT_GIT_ALLOWED_SIGNERS"])
    signers.parent.mkdir(parents=True)
    shutil.copy2(sandbox.allowed_signers, signers)
    (root / "var" / "lib" / "rollbackbot").mkdir(parents=True)  # the volume
    settings |= {
        "ROLLBACKBOT_GIT_URL": sandbox.remote_url,
        "ROLLBACKBOT_ARGOCD_URL": "http://127.0.0.1:9",  # not called before an incident
        "ROLLBACKBOT_ARGOCD_TOKEN": "argocd-token-for-the-wheel-test",
        "ROLLBACKBOT_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        # The shipped policies include mode propose, which needs Slack (never called before an incident).
        "ROLLBACKBOT_SLACK_BOT_TOKEN": "xoxb-wheel-test",
        "ROLLBACKBOT_SLACK_SIGNING_SECRET": "wheel-test-signing-secret",
        "ROLLBACKBOT_SLACK_API_URL": "http://127.0.0.1:9/api/",
    }
    port = str(procs.free_port())
    local = [*command[:-4], "--host", "127.0.0.1", "--port", port]
    assert command[-4:] == ["--host", "0.0.0.0", "--port", "8080"]
    probe = [part.replace(":8080/", f":{port}/") for part in healthcheck_command()]
    assert probe != healthcheck_command(), "the HEALTHCHECK no longer probes port 8080"
    log = tmp_path / "serve.log"
    with open(log, "wb") as output:
        service = subprocess.Popen(local, env=env | settings, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(probe, env, service, log)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as ready:
                assert ready.status == 200, ready.read()
        finally:
            procs.stop(service)
    assert (Path(settings["ROLLBACKBOT_GIT_WORKDIR"])).exists()
    assert (root / "var" / "lib" / "rollbackbot" / "state.db").is_file()
