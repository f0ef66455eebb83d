"""Smoke test of scripts/mutation.py (``make mutation``): it finds mutants and applies one at a time.

The full mutation run is its own make target; this only checks the mutator on small sources.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mutation.py"


@pytest.fixture(scope="module")
def mutation() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rollbackbot_mutation_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


SOURCE = '''"""Module docstring: never mutated."""
from __future__ import annotations

LIMIT: int = 3


def over(count: int, *, strict: bool = True) -> bool:
    """Docstring."""
    if strict and count > LIMIT:
        return True
    return max(count, 0) >= LIMIT + 2


def describe(name: str) -> str:
    return f"name {name}"


def key() -> dict[str, int]:
    return dict(newTag=1)  # pragma: no mutate (a smoke test of the exclusion)
'''


def run(mutation: ModuleType, index: int, call: str) -> Any:
    namespace: dict[str, Any] = {}
    exec(mutation.mutant_code("decide", index, SOURCE), namespace)  # noqa: S102 - the mutant under test
    return eval(call, namespace)  # noqa: S307


def test_mutants_of_a_small_module(mutation: ModuleType) -> None:
    found = mutation.enumerate_mutants("decide", SOURCE)
    changes = [(m.line, m.description) for m in found]
    assert (4, "3 -> 4") in changes  # the value of an annotated assignment
    assert (7, "True -> False") in changes  # a default
    assert (9, "and -> or") in changes
    assert (9, "> -> >=") in changes
    assert (11, "max() -> min()") in changes
    assert (11, ">= -> >") in changes
    assert (11, "+ -> -") in changes
    assert all(m.line not in (1, 8, 19) for m in found)  # docstrings, the pragma line
    assert [m.description for m in found if m.line == 15] == ["return ... -> return None"]  # not the f-string
    assert [m.index for m in found] == list(range(len(found)))
    # Module level and defaults run at import: every test of the module is run for them.
    assert not any(m.in_function for m in found if m.line in (4, 7))
    assert all(m.in_function for m in found if m.line > 7)


def test_each_mutant_changes_behaviour_alone(mutation: ModuleType) -> None:
    found = mutation.enumerate_mutants("decide", SOURCE)
    by_change = {(m.line, m.description): m.index for m in found}
    assert run(mutation, by_change[(9, "> -> >=")], "over(3)") is True
    assert run(mutation, by_change[(9, "> -> >=")], "over(2)") is False
    assert run(mutation, by_change[(7, "True -> False")], "over(4)") is False
    assert run(mutation, by_change[(11, "max() -> min()")], "over(6, strict=False)") is False


def test_every_core_module_has_mutants_that_compile(mutation: ModuleType) -> None:
    modules = mutation.core_modules()
    assert {"decide", "releases", "policy", "policy_select", "matchers", "argo_status"} <= set(modules)
    for module in modules:
        found = mutation.enumerate_mutants(module)
        assert found, module
        for mutant in (found[0], found[-1]):
            mutation.mutant_code(module, mutant.index)  # compiles
    with pytest.raises(LookupError):
        mutation.mutate("overdue", 10_000)


def test_the_report_names_survivors_with_their_location(mutation: ModuleType) -> None:
    mutant = mutation.Mutant("decide", 7, 117, 117, "compare", "< -> <=", True)
    killed = mutation.Mutant("decide", 8, 118, 118, "compare", "> -> >=", True)
    scores = mutation.summarise(
        [mutation.Result(mutant, "survived", 3, 0.1), mutation.Result(killed, "killed", 1, 0.1)]
    )
    text = mutation.report(scores, 1.0)
    assert "rollbackbot/core/decide.py:117" in text and "decide:7" in text and "< -> <=" in text
    assert "50.0%" in text


def test_tests_that_import_a_module_count_for_its_import_time_mutants(
    mutation: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A test that only builds a dataclass runs none of the module's lines, yet a changed default breaks it.
    (tmp_path / "test_a.py").write_text("from rollbackbot.core.retries import RetryBudget\n")
    (tmp_path / "test_b.py").write_text("from rollbackbot.core import decide, retries\n")
    (tmp_path / "test_c.py").write_text("from rollbackbot.core.retries_extra import X  # another module\n")
    monkeypatch.setattr(mutation, "ROOT", tmp_path)
    ids = ["test_a.py::test_default", "test_b.py::test_x", "test_c.py::test_y"]
    found = mutation._importing_tests(ids, ["retries", "decide"])
    assert found == {"retries": ["test_a.py::test_default", "test_b.py::test_x"], "decide": ["test_b.py::test_x"]}
