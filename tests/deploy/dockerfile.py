"""Just enough Dockerfile parsing to hold the tests to what the image really does."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
# The build stage's RUN, step by step; test_wheel.py runs the same steps with temporary paths.
DOCKER_BUILD_STEPS = [
    "pip wheel --no-deps --wheel-dir /wheels .",
    "python -m venv /opt/rollbackbot",
    '/opt/rollbackbot/bin/pip install "$(echo /wheels/rollbackbot-*.whl)[postgresql]"',
]


@dataclass
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON (exec) form's arguments; plain shell form is rejected on purpose."""
        value = json.loads(self.arguments)
        assert isinstance(value, list), f"{self.keyword} must use the exec form: {self.arguments}"
        return [str(item) for item in value]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]

    def copy_sources(self) -> list[str]:
        """Build-context sources of COPY (not --from=another stage)."""
        sources: list[str] = []
        for copy in self.all("COPY"):
            words = shlex.split(copy.arguments)
            if any(word.startswith("--from=") for word in words):
                continue
            sources += [word for word in words if not word.startswith("--")][:-1]
        return sources


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    return lines


def parse(path: Path = DOCKERFILE) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) of a Dockerfile."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif keyword == "FROM":
            words = rest.split()
            base = words[0]
            for name, default in args.items():
                base = base.replace(f"${{{name}}}", default)
            stages.append(Stage(base, words[2] if len(words) > 2 and words[1].upper() == "AS" else None))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append(Instruction(keyword, rest.strip()))
    return args, stages


def serve_command() -> list[str]:
    """What the final image runs: ENTRYPOINT + CMD, without the tini init wrapper."""
    _, stages = parse()
    final = stages[-1]
    command = final.last("ENTRYPOINT").exec_form() + final.last("CMD").exec_form()
    if command[:2] == ["tini", "--"]:
        command = command[2:]
    return command


def healthcheck_command() -> list[str]:
    """The final image's HEALTHCHECK command (exec form)."""
    _, stages = parse()
    arguments = stages[-1].last("HEALTHCHECK").arguments
    options, separator, command = arguments.partition(" CMD ")
    assert separator, f"HEALTHCHECK without CMD: {arguments}"
    return Instruction("HEALTHCHECK", command).exec_form()


def build_steps() -> list[str]:
    """The commands of the build stage's last RUN, whitespace-normalised."""
    _, stages = parse()
    return [" ".join(step.split()) for step in stages[0].last("RUN").arguments.split("&&")]
