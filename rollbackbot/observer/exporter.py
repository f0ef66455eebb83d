"""The ``model_observer_*`` metrics (the names the shipped alert rules read) on the admin port.

Every series carries ``endpoint`` (the configured name) and ``model_version`` (one configured
value: bounded), plus the enum labels below; never prompt text, hashes or user ids.

Counted in the proxy process (shared memory, read at scrape time): ``model_observer_requests_total
{status_class}`` for scorable routes, ``model_observer_queue_dropped_total`` (copies dropped on a full
queue), ``model_observer_unscanned_total{reason}`` for ``unsupported`` routes, bodies ``too_large`` to copy
and (written by the worker) ``parse_error``. Counted by the scoring worker: everything else;
``model_observer_queue_depth`` is read from the queue. Queue-full drops are not in
``unscanned_total``: they have their own counter.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from rollbackbot.observer.rules import INPUT_DETECTORS, PII_TYPES, RULESET_VERSION

BASE_LABELS = ("endpoint", "model_version")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
UNSCANNED_REASONS = ("unsupported", "too_large", "parse_error")
_DROPPED = len(STATUS_CLASSES) + len(UNSCANNED_REASONS)


class ProxyCounters:
    """Counters in shared memory, exported by the worker; each slot has one writer process.

    The proxy's event loop writes requests, drops and the ``unsupported``/``too_large`` reasons; the
    worker writes ``parse_error``.
    """

    def __init__(self) -> None:
        self.values: Any = multiprocessing.get_context("spawn").RawArray("Q", _DROPPED + 1)

    def request(self, status: int) -> None:
        """One request on a scorable route answered with ``status``."""
        self.values[min(max(status // 100, 1), 5) - 1] += 1

    def unscanned(self, reason: str) -> None:
        """One exchange not scored, by reason (one of ``UNSCANNED_REASONS``)."""
        self.values[len(STATUS_CLASSES) + UNSCANNED_REASONS.index(reason)] += 1

    def dropped(self) -> None:
        """One copy dropped because the queue was full."""
        self.values[_DROPPED] += 1


class _ProxyCollector(Collector):
    def __init__(self, counters: ProxyCounters, labels: dict[str, str], depth: Callable[[], int]) -> None:
        self._counters = counters
        self._labels = labels
        self._depth = depth

    def collect(self) -> Iterator[Any]:
        names, values = list(self._labels), list(self._labels.values())
        requests = CounterMetricFamily(
            "model_observer_requests_total",
            "Requests on scorable routes by status class",
            labels=[*names, "status_class"],
        )
        for index, status_class in enumerate(STATUS_CLASSES):
            requests.add_metric([*values, status_class], float(self._counters.values[index]))
        yield requests
        unscanned = CounterMetricFamily(
            "model_observer_unscanned_total", "Exchanges not scored, by reason", labels=[*names, "reason"]
        )
        for index, reason in enumerate(UNSCANNED_REASONS):
            unscanned.add_metric([*values, reason], float(self._counters.values[len(STATUS_CLASSES) + index]))
        yield unscanned
        dropped = CounterMetricFamily(
            "model_observer_queue_dropped_total", "Copies dropped because the scoring queue was full", labels=names
        )
        dropped.add_metric(values, float(self._counters.values[_DROPPED]))
        yield dropped
        depth = GaugeMetricFamily("model_observer_queue_depth", "Copies waiting for the scoring worker", labels=names)
        depth.add_metric(values, float(self._depth()))
        yield depth


class ObserverMetrics:
    """The worker's metric objects, already bound to this endpoint and model version."""

    def __init__(self, endpoint: str, model_version: str, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.labels = {"endpoint": endpoint, "model_version": model_version}
        reg = self.registry

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, [*BASE_LABELS, *extra], registry=reg)

        self.responses = counter(
            "model_observer_responses_total", "Scored responses by finish reason", ("finish_reason",)
        )
        self.refusals = counter("model_observer_refusals_total", "Responses that refuse").labels(**self.labels)
        self.injections = counter(
            "model_observer_injection_detections_total", "Prompt-injection pattern hits", ("detector",)
        )
        self.flagged = counter("model_observer_flagged_requests_total", "Requests with any hit", ("direction",))
        self.pii = counter("model_observer_output_pii_total", "PII or secrets in outputs", ("type",))
        self.canary = counter("model_observer_canary_leaks_total", "System-prompt canary in an output").labels(
            **self.labels
        )
        self.feedback = counter(
            "model_observer_feedback_errors_total", "Errors confirmed by feedback", ("kind", "confidence")
        )
        self.input_bytes = Histogram(
            "model_observer_input_bytes",
            "Input size in bytes",
            BASE_LABELS,
            buckets=(64, 256, 1024, 4096, 16384, 65536, 262144, 1048576),
            registry=reg,
        ).labels(**self.labels)
        self.confidence = Histogram(
            "model_observer_confidence",
            "Model confidence in its answer or decision (0-1)",
            BASE_LABELS,
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
            registry=reg,
        ).labels(**self.labels)
        self.check_seconds = Histogram(
            "model_observer_check_duration_seconds",
            "The guard layer's own latency per stage",
            [*BASE_LABELS, "stage"],
            buckets=(25e-6, 50e-6, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=reg,
        )
        self.drift_psi = Gauge(
            "model_observer_drift_psi",
            "Population stability index vs the baseline",
            [*BASE_LABELS, "feature"],
            registry=reg,
        )
        self.drift_samples = Gauge(
            "model_observer_drift_window_samples",
            "Samples in the drift window",
            [*BASE_LABELS, "feature"],
            registry=reg,
        )
        Gauge(
            "model_observer_build_info", "Observer build", [*BASE_LABELS, "version", "ruleset_version"], registry=reg
        ).labels(**self.labels, version=version, ruleset_version=RULESET_VERSION).set(1)
        self._initialise()
        # Bound children of the hot series (``labels()`` costs more than the increment itself).
        self.input_seconds = self.check_seconds.labels(**self.labels, stage="input")
        self.output_seconds = self.check_seconds.labels(**self.labels, stage="output")
        self.flagged_input = self.flagged.labels(**self.labels, direction="input")
        self.flagged_output = self.flagged.labels(**self.labels, direction="output")

    def _initialise(self) -> None:
        """Create the enum series at 0 so rates and `increase` see the first event."""
        for detector in INPUT_DETECTORS:
            self.injections.labels(**self.labels, detector=detector)
        for direction in ("input", "output"):
            self.flagged.labels(**self.labels, direction=direction)
        for kind in PII_TYPES:
            self.pii.labels(**self.labels, type=kind)
        for kind in ("false_negative", "false_positive"):
            for level in ("high", "low"):
                self.feedback.labels(**self.labels, kind=kind, confidence=level)

    def watch_proxy(self, counters: ProxyCounters, depth: Callable[[], int]) -> None:
        """Export the proxy's shared counters and the queue depth from this registry."""
        self.registry.register(_ProxyCollector(counters, self.labels, depth))
