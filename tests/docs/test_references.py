"""Every name the documentation mentions exists: settings, routes, CLI commands, linked files."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

from rollbackbot.cli import _parser
from rollbackbot.observer.config import ObserverSettings
from rollbackbot.settings import Settings
from tests.docs.conftest import DOCS, REPO, markdown_files

VARIABLE = re.compile(r"\bROLLBACKBOT_[A-Z0-9_]*[A-Z0-9]")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
ROUTE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/\S*)")
COMMAND = re.compile(r"^(?:\$ )?rollbackbot ([a-z][\w-]*)(?: ([a-z][\w-]*))?")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# Argo CD's own API (described in these two files, and cited by path elsewhere) is not ours.
ARGO_DOCS = {"argocd.md", "argocd-wire.md"}
ARGO_API = "/api/v1/"


def _code(path: Path) -> list[tuple[int, str]]:
    """(line number, code) of every inline code span and every line of a fenced block."""
    found: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            found.append((number, line.strip()))
        else:
            found.extend((number, span.strip()) for span in CODE_SPAN.findall(line))
    return found


def _variables_read_directly() -> set[str]:
    """``ROLLBACKBOT_*`` variables the code reads with os.environ (test hooks, CLI fallbacks)."""
    read = re.compile(r"os\.environ(?:\.get\(|\[)\"(ROLLBACKBOT_[A-Z0-9_]+)\"")
    return {name for path in (REPO / "rollbackbot").rglob("*.py") for name in read.findall(path.read_text())}


def test_every_variable_mentioned_is_a_setting() -> None:
    known = (
        {f"ROLLBACKBOT_{name.upper()}" for name in Settings.model_fields}
        | {f"ROLLBACKBOT_OBSERVER_{name.upper()}" for name in ObserverSettings.model_fields}
        | _variables_read_directly()
    )
    unknown = [
        f"{path.relative_to(REPO)}:{number}: {variable}"
        for path in markdown_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for variable in VARIABLE.findall(line)
        if variable not in known
    ]
    assert not unknown, "documented variables that rollbackbot/settings.py does not have:\n" + "\n".join(unknown)


def _route_pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")


def _observer_routes() -> list[tuple[str, re.Pattern[str]]]:
    """The observer's admin routes (read from its aiohttp app) and the model routes it scores as it proxies."""
    source = (REPO / "rollbackbot" / "observer" / "worker.py").read_text()
    admin = re.findall(r'add_(get|post)\("(/[^"]*)"', source)
    scored = [("post", "/v1/chat/completions"), ("post", "/v1/completions")]
    return [(method.upper(), _route_pattern(path)) for method, path in [*admin, *scored]]


def test_every_route_mentioned_exists(gen: ModuleType) -> None:
    operations = gen.openapi_document()["paths"]
    service_routes = [(method.upper(), _route_pattern(path)) for path, ops in operations.items() for method in ops]
    observer_routes = _observer_routes()
    assert observer_routes, "no observer routes found in rollbackbot/observer/worker.py"
    unknown = []
    for path in markdown_files():
        if path.name in ARGO_DOCS:
            continue
        routes = observer_routes if path.name == "observer.md" else service_routes
        for number, code in _code(path):
            found = ROUTE.match(code)
            if not found or found.group(2).startswith(ARGO_API):
                continue
            method, route = found.group(1), found.group(2).split("?")[0].rstrip(".,;:…")
            if not any(method == m and pattern.match(route) for m, pattern in routes):
                unknown.append(f"{path.relative_to(REPO)}:{number}: {method} {route}")
    assert not unknown, "documented routes the app does not serve:\n" + "\n".join(unknown)


def _commands() -> dict[str, set[str]]:
    """Each subcommand and the names of its own subcommands."""
    import argparse

    def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    return {name: set(subcommands(sub)) for name, sub in subcommands(_parser()).items()}


def test_every_command_mentioned_exists() -> None:
    commands = _commands()
    unknown = []
    for path in markdown_files():
        for number, code in _code(path):
            found = COMMAND.match(code)
            if not found:
                continue
            first, second = found.groups()
            nested = commands.get(first)
            if nested is None or (nested and second is not None and second not in nested):
                unknown.append(f"{path.relative_to(REPO)}:{number}: {code}")
    assert not unknown, "documented commands rollbackbot does not have:\n" + "\n".join(unknown)


def test_relative_links_resolve() -> None:
    broken = []
    for path in markdown_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for target in LINK.findall(CODE_SPAN.sub("", line)):
                if "://" in target or target.startswith("mailto:"):
                    continue
                if not (path.parent / target).exists():
                    broken.append(f"{path.relative_to(REPO)}:{number}: {target}")
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_every_operator_doc_exists() -> None:
    expected = {
        "architecture.md",
        "incidents.md",
        "policies.md",
        "http-api.md",
        "openapi.json",
        "cli.md",
        "configuration.md",
        "git-conventions.md",
        "argocd.md",
        "argocd-wire.md",
        "evidence.md",
        "model-signals.md",
        "security.md",
        "operations.md",
        "development.md",
    }
    missing = sorted(name for name in expected if not (DOCS / name).is_file())
    assert not missing, f"docs missing: {missing}"


def test_model_signals_cover_every_rule_and_metric() -> None:
    import yaml

    rules = yaml.safe_load((REPO / "manifests" / "monitoring" / "model-anomaly-rules.yml").read_text())
    text = (DOCS / "model-signals.md").read_text(encoding="utf-8")
    alerts = [rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    metrics = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"(?<![\w:])model_observer_[a-z_]+(?![\w:])", rule["expr"])
    }
    missing = [f"alert {name}" for name in alerts if f"`{name}`" not in text]
    missing += [f"metric {name}" for name in sorted(metrics) if f"`{name}`" not in text]
    assert not missing, "docs/model-signals.md does not describe:\n" + "\n".join(missing)


def test_every_doc_the_repository_cites_exists() -> None:
    import subprocess

    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    cited = re.compile(r"(?<![\w/.-])docs/([\w.-]+\.(?:md|json))")
    missing = []
    for name in filter(None, listing.decode().split("\0")):
        try:
            text = (REPO / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        missing += [f"{name}: docs/{doc}" for doc in set(cited.findall(text)) if not (DOCS / doc).is_file()]
    assert not missing, "files cite docs that do not exist:\n" + "\n".join(sorted(missing))
