"""Which paths overlap, and which incident of another app an incident must wait for."""

from __future__ import annotations

import pytest

from rollbackbot.core.neighbours import Neighbour, acting_neighbour, path_overlaps, shared_paths


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("apps/x", "apps/x", True),
        ("apps/x", "apps/x/model.yaml", True),
        ("apps/x/", "/apps/x", True),
        ("apps/x/model.yaml", "apps/x", True),
        ("apps/x", "apps/xy", False),  # a common prefix is not a common directory
        ("apps/x", "apps/y", False),
        ("", "apps/y", True),  # the repository root holds everything
    ],
)
def test_path_overlaps(a: str, b: str, overlap: bool) -> None:
    assert path_overlaps(a, b) is overlap
    assert path_overlaps(b, a) is overlap


def test_shared_paths_keeps_my_order() -> None:
    assert shared_paths(["apps/b", "apps/a/x", "apps/c"], ["apps/a", "apps/b/y"]) == ("apps/b", "apps/a/x")


def test_only_an_acting_incident_of_another_app_is_waited_for() -> None:
    paths = ["apps/shared"]
    same_app = Neighbour("i-1", "x", ("apps/shared",), acting=True)
    deciding = Neighbour("i-2", "y", ("apps/shared",), acting=False)
    disjoint = Neighbour("i-3", "z", ("apps/other",), acting=True)
    acting = Neighbour("i-4", "w", ("apps/shared/route.yaml",), acting=True)
    assert acting_neighbour("x", paths, [same_app, deciding, disjoint]) is None
    assert acting_neighbour("x", paths, [same_app, deciding, disjoint, acting]) == (acting, ("apps/shared",))
