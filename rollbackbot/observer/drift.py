"""Baseline ("define normal") and drift: population stability index per feature over a sliding window.

``rollbackbot observer baseline`` reads a traffic sample (the forensic JSON lines, or past requests
as ``{"input": "..."}`` / ``{"input_bytes": n, "confidence": x, "decision": "..."}`` lines) and
writes a baseline: bins frozen from the sample's quantiles for ``input_bytes``, ten fixed bins on
[0, 1] for ``confidence``, and the category shares of ``decision``. Put it under ``baseline:`` in
the endpoint config. The worker then exports ``model_observer_drift_psi{feature}`` over the last
``WINDOW`` observations (only once ``MIN_SAMPLES`` are in the window, with the sample count beside
it in ``model_observer_drift_window_samples``). PSI above ~0.25 is conventionally a major shift.
Pure computation apart from the CLI's file reading.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import Counter, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    from rollbackbot.observer.traffic import Reading

FEATURES = ("input_bytes", "confidence", "decision")

WINDOW = 1000
MIN_SAMPLES = 100
RECOMPUTE_EVERY = 50
EPSILON = 1e-4
QUANTILE_BINS = 10
CONFIDENCE_EDGES = [round(0.1 * step, 1) for step in range(1, 10)]
OTHER = "__other__"


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index of two distributions over the same bins."""
    total = 0.0
    for share_expected, share_actual in zip(expected, actual, strict=True):
        e, a = max(share_expected, EPSILON), max(share_actual, EPSILON)
        total += (a - e) * math.log(a / e)
    return total


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts) or 1
    return [count / total for count in counts]


def _bin_counts(values: Iterable[float], edges: list[float]) -> list[int]:
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[bisect.bisect_right(edges, value)] += 1
    return counts


def _quantile_edges(values: list[float]) -> list[float]:
    ordered = sorted(values)
    edges = {ordered[min(len(ordered) - 1, len(ordered) * step // QUANTILE_BINS)] for step in range(1, QUANTILE_BINS)}
    return sorted(edges)


def _sample_values(record: dict[str, Any]) -> tuple[float | None, float | None, str | None]:
    size = record.get("input_bytes")
    if not isinstance(size, int | float):
        texts = record.get("input")
        texts = [texts] if isinstance(texts, str) else texts if isinstance(texts, list) else []
        size = sum(len(t.encode("utf-8")) for t in texts if isinstance(t, str)) if texts else None
    confidence = record.get("confidence")
    decision = record.get("decision")
    return (
        float(size) if size is not None else None,
        float(confidence) if isinstance(confidence, int | float) and 0 <= confidence <= 1 else None,
        str(decision) if decision is not None else None,
    )


def build_baseline(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A baseline from a traffic sample (one dict per request)."""
    sizes: list[float] = []
    confidences: list[float] = []
    decisions: Counter[str] = Counter()
    for record in records:
        size, confidence, decision = _sample_values(record)
        if size is not None:
            sizes.append(size)
        if confidence is not None:
            confidences.append(confidence)
        if decision is not None:
            decisions[decision] += 1
    features: dict[str, Any] = {}
    if sizes:
        edges = _quantile_edges(sizes)
        features["input_bytes"] = {"edges": edges, "shares": _shares(_bin_counts(sizes, edges)), "samples": len(sizes)}
    if confidences:
        counts = _bin_counts(confidences, CONFIDENCE_EDGES)
        features["confidence"] = {"edges": CONFIDENCE_EDGES, "shares": _shares(counts), "samples": len(confidences)}
    if decisions:
        total = sum(decisions.values())
        features["decision"] = {"categories": {k: v / total for k, v in decisions.items()}, "samples": total}
    return {"version": 1, "features": features}


def _numbers(values: Any) -> TypeGuard[list[float]]:
    return isinstance(values, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def validate_baseline(baseline: dict[str, Any]) -> dict[str, Any]:
    """The baseline itself when it is what ``build_baseline`` writes; ValueError naming the problem."""
    features = baseline.get("features")
    if not isinstance(features, dict) or not features:
        raise ValueError("baseline needs a non-empty 'features' object (rollbackbot observer baseline)")
    for name, spec in features.items():
        if name not in FEATURES or not isinstance(spec, dict):
            raise ValueError(f"baseline feature {name!r}: expected one of {', '.join(FEATURES)} with an object")
        if name == "decision":
            categories = spec.get("categories")
            if not isinstance(categories, dict) or not all(isinstance(v, int | float) for v in categories.values()):
                raise ValueError("baseline feature 'decision': 'categories' must map names to shares")
            continue
        edges, shares = spec.get("edges"), spec.get("shares")
        if not _numbers(edges) or not _numbers(shares) or len(shares) != len(edges) + 1 or edges != sorted(edges):
            raise ValueError(f"baseline feature {name!r}: sorted 'edges' and len(edges)+1 'shares' expected")
    return baseline


def read_sample(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    """JSON objects of a JSON-lines sample; blank and malformed lines are skipped."""
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


class DriftTracker:
    """Sliding windows per feature and their PSI against the baseline; calls ``publish(feature, psi, n)``."""

    def __init__(self, baseline: dict[str, Any], publish: Any) -> None:
        self._features: dict[str, Any] = dict(baseline.get("features") or {})
        self._windows: dict[str, deque[Any]] = {name: deque(maxlen=WINDOW) for name in self._features}
        self._publish = publish
        self._seen = 0

    def observe(self, reading: Reading) -> None:
        """Add one reading; every ``RECOMPUTE_EVERY`` readings, recompute and publish the scores."""
        values = {
            "input_bytes": float(reading.input_bytes),
            "confidence": reading.confidence,
            "decision": reading.decision,
        }
        for name, window in self._windows.items():
            if values.get(name) is not None:
                window.append(values[name])
        self._seen += 1
        if self._seen % RECOMPUTE_EVERY == 0:
            self.publish()

    def scores(self) -> dict[str, tuple[float, int]]:
        """PSI and window size per feature with enough samples."""
        result: dict[str, tuple[float, int]] = {}
        for name, window in self._windows.items():
            if len(window) < MIN_SAMPLES:
                continue
            spec = self._features[name]
            if "categories" in spec:
                categories = list(spec["categories"])
                counts = Counter(value if value in spec["categories"] else OTHER for value in window)
                expected = [spec["categories"][c] for c in categories] + [0.0]
                actual = _shares([counts[c] for c in categories] + [counts[OTHER]])
            else:
                expected = list(spec["shares"])
                actual = _shares(_bin_counts(window, list(spec["edges"])))
            result[name] = (psi(expected, actual), len(window))
        return result

    def publish(self) -> None:
        """Hand the current scores to the exporter."""
        for name, (score, samples) in self.scores().items():
            self._publish(name, score, samples)
