"""Scoring one exchange: parse, run the ruleset, count, redact, and keep it in the forensic ring buffer.

Runs in the scoring worker process (``worker.py``), never on the request path. The ring buffer
holds the last ``buffer_size`` entries of the endpoint, each written only after redaction and
capped in size; ``/forensics/requests`` serves it as JSON lines.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rollbackbot.observer.config import EndpointConfig
from rollbackbot.observer.drift import DriftTracker
from rollbackbot.observer.exporter import ObserverMetrics, ProxyCounters
from rollbackbot.observer.redact import Redactor
from rollbackbot.observer.rules import INPUT_DETECTORS, EndpointRules, OutputScan, scan_input, scan_output
from rollbackbot.observer.traffic import Exchange, Reading, UnreadableExchange, read_exchange

ENTRY_OVERHEAD_CHARS = 4096


class ForensicBuffer:
    """The last N redacted entries as JSON lines; thread-safe (scoring thread writes, admin reads)."""

    def __init__(self, size: int) -> None:
        self._entries: deque[str] = deque(maxlen=size)
        self._lock = threading.Lock()

    def append(self, line: str) -> None:
        """Keep one entry (already redacted and serialised), dropping the oldest when full."""
        with self._lock:
            self._entries.append(line)

    def last(self, limit: int) -> list[str]:
        """The newest ``limit`` entries, oldest first."""
        with self._lock:
            entries = list(self._entries)
        return entries[-limit:] if limit > 0 else []


@dataclass
class Scorer:
    """Scores exchanges for one endpoint and records the result in metrics and the ring buffer."""

    config: EndpointConfig
    metrics: ObserverMetrics
    counters: ProxyCounters
    buffer: ForensicBuffer
    redaction_key: bytes
    text_limit: int
    drift: DriftTracker | None = None

    def __post_init__(self) -> None:
        self.rules = EndpointRules(
            refusal_phrases=self.config.refusal_phrases,
            canary=self.config.canary,
            max_input_bytes=self.config.max_input_bytes,
        )
        self.redactor = Redactor(key=self.redaction_key, canary=self.config.canary)

    def score(self, exchange: Exchange) -> None:
        """Everything the observer learns from one exchange."""
        try:
            reading = read_exchange(exchange, self.config.json_models)
        except UnreadableExchange:
            self.counters.unscanned("parse_error")
            return
        started = time.perf_counter()
        hits = scan_input(reading.inputs, self.rules)
        input_seconds = time.perf_counter() - started
        self._count_input(reading, hits, input_seconds)
        output: OutputScan | None = None
        output_seconds = 0.0
        if exchange.status < 300:
            started = time.perf_counter()
            output = scan_output(reading.answer, self.rules) if reading.answer is not None else None
            output_seconds = time.perf_counter() - started
            self._count_output(reading, output, output_seconds)
        if self.drift is not None:
            self.drift.observe(reading)
        self.buffer.append(
            self._entry(
                exchange,
                reading=reading,
                hits=hits,
                output=output,
                input_seconds=input_seconds,
                output_seconds=output_seconds,
            )
        )

    def _count_input(self, reading: Reading, hits: list[str], seconds: float) -> None:
        labels = self.metrics.labels
        self.metrics.input_seconds.observe(seconds)
        self.metrics.input_bytes.observe(reading.input_bytes)
        for detector in hits:
            if detector in INPUT_DETECTORS:
                self.metrics.injections.labels(**labels, detector=detector).inc()
        if hits:
            self.metrics.flagged_input.inc()

    def _count_output(self, reading: Reading, output: OutputScan | None, seconds: float) -> None:
        labels = self.metrics.labels
        self.metrics.responses.labels(**labels, finish_reason=reading.finish_reason or "none").inc()
        if reading.confidence is not None:
            self.metrics.confidence.observe(reading.confidence)
        if output is None:
            return
        self.metrics.output_seconds.observe(seconds)
        if output.refusal:
            self.metrics.refusals.inc()
        for finding in output.findings:
            self.metrics.pii.labels(**labels, type=finding.type).inc()
        if output.canary:
            self.metrics.canary.inc()
        if output.flagged:
            self.metrics.flagged_output.inc()

    def _entry(
        self,
        exchange: Exchange,
        *,
        reading: Reading,
        hits: list[str],
        output: OutputScan | None,
        input_seconds: float,
        output_seconds: float,
    ) -> str:
        budget = self.text_limit
        inputs: list[str] = []
        redactions: list[dict[str, Any]] = []
        for text in reading.inputs:
            if budget <= 0:
                break
            redacted, found = self.redactor.redact(text, budget)
            inputs.append(redacted)
            redactions.extend({"field": "input", **item} for item in found)
            budget -= len(redacted)
        answer = None
        if reading.answer is not None:
            answer, found = self.redactor.redact(reading.answer, self.text_limit)
            redactions.extend({"field": "output", **item} for item in found)
        entry = {
            "timestamp": datetime.fromtimestamp(exchange.timestamp, UTC).isoformat(),
            "endpoint": self.metrics.labels["endpoint"],
            "model_version": self.metrics.labels["model_version"],
            "path": exchange.path.split("?", 1)[0][:256],
            "status": exchange.status,
            "streamed": exchange.streamed,
            "kind": reading.kind,
            "input": inputs,
            "output": answer,
            "hits": hits,
            "refusal": None if output is None else output.refusal,
            "pii": [] if output is None else output.pii_types,
            "canary": bool(output and output.canary),
            "finish_reason": reading.finish_reason,
            "decision": reading.decision,
            "confidence": reading.confidence,
            "input_bytes": reading.input_bytes,
            "redactions": redactions[:64],
            "timings_ms": {
                "upstream": round(exchange.upstream_seconds * 1000, 3),
                "input_check": round(input_seconds * 1000, 3),
                "output_check": round(output_seconds * 1000, 3),
            },
        }
        line = json.dumps(entry, ensure_ascii=False)
        if len(line) > 2 * self.text_limit + ENTRY_OVERHEAD_CHARS:  # cap: keep the metadata, drop the texts
            entry.update(input=[], output=None, redactions=[], texts_dropped=True)
            line = json.dumps(entry, ensure_ascii=False)
        return line
