"""Prometheus HTTP API (``GET /api/v1/query``) for canary analysis: one instant query, values out.

Transport errors, 5xx and 503 "query timed out"/"overloaded" answers are ``TransientError``; a 400
(bad PromQL) is ``PermanentError``, because retrying a typo in a policy never helps.
"""

from __future__ import annotations

from typing import Any

import httpx

from rollbackbot.core.analysis import QueryResult
from rollbackbot.errors import PermanentError, TransientError
from rollbackbot.redact import redact_url


class PrometheusClient:
    """Instant queries against one Prometheus (or Thanos/Mimir query frontend) base URL."""

    def __init__(self, url: str, *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def query(self, name: str, promql: str) -> QueryResult:
        """Evaluate ``promql`` now; every sample's value (vector or scalar), empty when there is none."""
        where = redact_url(self.url)
        try:
            response = await self._http.get(f"{self.url}/api/v1/query", params={"query": promql})
        except httpx.HTTPError as exc:
            raise TransientError(f"Prometheus {where}: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise TransientError(f"Prometheus {where} answered {response.status_code}")
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            raise TransientError(f"Prometheus {where} answered {response.status_code} without JSON") from None
        if body.get("status") != "success":
            error = f"{body.get('errorType', '?')}: {str(body.get('error', ''))[:200]}"
            raise PermanentError(f"Prometheus {where} refused query {name!r}: {error}")
        return QueryResult(name, tuple(_values(body.get("data") or {})))


def _values(data: dict[str, Any]) -> list[float]:
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar" and isinstance(result, list):
        return [float(result[1])]  # Prometheus writes "NaN", "+Inf", "-Inf" as strings; float() reads them
    if kind == "vector" and isinstance(result, list):
        return [float(sample["value"][1]) for sample in result]
    raise PermanentError(f"query must return an instant vector or scalar, not {kind}")
