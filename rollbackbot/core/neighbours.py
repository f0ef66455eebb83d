"""Incidents of different apps whose policies share repository paths: purely computational.

Two rollbacks that restore overlapping paths must not run side by side (each would plan on a head
the other is about to move). An incident about to plan defers to a *neighbour*: an unfinished
incident of another app, past its decision (approved, rolling back or syncing), whose paths
overlap its own. Once the neighbour ends, the waiting incident plans on the branch the neighbour
left, so it restores its paths on top of that rollback instead of racing it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

NEIGHBOUR_POLL_SECONDS = 2.0  # how often an incident waiting for a neighbour looks again


def _normalised(path: str) -> str:
    return path.strip("/")


def path_overlaps(a: str, b: str) -> bool:
    """Whether one path is the other or lies under it (``apps/x`` and ``apps/x/model.yaml``)."""
    left, right = _normalised(a), _normalised(b)
    if not left or not right:
        return True  # the repository root overlaps everything
    return left == right or left.startswith(right + "/") or right.startswith(left + "/")


def shared_paths(mine: Iterable[str], theirs: Iterable[str]) -> tuple[str, ...]:
    """My paths that overlap any of theirs, in my order."""
    their_paths = tuple(theirs)
    return tuple(p for p in mine if any(path_overlaps(p, q) for q in their_paths))


@dataclass(frozen=True)
class Neighbour:
    """An unfinished incident of another app, as far as serialising goes."""

    id: str
    app: str
    paths: tuple[str, ...]
    acting: bool  # approved, rolling back or syncing: it is about to move (or moving) the branch


def acting_neighbour(
    app: str, paths: Iterable[str], others: Iterable[Neighbour]
) -> tuple[Neighbour, tuple[str, ...]] | None:
    """The first acting incident of another app that touches one of ``paths``, with the shared paths."""
    mine = tuple(paths)
    for other in others:
        if other.app == app or not other.acting:
            continue
        shared = shared_paths(mine, other.paths)
        if shared:
            return other, shared
    return None


def waiting_reason(neighbour: Neighbour, shared: tuple[str, ...]) -> str:
    return (
        f"waiting: incident {neighbour.id} ({neighbour.app}) is rolling back paths this policy shares"
        f" ({', '.join(shared)}); planning once it ends"
    )
