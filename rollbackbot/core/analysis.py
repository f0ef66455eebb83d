"""Canary analysis verdicts: purely computational judgement of Prometheus query results.

An empty result is inconclusive, never a pass (a query over a series that is not scraped yet must
not wave a rollback through); NaN fails (a ratio over zero traffic is not healthy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    """One analysis run: every query passed, one failed, or a query gave nothing to judge."""

    passed = "passed"
    failed = "failed"
    inconclusive = "inconclusive"


@dataclass(frozen=True)
class QueryResult:
    """Samples a query returned (an instant vector flattened to its values); empty = no data."""

    name: str
    values: tuple[float, ...]


def judge_query(result: QueryResult, maximum: float | None, minimum: float | None) -> tuple[Verdict, str]:
    """Pass when every sample is within the threshold; NaN fails; an empty result is inconclusive."""
    if not result.values:
        return Verdict.inconclusive, f"{result.name}: no data"
    for value in result.values:
        if math.isnan(value):  # NaN: a ratio over zero traffic; never read as healthy
            return Verdict.failed, f"{result.name}: NaN"
        if maximum is not None and value > maximum:
            return Verdict.failed, f"{result.name}: {value:g} > max {maximum:g}"
        if minimum is not None and value < minimum:
            return Verdict.failed, f"{result.name}: {value:g} < min {minimum:g}"
    return Verdict.passed, f"{result.name}: ok ({', '.join(f'{v:g}' for v in result.values)})"


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """A failure anywhere fails the run; otherwise any inconclusive query makes it inconclusive."""
    if Verdict.failed in verdicts:
        return Verdict.failed
    if Verdict.inconclusive in verdicts:
        return Verdict.inconclusive
    return Verdict.passed


def next_streak(streak: int, verdict: Verdict) -> int:
    """Consecutive passes after this run: only a pass counts, anything else starts over."""
    return streak + 1 if verdict is Verdict.passed else 0
