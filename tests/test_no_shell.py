"""No subprocess runs through a shell: every command is an argument list."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rollbackbot"
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}


def _violations(tree: ast.AST, name: str) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                found.append(f"{name}:{node.lineno}: shell=...")
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if (func.value.id, func.attr) in SHELL_CALLS:
                found.append(f"{name}:{node.lineno}: {func.value.id}.{func.attr}")
    return found


def test_no_shell_in_the_package() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    problems = [v for f in files for v in _violations(ast.parse(f.read_text()), str(f.relative_to(PACKAGE)))]
    assert problems == []


def test_the_scanner_finds_a_shell() -> None:
    code = "import os, subprocess\nsubprocess.run('ls', shell=True)\nos.system('ls')\n"
    assert len(_violations(ast.parse(code), "x.py")) == 2
