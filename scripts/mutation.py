"""Mutation testing of ``rollbackbot/core/``: does any test notice when a rule changes?

A small, offline mutator built on :mod:`ast`. For every module in ``rollbackbot/core/`` it lists
the *mutants* (one small change each: ``<`` becomes ``<=``, ``and`` becomes ``or``, a keyword
argument is dropped, ``continue`` becomes ``break``, a key string is changed, ...), then runs, for
each mutant, only the tests of ``tests/core/`` that executed the mutated lines on the unmodified
code. A mutant is *killed* when a test fails (or the run times out), *survives* when every test
passes, and is *untested* when no test reaches its line.

How it stays fast on two cores:

* one coverage pass records which test executes which line of ``core/`` (``sys.settrace``);
* the parent process imports pytest, pydantic, hypothesis and yaml once and never imports
  ``rollbackbot``; per module, a child imports the core modules that do not depend on it;
  each mutant runs in a ``fork()`` of that child, where an import hook serves the mutated code
  of the module (compiled from the changed syntax tree, nothing is written to disk) and pytest
  runs the selected tests with ``-x``: those of ``tests/core`` first, the slower files elsewhere
  only when the mutant survived them.

Usage (``make mutation`` runs the first line)::

    python scripts/mutation.py                      # everything, summary and survivors
    python scripts/mutation.py --module releases    # one module (repeatable)
    python scripts/mutation.py --list --module decide
    python scripts/mutation.py --show decide:17     # the code of mutant 17 of decide.py
    python scripts/mutation.py --json report.json --jobs 2

Lines whose mutation cannot change behaviour may carry ``# pragma: no mutate`` with a reason.
Exit status 1 when the total score is below ``--fail-under`` or any module below
``--module-fail-under``.
"""

from __future__ import annotations

import argparse
import ast
import importlib.machinery
import importlib.util
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import CodeType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "rollbackbot" / "core"
PACKAGE = "rollbackbot.core"
PRAGMA = "pragma: no mutate"

COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.BitOr: ast.BitAnd,
    ast.BitAnd: ast.BitOr,
}
CALL_SWAPS = {"min": "max", "max": "min", "any": "all", "all": "any"}
# A string constant is mutated when it looks like a key, a name or a pattern (no whitespace, short):
# those steer behaviour. Sentences are wording, pinned by the golden files of the Slack tests.
KEY_STRING_MAX = 40


@dataclass(frozen=True)
class Mutant:
    module: str  # "decide"
    index: int  # position in the module's traversal, stable while the module does not change
    line: int
    end_line: int
    operator: str
    description: str
    in_function: bool  # False: runs at import time (module level, class bodies)

    @property
    def key(self) -> str:
        return f"{self.module}:{self.index}"

    @property
    def location(self) -> str:
        return f"rollbackbot/core/{self.module}.py:{self.line}"


@dataclass
class Result:
    mutant: Mutant
    outcome: str  # killed | survived | untested | timeout
    tests: int
    seconds: float


@dataclass
class ModuleScore:
    mutants: int = 0
    killed: int = 0
    survived: int = 0
    untested: int = 0
    survivors: list[Result] = field(default_factory=list)

    @property
    def score(self) -> float:
        return 100.0 * self.killed / self.mutants if self.mutants else 100.0


# --------------------------------------------------------------------------------------------
# Enumerating and applying mutants


class _Mutator(ast.NodeTransformer):
    """Walks a module; counts mutation points, and applies the one numbered ``target``.

    With ``target = -1`` it changes nothing and only records the points (``found``).
    """

    def __init__(self, module: str, source_lines: list[str], target: int = -1) -> None:
        self.module = module
        self.lines = source_lines
        self.target = target
        self.count = 0
        self.found: list[Mutant] = []
        self.function_depth = 0
        self.applied = False

    # -- bookkeeping ----------------------------------------------------------------------
    def _excluded(self, node: ast.AST) -> bool:
        first = getattr(node, "lineno", 0)
        last = getattr(node, "end_lineno", first) or first
        return any(PRAGMA in self.lines[n - 1] for n in range(first, last + 1) if 0 < n <= len(self.lines))

    def _point(self, node: ast.AST, operator: str, description: str) -> bool:
        """Register one mutation point at ``node``; True when it is the one to apply."""
        if self._excluded(node):
            return False
        index = self.count
        self.count += 1
        line = getattr(node, "lineno", 0)
        self.found.append(
            Mutant(
                module=self.module,
                index=index,
                line=line,
                end_line=getattr(node, "end_lineno", line) or line,
                operator=operator,
                description=description,
                in_function=self.function_depth > 0,
            )
        )
        if index == self.target:
            self.applied = True
            return True
        return False

    # -- what is never mutated ------------------------------------------------------------
    def _visit_body(self, node: ast.AST, fields: tuple[str, ...]) -> ast.AST:
        for name in fields:
            value = getattr(node, name)
            if isinstance(value, list):
                new: list[Any] = []
                for item in value:
                    if not isinstance(item, ast.AST):
                        new.append(item)  # e.g. None in kw_defaults: a keyword-only argument without default
                        continue
                    result = self.visit(item)
                    if result is None:
                        continue
                    new.extend(result if isinstance(result, list) else [result])
                setattr(node, name, new)
            elif isinstance(value, ast.AST):
                setattr(node, name, self.visit(value))
        return node

    def _skip_docstring(self, body: list[ast.stmt]) -> list[ast.stmt]:
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            if isinstance(body[0].value.value, str):
                return body[1:]
        return body

    def visit_Module(self, node: ast.Module) -> ast.AST:
        docless = self._skip_docstring(node.body)
        head = node.body[: len(node.body) - len(docless)]
        rest = []
        for stmt in docless:
            if _is_type_checking_block(stmt) or _is_dunder_all(stmt):
                rest.append(stmt)
                continue
            result = self.visit(stmt)
            rest.extend(result if isinstance(result, list) else [result] if result is not None else [])
        node.body = head + rest
        return node

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        # Annotations and decorators are not behaviour of the rule; default values are.
        self._visit_body(node.args, ("defaults", "kw_defaults"))
        self.function_depth += 1
        docless = self._skip_docstring(node.body)
        head = node.body[: len(node.body) - len(docless)]
        holder = ast.Module(body=docless, type_ignores=[])
        self._visit_body(holder, ("body",))
        node.body = head + holder.body
        self.function_depth -= 1
        return node

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        docless = self._skip_docstring(node.body)
        head = node.body[: len(node.body) - len(docless)]
        holder = ast.Module(body=docless, type_ignores=[])
        self._visit_body(holder, ("body",))
        node.body = head + holder.body
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        return node  # f-strings are wording

    def visit_Import(self, node: ast.Import) -> ast.AST:
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        return node

    # -- operators ------------------------------------------------------------------------
    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        for i, op in enumerate(node.ops):
            swap = COMPARE_SWAPS.get(type(op))
            if swap is None:
                continue
            if self._point(node, "compare", f"{_op_text(op)} -> {_op_text(swap())}"):
                node.ops[i] = swap()
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        other: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        if self._point(node, "boolop", f"{_op_text(node.op)} -> {_op_text(other)}"):
            node.op = other
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not | ast.USub) and self._point(node, "unary", f"drop '{_op_text(node.op)}'"):
            return node.operand
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        swap = BINOP_SWAPS.get(type(node.op))
        if swap is not None and self._point(node, "binop", f"{_op_text(node.op)} -> {_op_text(swap())}"):
            node.op = swap()
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        swap = BINOP_SWAPS.get(type(node.op))
        if swap is not None and self._point(node, "binop", f"{_op_text(node.op)}= -> {_op_text(swap())}="):
            node.op = swap()
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if isinstance(value, bool):
            if self._point(node, "constant", f"{value} -> {not value}"):
                return ast.copy_location(ast.Constant(not value), node)
        elif isinstance(value, int | float):
            if self._point(node, "constant", f"{value!r} -> {value + 1!r}"):
                return ast.copy_location(ast.Constant(value + 1), node)
        elif isinstance(value, str) and len(value) <= KEY_STRING_MAX and not any(c.isspace() for c in value):
            if self._point(node, "string", f"{value!r} -> {'XX' + value + 'XX'!r}"):
                return ast.copy_location(ast.Constant("XX" + value + "XX"), node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id in CALL_SWAPS:
            other = CALL_SWAPS[node.func.id]
            if self._point(node, "call", f"{node.func.id}() -> {other}()"):
                node.func = ast.copy_location(ast.Name(id=other, ctx=ast.Load()), node.func)
        for i, keyword in enumerate(list(node.keywords)):
            if keyword.arg is None:
                continue
            if self._point(keyword, "keyword", f"drop {keyword.arg}="):
                node.keywords = node.keywords[:i] + node.keywords[i + 1 :]
        return node

    def visit_Continue(self, node: ast.Continue) -> ast.AST:
        if self._point(node, "flow", "continue -> break"):
            return ast.copy_location(ast.Break(), node)
        return node

    def visit_Break(self, node: ast.Break) -> ast.AST:
        if self._point(node, "flow", "break -> continue"):
            return ast.copy_location(ast.Continue(), node)
        return node

    def visit_Return(self, node: ast.Return) -> ast.AST:
        self.generic_visit(node)
        value = node.value
        if value is not None and not (isinstance(value, ast.Constant) and value.value is None):
            if self._point(node, "return", "return ... -> return None"):
                node.value = ast.copy_location(ast.Constant(None), value)
        return node


def _is_type_checking_block(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test)


def _is_dunder_all(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets)


_OP_TEXT = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.And: "and",
    ast.Or: "or",
    ast.Not: "not",
    ast.USub: "-",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.BitOr: "|",
    ast.BitAnd: "&",
}


def _op_text(op: ast.AST) -> str:
    return _OP_TEXT.get(type(op), type(op).__name__)


def module_path(module: str) -> Path:
    return CORE / f"{module}.py"


def core_modules() -> list[str]:
    return sorted(p.stem for p in CORE.glob("*.py") if p.stem != "__init__" and p.read_text().strip())


def enumerate_mutants(module: str, source: str | None = None) -> list[Mutant]:
    text = module_path(module).read_text() if source is None else source
    mutator = _Mutator(module, text.splitlines())
    mutator.visit(ast.parse(text))
    return mutator.found


def mutate(module: str, index: int, source: str | None = None) -> ast.Module:
    """The syntax tree of ``module`` with mutant ``index`` applied (line numbers kept)."""
    text = module_path(module).read_text() if source is None else source
    tree = ast.parse(text)
    mutator = _Mutator(module, text.splitlines(), target=index)
    tree = mutator.visit(tree)
    if not mutator.applied:
        raise LookupError(f"{module} has no mutant {index}")
    return ast.fix_missing_locations(tree)


def mutant_code(module: str, index: int, source: str | None = None) -> CodeType:
    code: CodeType = compile(mutate(module, index, source), str(module_path(module)), "exec")
    return code


def show(module: str, index: int) -> str:
    """A unified diff of the mutant against the module (both unparsed, so only the change shows)."""
    import difflib

    original = ast.unparse(ast.parse(module_path(module).read_text())).splitlines()
    mutated = ast.unparse(mutate(module, index)).splitlines()
    diff = difflib.unified_diff(original, mutated, f"{module}.py", f"{module}.py (mutant {index})", lineterm="", n=2)
    return "\n".join(diff)


# --------------------------------------------------------------------------------------------
# Running tests in forked children


class _MutantLoader(importlib.machinery.SourceFileLoader):
    def __init__(self, fullname: str, path: str, code: CodeType) -> None:
        super().__init__(fullname, path)
        self._code = code

    def get_code(self, fullname: str) -> CodeType:
        return self._code


class _MutantFinder:
    def __init__(self, fullname: str, path: Path, code: CodeType) -> None:
        self.fullname = fullname
        self.path = path
        self.code = code

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.fullname:
            return None
        loader = _MutantLoader(fullname, str(self.path), self.code)
        return importlib.util.spec_from_file_location(fullname, str(self.path), loader=loader)


# Plugins are not auto-loaded (loading them all costs more than running the tests of a mutant);
# tests/core needs only Hypothesis's.
PYTEST_ARGS = [
    "-q",
    "-p",
    "no:cacheprovider",
    "-p",
    "_hypothesis_pytestplugin",
    "-p",
    "pytest_asyncio.plugin",
    "-p",
    "no:unraisableexception",  # its gc.collect() at exit cost more than most mutants' tests
    "--no-header",
    "-W",
    "ignore",
]
# The fast tests that reach core/: all of tests/core, and the few files elsewhere that are the
# tests of a core module (Slack message builders, retry rules, the git target rules). Slower
# service, fault and API tests are left out: a mutant would cost seconds instead of a fraction.
DEFAULT_TESTS = [
    "tests/core",
    "tests/slack/test_blocks_golden.py",
    "tests/service/test_transient_retries.py",
    "tests/adapters/test_git_target_rules.py",
    "tests/forge/test_pull_request_rules.py",
]


def _preload() -> None:
    """Import the heavy third-party modules once in the parent (children inherit them)."""
    import hypothesis
    import pydantic  # noqa: F401
    import pytest  # noqa: F401
    import yaml  # noqa: F401

    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    hypothesis.settings.register_profile("mutation", derandomize=True, database=None, deadline=None)
    hypothesis.settings.load_profile("mutation")
    assert not any(name == "rollbackbot" or name.startswith("rollbackbot.") for name in sys.modules)


def _child_pytest(args: list[str], timeout: int) -> None:
    """Runs in a forked child: pytest with ``args``, silenced; exits with pytest's status."""
    import pytest

    signal.alarm(timeout)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    try:
        status = int(pytest.main([*PYTEST_ARGS, "-x", *args]))
    except BaseException:  # noqa: BLE001 - any escape means the mutant broke something
        status = 3
    os._exit(status)


class _CoveragePlugin:
    """Records, per test, the lines of ``core/`` it executes; and those run outside any test (imports)."""

    def __init__(self) -> None:
        self.lines: dict[str, set[tuple[str, int]]] = {}
        self.import_lines: set[tuple[str, int]] = set()
        self.failed: list[str] = []
        self._current: set[tuple[str, int]] | None = self.import_lines
        self._prefix = str(CORE) + os.sep

    def _trace(self, frame: Any, event: str, arg: Any) -> Any:
        filename = frame.f_code.co_filename
        if not filename.startswith(self._prefix):
            return None
        module = filename[len(self._prefix) : -3]
        current = self._current

        def local(frame: Any, event: str, arg: Any) -> Any:
            if event == "line" and current is not None:
                current.add((module, frame.f_lineno))
            return local

        if current is not None:
            current.add((module, frame.f_lineno))
        return local

    def pytest_sessionstart(self, session: Any) -> None:
        sys.settrace(self._trace)  # collection imports the modules: class bodies, validators' set-up

    def pytest_runtest_setup(self, item: Any) -> None:
        self._current = self.lines.setdefault(item.nodeid, set())
        sys.settrace(self._trace)

    def pytest_runtest_teardown(self, item: Any) -> None:
        self._current = self.import_lines

    def pytest_sessionfinish(self, session: Any) -> None:
        sys.settrace(None)

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            self.failed.append(report.nodeid)


Coverage = tuple[dict[str, list[tuple[str, int]]], set[tuple[str, int]], dict[str, float]]


def coverage_pass(test_paths: list[str]) -> Coverage:
    """Run the tests once on the real code in a child; which test runs which core line."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        pid = os.fork()
        if pid == 0:
            import pytest

            plugin = _CoveragePlugin()
            durations: dict[str, float] = {}

            class _Timer:
                def pytest_runtest_logreport(self, report: Any) -> None:
                    durations[report.nodeid] = durations.get(report.nodeid, 0.0) + report.duration

            os.chdir(ROOT)
            sys.path.insert(0, str(ROOT))
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            # Traced from the start: conftest files import core/ before the session starts, and
            # what runs then (pydantic calling a schema hook) counts as import time.
            sys.settrace(plugin._trace)
            status = pytest.main([*PYTEST_ARGS, *test_paths], [plugin, _Timer()])
            with open(out.name, "w") as handle:
                json.dump(
                    {
                        "status": int(status),
                        "failed": plugin.failed,
                        "lines": {k: sorted(v) for k, v in plugin.lines.items()},
                        "import_lines": sorted(plugin.import_lines),
                        "durations": durations,
                    },
                    handle,
                )
            os._exit(0)
        os.waitpid(pid, 0)
        data = json.load(out)
    if data["status"] != 0:
        raise SystemExit(f"the tests fail on the unmodified code ({data['failed'][:5]}); fix that first")
    lines = {k: [(m, n) for m, n in v] for k, v in data["lines"].items()}
    return lines, {(m, n) for m, n in data["import_lines"]}, data["durations"]


def _importing_tests(test_ids: list[str], modules: list[str]) -> dict[str, list[str]]:
    """Per module of core/, the tests in files that import it by name."""
    by_file: dict[str, list[str]] = {}
    for test in test_ids:
        by_file.setdefault(test.split("::", 1)[0], []).append(test)
    found: dict[str, list[str]] = {}
    for path, tests in by_file.items():
        try:
            text = (ROOT / path).read_text()
        except OSError:
            continue
        for module in modules:
            if re.search(
                rf"\b{re.escape(PACKAGE)}\.{module}\b|\bfrom {re.escape(PACKAGE)} import [^\n]*\b{module}\b", text
            ):
                found.setdefault(module, []).extend(tests)
    return found


def _select_tests(
    mutant: Mutant,
    by_line: dict[tuple[str, int], list[str]],
    by_module: dict[str, list[str]],
    import_lines: set[tuple[str, int]],
) -> list[str]:
    lines = [(mutant.module, line) for line in range(mutant.line, mutant.end_line + 1)]
    if not mutant.in_function or any(line in import_lines for line in lines):
        # Runs at import (module level, class bodies, schema hooks pydantic calls when it builds a
        # model): every test that executed anything in the module depends on it.
        return by_module.get(mutant.module, [])
    tests: set[str] = set()
    for line in lines:
        tests.update(by_line.get(line, ()))
    return sorted(tests)


def _stage(tests: list[str], *, core: bool) -> list[str]:
    return [t for t in tests if t.startswith("tests/core/") is core]


def _order_by_speed(tests: list[str], durations: dict[str, float]) -> list[str]:
    return sorted(tests, key=lambda t: (durations.get(t, 0.0), t))


def run(
    modules: list[str],
    jobs: int,
    test_paths: list[str],
    progress: bool = True,
) -> list[Result]:
    _preload()
    started = time.monotonic()
    lines, import_lines, durations = coverage_pass(test_paths)
    by_line: dict[tuple[str, int], list[str]] = {}
    by_module: dict[str, set[str]] = {}
    for test, covered in lines.items():
        for module, line in covered:
            by_line.setdefault((module, line), []).append(test)
            by_module.setdefault(module, set()).add(test)
    # Tests that use a module only through code Python generates (a dataclass's __init__, a
    # constant) execute none of its lines; they count for its import-time mutants all the same.
    for module, tests in _importing_tests(list(lines), core_modules()).items():
        by_module.setdefault(module, set()).update(tests)
    by_module_sorted = {m: sorted(t) for m, t in by_module.items()}
    total_seconds = sum(durations.values())
    timeout = max(20, int(total_seconds * 5) + 10)
    if progress:
        print(f"coverage pass: {len(lines)} tests in {time.monotonic() - started:.1f}s", file=sys.stderr)

    # The sources are read once: editing a module while a run is under way does not shift mutant ids.
    sources = {module: module_path(module).read_text() for module in modules}
    results: list[Result] = []
    for module in modules:
        mutants = enumerate_mutants(module, sources[module])
        setup = _Setup(sources, jobs, timeout, by_line, by_module_sorted, import_lines, durations)
        results += _run_module(module, mutants, setup)
        if progress:
            print(f"  {module}: {len(mutants)} mutants, {time.monotonic() - started:.0f}s", file=sys.stderr)
    results.sort(key=lambda r: (r.mutant.module, r.mutant.index))
    return results


@dataclass(frozen=True)
class _Setup:
    """What every mutant of a run shares: the sources read at the start, and which test runs which line."""

    sources: dict[str, str]
    jobs: int
    timeout: int
    by_line: dict[tuple[str, int], list[str]]
    by_module: dict[str, list[str]]
    import_lines: set[tuple[str, int]]
    durations: dict[str, float]


def _core_imports(module: str) -> set[str]:
    tree = ast.parse(module_path(module).read_text())
    prefix = PACKAGE + "."
    return {
        node.module.removeprefix(prefix)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(prefix)
    }


def _independent_of(target: str) -> list[str]:
    """Modules of core/ that import ``target`` neither directly nor through others."""
    graph = {m: _core_imports(m) for m in core_modules()}

    def reaches(module: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(
            dep == target or (dep not in seen and reaches(dep, seen | {module})) for dep in graph.get(module, ())
        )

    return [m for m in graph if m != target and not reaches(m)]


def _run_module(module: str, mutants: list[Mutant], setup: _Setup) -> list[Result]:
    """Runs the mutants of one module in a child that first imports what does not depend on it.

    Importing core/ (pydantic builds its models) is the largest fixed cost of a mutant; modules the
    mutated one cannot affect are imported once here and shared by every fork.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        pid = os.fork()
        if pid == 0:
            import gc
            import importlib

            sys.path.insert(0, str(ROOT))
            for name in _independent_of(module):
                importlib.import_module(f"{PACKAGE}.{name}")
            gc.collect()
            gc.freeze()
            found = _run_mutants(mutants, setup)
            with open(out.name, "w") as handle:
                json.dump([[r.mutant.index, r.outcome, r.tests, r.seconds] for r in found], handle)
            os._exit(0)
        os.waitpid(pid, 0)
        rows = json.load(out)
    by_index = {m.index: m for m in mutants}
    return [Result(by_index[index], outcome, tests, seconds) for index, outcome, tests, seconds in rows]


def _run_mutants(mutants: list[Mutant], setup: _Setup) -> list[Result]:
    sources, jobs, timeout = setup.sources, setup.jobs, setup.timeout
    results: list[Result] = []
    queue: Iterator[Mutant] = iter(mutants)
    running: dict[int, tuple[Mutant, list[list[str]], int, float]] = {}
    pending: list[tuple[Mutant, list[list[str]], int, float]] = []  # survived a stage, more to run
    unreached: set[int] = set()  # mutants whose line no test executed

    def fork(mutant: Mutant, stages: list[list[str]], count: int, t0: float) -> None:
        code = mutant_code(mutant.module, mutant.index, sources[mutant.module])
        pid = os.fork()
        if pid == 0:
            sys.meta_path.insert(0, _MutantFinder(f"{PACKAGE}.{mutant.module}", module_path(mutant.module), code))
            _child_pytest(stages[0], timeout)
        running[pid] = (mutant, stages[1:], count, t0)

    def start_next() -> bool:
        if pending:
            fork(*pending.pop())
            return True
        for mutant in queue:
            tests = _order_by_speed(
                _select_tests(mutant, setup.by_line, setup.by_module, setup.import_lines), setup.durations
            )
            if not tests:
                # No test executed the line on the unmodified code; it may still run where tracing
                # does not see it (at import, before the coverage pass traced). The module's tests
                # decide; if they all pass, it is reported as reached by no test.
                tests = _order_by_speed(setup.by_module.get(mutant.module, []), setup.durations)
                unreached.add(mutant.index)
            if not tests:
                results.append(Result(mutant, "untested", 0, 0.0))
                continue
            # tests/core first, in a child of its own: most mutants die there, before the slower
            # files elsewhere (which import the service, Slack, git) are even collected.
            stages = [s for s in (_stage(tests, core=True), _stage(tests, core=False)) if s]
            fork(mutant, stages, len(tests), time.monotonic())
            return True
        return False

    while True:
        while len(running) < jobs and start_next():
            pass
        if not running:
            break
        pid, status = os.wait()
        if pid not in running:
            continue
        mutant, stages, count, t0 = running.pop(pid)
        if os.WIFSIGNALED(status):
            outcome = "timeout"
        else:
            outcome = "survived" if os.WEXITSTATUS(status) == 0 else "killed"
        if outcome == "survived" and stages:
            pending.append((mutant, stages, count, t0))
            continue
        if outcome == "survived" and mutant.index in unreached:
            outcome = "untested"
        results.append(Result(mutant, outcome, count, time.monotonic() - t0))
    return results


def summarise(results: list[Result]) -> dict[str, ModuleScore]:
    scores: dict[str, ModuleScore] = {}
    for result in results:
        score = scores.setdefault(result.mutant.module, ModuleScore())
        score.mutants += 1
        if result.outcome in ("killed", "timeout"):
            score.killed += 1
        elif result.outcome == "survived":
            score.survived += 1
            score.survivors.append(result)
        else:
            score.untested += 1
            score.survivors.append(result)
    return scores


def report(scores: dict[str, ModuleScore], seconds: float) -> str:
    def row(name: str, s: ModuleScore) -> str:
        return f"{name:<20} {s.mutants:>8} {s.killed:>8} {s.survived:>9} {s.untested:>9} {s.score:>6.1f}%"

    rows = [f"{'module':<20} {'mutants':>8} {'killed':>8} {'survived':>9} {'untested':>9} {'score':>7}"]
    total = ModuleScore()
    for module, s in sorted(scores.items()):
        rows.append(row(module + ".py", s))
        total.mutants += s.mutants
        total.killed += s.killed
        total.survived += s.survived
        total.untested += s.untested
    rows.append(row("total", total))
    survivors = [r for s in scores.values() for r in s.survivors]
    if survivors:
        rows.append("")
        rows.append(f"survivors ({len(survivors)}): location, mutant id, change  [--show ID prints the code]")
        for r in sorted(survivors, key=lambda r: (r.mutant.module, r.mutant.line, r.mutant.index)):
            tag = "" if r.outcome == "survived" else "  (no test reaches this line)"
            rows.append(f"  {r.mutant.location:<40} {r.mutant.key:<16} {r.mutant.description}{tag}")
    rows.append("")
    rows.append(f"{total.mutants} mutants in {seconds:.0f}s; score {total.score:.1f}%")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--module", action="append", help="a module of core/ (e.g. decide); repeatable")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATION_JOBS", "2")))
    parser.add_argument("--tests", action="append", help="test paths to draw from (default: DEFAULT_TESTS)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--show", metavar="MODULE:INDEX", help="print the diff of one mutant and exit")
    parser.add_argument("--json", metavar="PATH", help="also write every result as JSON")
    parser.add_argument("--fail-under", type=float, default=93.0, help="minimum total score (percent)")
    parser.add_argument("--module-fail-under", type=float, default=90.0, help="minimum score of each module")
    args = parser.parse_args(argv)

    if args.show:
        module, _, index = args.show.partition(":")
        print(show(module, int(index)))
        return 0
    modules = args.module or core_modules()
    unknown = sorted(set(modules) - set(core_modules()))
    if unknown:
        parser.error(f"not modules of rollbackbot/core: {', '.join(unknown)}")
    if args.list:
        for module in modules:
            for m in enumerate_mutants(module):
                print(f"{m.location:<40} {m.key:<16} {m.operator:<9} {m.description}")
        return 0

    started = time.monotonic()
    tests = args.tests or DEFAULT_TESTS
    results = run(modules, max(1, args.jobs), tests)
    scores = summarise(results)
    print(report(scores, time.monotonic() - started))
    if args.json:
        Path(args.json).write_text(
            json.dumps([{**asdict(r.mutant), "outcome": r.outcome, "tests": r.tests} for r in results], indent=1)
        )
    total = sum(s.killed for s in scores.values()) / max(1, sum(s.mutants for s in scores.values())) * 100
    weak = [m for m, s in scores.items() if s.score < args.module_fail_under]
    if total < args.fail_under or weak:
        print(
            f"FAIL: total {total:.1f}% (needs {args.fail_under}%), modules under {args.module_fail_under}%: "
            f"{', '.join(weak) or 'none'}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
