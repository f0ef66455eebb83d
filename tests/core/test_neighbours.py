"""Which paths overlap, and which incident of another app an incident must wait for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rollbackbot.core.neighbours import (
    Neighbour,
    acting_neighbour,
    look_again_at,
    path_overlaps,
    shared_paths,
    waiting_reason,
)


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
        ("/", "apps/y", True),
        ("models/X", "models/Y", False),  # only slashes are trimmed, not the letters around them
        ("models/X/", "models/XX", False),
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


def test_a_waiting_incident_looks_again_two_seconds_later() -> None:
    now = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)
    assert look_again_at(now) == now + timedelta(seconds=2)


def test_the_waiting_reason_names_the_neighbour_and_the_shared_paths() -> None:
    # The service records one event per neighbour it waits for, recognised by this reason.
    first = Neighbour("inc-7", "docsum-llm", ("apps/shared",), acting=True)
    second = Neighbour("inc-8", "docsum-llm", ("apps/shared",), acting=True)
    reason = waiting_reason(first, ("apps/shared", "apps/common"))
    assert reason.startswith("waiting: incident inc-7 (docsum-llm)")
    assert "apps/shared, apps/common" in reason
    assert reason == waiting_reason(first, ("apps/shared", "apps/common"))
    assert reason != waiting_reason(second, ("apps/shared", "apps/common"))
