"""A scripted Prometheus HTTP API (``GET /api/v1/query``) for canary analysis tests and the demo.

Each query string has a script: a list of answers consumed one per request (the last one repeats).
An answer is a float (one sample), a tuple of floats (one sample each), ``None`` (an empty vector:
no series matched) or ``"error"`` (a 400 ``bad_data``, as Prometheus answers a PromQL syntax
error). Bodies have Prometheus's exact shape (checked against the real server in
``tests/canary/test_prometheus_contract.py``): values are strings, ``NaN``/``+Inf`` spelled as
Prometheus spells them, timestamps unix seconds as floats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

Answer = float | tuple[float, ...] | None | str


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it (strconv.FormatFloat 'f', -1; NaN, +Inf, -Inf)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)).removesuffix(".0") if float(value).is_integer() else repr(float(value))


def query_body(answer: Answer, at: float) -> tuple[int, dict[str, Any]]:
    """Status code and JSON body Prometheus sends for ``answer``."""
    if answer == "error":
        return 400, {"status": "error", "errorType": "bad_data", "error": 'invalid parameter "query": parse error'}
    if isinstance(answer, str):
        raise ValueError(f"unknown scripted answer {answer!r}")
    values: tuple[float, ...] = () if answer is None else answer if isinstance(answer, tuple) else (answer,)
    # One sample: no labels, as an aggregation such as sum(...) or vector(...) returns it.
    labels = [{}] if len(values) == 1 else [{"series": str(i)} for i in range(len(values))]
    result = [{"metric": m, "value": [at, format_value(v)]} for m, v in zip(labels, values, strict=False)]
    return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


class ScriptedPrometheus:
    """Answers instant queries from per-query scripts; records every query it was asked."""

    def __init__(self, scripts: Mapping[str, Sequence[Answer]], now: float = 1_767_225_600.0) -> None:
        self.scripts = {query: list(answers) for query, answers in scripts.items()}
        self.asked: list[str] = []
        self.now = now

    def answer(self, query: str) -> Answer:
        """The next scripted answer for ``query`` (an unknown query matches no series)."""
        self.asked.append(query)
        script = self.scripts.get(query)
        if not script:
            return None
        return script.pop(0) if len(script) > 1 else script[0]

    def handle(self, request: httpx.Request) -> httpx.Response:
        """The HTTP side, for ``httpx.MockTransport``."""
        if request.url.path != "/api/v1/query":
            return httpx.Response(404, text="404 page not found\n")
        status, body = query_body(self.answer(request.url.params.get("query", "")), self.now)
        return httpx.Response(status, json=body)

    def transport(self) -> httpx.MockTransport:
        """An httpx transport answering like Prometheus, without a socket."""
        return httpx.MockTransport(self.handle)
