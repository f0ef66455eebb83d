"""The Argo CD API server behind ``rollbackbot.ports.ArgoCD``: refresh, sync, wait, evidence reads.

The rules (auto-sync, "done") live in ``rollbackbot.core.argo_status``; the wire (headers, errors,
retries) in ``argocd_http``. This module is the choreography of docs/argocd-wire.md §6.

The deploy branch moves while we wait (docs/argocd-wire.md §5.5): ``sync`` and ``wait_synced_healthy``
take a ``LineageLookup`` (git facts per revision, from the git adapter) so that Synced and Healthy at a
descendant of our commit with the app's paths unchanged counts as done, and a revision that changed
those paths ends the wait with ``Superseded`` instead of a timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
from pydantic import SecretStr, ValidationError

from rollbackbot.adapters.argocd.http import ArgoHTTP, OperationInProgress
from rollbackbot.core.argo_status import (
    Lineage,
    LineageLookup,
    Relation,
    app_health,
    is_auto_sync,
    judge_sync,
    last_op_succeeded,
    op_covers_revision,
    op_in_progress,
    parse_application,
    reported_revisions,
    short_sha,
)
from rollbackbot.core.model import AppHealth
from rollbackbot.errors import PermanentError, Superseded, TransientError

log = logging.getLogger("rollbackbot.argocd")

MAX_LOG_BYTES = 256 * 1024  # forensic bundles want the tail of a log, not a multi-megabyte dump
DEFAULT_BUSY_TIMEOUT = 300.0


class ArgoCDClient:
    """Argo CD REST client (implements ``rollbackbot.ports.ArgoCD``); time and sleep are injectable."""

    def __init__(
        self,
        base_url: str,
        token: SecretStr,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        request_timeout: float = 30.0,
        refresh_timeout: float = 60.0,
        poll_interval: float = 1.0,
        retry_attempts: int = 5,
        retry_wait_max: float = 10.0,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = ArgoHTTP(
            base_url,
            token,
            transport=transport,
            request_timeout=request_timeout,
            retry_attempts=retry_attempts,
            retry_wait_max=retry_wait_max,
            sleep=sleep,
            monotonic=monotonic,
        )
        self._refresh_timeout = refresh_timeout
        self._poll_interval = poll_interval
        self._busy_timeout = busy_timeout
        self._sleep = sleep
        self._monotonic = monotonic

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying HTTP connections."""
        await self._http.aclose()

    async def get_application(self, app: str, project: str) -> dict[str, Any]:
        """The raw Application object, for evidence."""
        return await self._http.get_json(_app_path(app), {"project": project})

    async def get_resource_tree(self, app: str, project: str) -> dict[str, Any]:
        """The raw resource tree (includes ReplicaSets and Pods), for evidence."""
        return await self._http.get_json(f"{_app_path(app)}/resource-tree", {"project": project})

    async def can_i(self, resource: str, action: str, subresource: str) -> bool:
        """Whether the token may do ``action`` on ``resource``/``subresource`` (``GET /api/v1/account/can-i``).

        Argo CD answers ``{"value": "yes"|"no"}``, never 403, also for an application that does not exist.
        A project-scoped subresource is ``<project>/<app>``; its slash travels percent-encoded in one segment.
        """
        parts = "/".join(quote(part, safe="") for part in (resource, action, subresource))
        data = await self._http.get_json(f"/api/v1/account/can-i/{parts}", {})
        value = data.get("value")
        if value not in ("yes", "no"):
            raise TransientError(f"Argo CD can-i answered {str(value)[:40]!r}, not yes or no")
        return bool(value == "yes")

    async def refresh(self, app: str, project: str) -> AppHealth:
        """Ask Argo CD to compare with Git now; a refresh that hangs falls back to a plain read."""
        try:
            # The server blocks until the controller has reconciled, with no deadline of its own
            # (docs/argocd-wire.md §3.1); one bounded attempt, since a retry would just hang again.
            data = await self._http.get_json(
                _app_path(app),
                {"refresh": "normal", "project": project},
                timeout=self._refresh_timeout,
                attempts=1,
            )
        except TransientError as exc:
            log.info("argocd refresh of %s did not complete (%s); reading it without refresh", app, exc)
            data = await self._http.get_json(_app_path(app), {"project": project})
        _check_application(app, data)
        return app_health(data)

    async def sync(
        self, app: str, project: str, revision: str, prune: bool, lineage: LineageLookup | None = None
    ) -> None:
        """Start a sync that deploys ``revision``, waiting out (or adopting) an operation already running.

        With ``lineage``: an operation for a descendant keeping the app's paths is adopted, and an
        Application that already names a revision which changed them raises Superseded (never synced over).
        """
        lineages = _Lineages(revision, lineage)
        deadline = self._monotonic() + self._busy_timeout
        while True:
            current = await self._read_app(app, project)
            _raise_if_superseded(current, revision, await lineages.of(current))
            body: dict[str, Any] = {"prune": prune, "project": project}
            if not is_auto_sync(current):
                # With auto-sync on, an explicit SHA is refused ("Cannot sync to …"); without a revision
                # the server resolves the tracked branch afresh, which is where the rollback commit is.
                body = {"revision": revision, **body}
            try:
                started = await self._http.post_json(f"{_app_path(app)}/sync", body)
            except OperationInProgress:
                log.info("argocd %s: another operation is in progress; waiting for it", app)
            else:
                _warn_if_other_revision(app, started, revision)
                return
            if await self._wait_out_operation(app, project, revision, deadline, lineages):
                return
            if self._monotonic() >= deadline:
                raise PermanentError(
                    f"could not start a sync of {app} to {short_sha(revision)} within "
                    f"{self._busy_timeout:g}s: Argo CD kept answering that another operation is in progress"
                )
            await self._sleep(self._poll_interval)

    async def wait_synced_healthy(
        self, app: str, project: str, revision: str, timeout: float, lineage: LineageLookup | None = None
    ) -> AppHealth:
        """Poll until the sync of ``revision`` finished, reconciled, Synced and Healthy (docs/argocd-wire.md §0.5).

        With ``lineage``, a descendant of ``revision`` with the app's paths unchanged counts as ``revision``,
        and a reported revision that changed them raises Superseded.
        """
        lineages = _Lineages(revision, lineage)
        deadline = self._monotonic() + timeout
        last_reason = "no answer from Argo CD yet"
        while True:
            try:
                data = await self._read_app(app, project)
            except TransientError as exc:
                # Only the deadline decides; a flaky API server mid-rollout is not a failed rollback.
                last_reason = f"Argo CD unreachable: {exc}"
            else:
                verdict = judge_sync(data, revision, await lineages.of(data))
                log.debug("argocd %s at %s: %s", app, short_sha(revision), verdict.reason)
                if verdict.superseded is not None:
                    raise Superseded(verdict.reason)
                if verdict.done:
                    return verdict.health
                if verdict.failed:
                    raise PermanentError(f"Argo CD sync of {app} to {short_sha(revision)} failed: {verdict.reason}")
                last_reason = verdict.reason
            if self._monotonic() >= deadline:
                raise PermanentError(
                    f"{app} did not become Synced+Healthy at {short_sha(revision)} within {timeout:g}s: {last_reason}"
                )
            await self._sleep(self._poll_interval)

    async def pod_logs(
        self,
        app: str,
        project: str,
        pod_name: str,
        namespace: str,
        *,
        container: str | None = None,
        tail_lines: int = 200,
    ) -> str:
        """The last ``tail_lines`` log lines of one pod of the application, capped at MAX_LOG_BYTES."""
        params = {
            "namespace": namespace,
            "podName": pod_name,
            "tailLines": str(tail_lines),
            "follow": "false",  # without it the stream stays open waiting for new lines
            "project": project,
        }
        if container:
            params["container"] = container
        return await self._http.get_stream(f"{_app_path(app)}/logs", params, self._collect_log)

    async def _collect_log(self, lines: AsyncIterator[str], endpoint: str) -> str:
        """Join the ``content`` of NDJSON ``{"result":{...}}`` entries until ``last`` is true."""
        parts: list[str] = []
        size = 0
        async for raw in lines:
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                raise TransientError(f"Argo CD {endpoint} sent a log line that is not JSON") from None
            if not isinstance(entry, dict):
                continue
            if entry.get("error") is not None:
                raise self._http.stream_error(endpoint, entry["error"])
            result = entry.get("result")
            result = result if isinstance(result, dict) else {}
            content = result.get("content")
            if isinstance(content, str) and content:
                size += len(content.encode()) + 1
                if size > MAX_LOG_BYTES:
                    parts.append(f"[log truncated at {MAX_LOG_BYTES} bytes]")
                    break
                parts.append(content)
            if result.get("last") is True:
                break
        return "\n".join(parts)

    async def _read_app(self, app: str, project: str) -> dict[str, Any]:
        data = await self._http.get_json(_app_path(app), {"project": project})
        _check_application(app, data)
        return data

    async def _wait_out_operation(
        self, app: str, project: str, revision: str, deadline: float, lineages: _Lineages
    ) -> bool:
        """Wait for the running operation to end; True when it deploys ``revision`` and may be adopted."""
        while True:
            current = await self._read_app(app, project)
            facts = await lineages.of(current)
            _raise_if_superseded(current, revision, facts)
            if op_in_progress(current):
                if op_covers_revision(current, revision, facts):
                    # Usually auto-sync got there first; wait_synced_healthy judges its outcome.
                    log.info("argocd %s: adopting the running operation for %s", app, short_sha(revision))
                    return True
            elif op_covers_revision(current, revision, facts) and last_op_succeeded(current):
                log.info("argocd %s: adopting the finished operation for %s", app, short_sha(revision))
                return True
            else:
                return False
            if self._monotonic() >= deadline:
                reason = judge_sync(current, revision).reason
                raise PermanentError(
                    f"could not sync {app} to {short_sha(revision)}: another operation is still running "
                    f"after {self._busy_timeout:g}s ({reason})"
                )
            await self._sleep(self._poll_interval)


class _Lineages:
    """The Lineage of each revision an Application names, looked up once per revision and call."""

    def __init__(self, revision: str, lookup: LineageLookup | None) -> None:
        self._ours = revision.strip().lower()
        self._lookup = lookup
        self._known: dict[str, Lineage] = {}

    async def of(self, app_json: dict[str, Any]) -> dict[str, Lineage]:
        """Facts for the revisions ``app_json`` names other than ours; a git hiccup leaves one out this round."""
        if self._lookup is None:
            return {}
        facts: dict[str, Lineage] = {}
        for seen in reported_revisions(app_json):
            if seen == self._ours:
                continue
            found = self._known.get(seen)
            if found is None:
                try:
                    found = await self._lookup(seen)
                except TransientError as exc:
                    log.info("lineage of %s unknown for now: %s", short_sha(seen), exc)
                    continue
                if found.relation is not Relation.unrelated:  # may be fetched later: ask again then
                    self._known[seen] = found
            facts[seen] = found
        return facts


def _raise_if_superseded(app_json: dict[str, Any], revision: str, facts: dict[str, Lineage]) -> None:
    verdict = judge_sync(app_json, revision, facts)
    if verdict.superseded is not None:
        raise Superseded(verdict.reason)


def _app_path(app: str) -> str:
    # Quoted so a hostile or odd name cannot change the route (names are DNS labels in practice).
    return f"/api/v1/applications/{quote(app, safe='')}"


def _check_application(app: str, data: dict[str, Any]) -> None:
    """Raise TransientError when a 200 body is not a readable Application (a proxy page, a bad shape)."""
    try:
        parse_application(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise TransientError(f"Argo CD returned an unreadable Application {app}: {where}: {first['msg']}") from None


def _warn_if_other_revision(app: str, started: dict[str, Any], revision: str) -> None:
    """The server resolved the tracked branch to another SHA: pushed commit not visible, or superseded."""
    try:
        ours = op_covers_revision(started, revision)
    except ValidationError:
        return
    if not ours:
        log.warning("argocd %s: sync started, but not for %s; the branch may have moved", app, short_sha(revision))
