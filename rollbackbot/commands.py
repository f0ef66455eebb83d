"""What each CLI command does, kept apart from argument parsing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from rollbackbot.core.incident_json import incident_to_api
from rollbackbot.core.incidents import AlertRef, IncidentState, new_incident
from rollbackbot.core.model import target_to_dict
from rollbackbot.core.policy_select import policy_for_app
from rollbackbot.errors import AdapterError, ConfigError, NoTargetError
from rollbackbot.redact import redact_url
from rollbackbot.settings import load_settings


def serve(host: str, port: int, log_format: str) -> int:
    """Run the service until interrupted; SIGTERM drains first (rollbackbot.shutdown)."""
    from rollbackbot.allocator import limit_arenas

    limit_arenas()  # before any thread is started (rollbackbot/allocator.py)
    from rollbackbot.logs import configure_logging
    from rollbackbot.shutdown import serve as serve_gracefully
    from rollbackbot.wiring import build_app

    configure_logging(json_lines=log_format == "json")
    settings = load_settings()
    return serve_gracefully(build_app(settings), host, port, settings.shutdown_grace_seconds)


def policy_check(directory: Path) -> int:
    """Validate policies; print file:line errors and exit 1 when there are any."""
    from rollbackbot.policy_files import check_directory

    problems = check_directory(directory)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in {directory}", file=sys.stderr)
        return 1
    print(f"policies in {directory}: OK")
    return 0


def plan(app: str) -> int:
    """Print what a rollback of the app would do, without doing it."""
    from rollbackbot.wiring import build

    wired = build(load_settings())
    wired.git.ensure_clone()
    policy, target = policy_for_app(wired.service.policies, app)
    result = wired.git.plan(target)
    current = result.current.name if result.current else f"untagged@{result.head[:12]}"
    print(f"app:      {app}  (policy {policy.name}, mode {policy.spec.mode.value})")
    print(f"head:     {result.head}")
    print(f"current:  {current}")
    for skipped in result.skipped:
        print(f"skipped:  {skipped.name}: {skipped.reason}")
    if result.target is None:
        print(f"target:   none: {result.no_target_reason}")
        print("would:    suppress the rollback and tell a human")
        return 1
    print(
        f"target:   {result.target.name}  Model-Digest {result.target.model_digest}  "
        f"Data-Version {result.target.data_version}"
    )
    print(f"paths:    {', '.join(target.paths)}")
    print(result.diff_stat.rstrip() or "(no changes)")
    print(f"would:    {policy.spec.mode.value}: commit on {result.branch}, then sync {', '.join(target.apps)}")
    return 0


async def readiness(app: str | None, as_json: bool) -> int:
    """Check that every guarded app (or ``app``) can be rolled back now; exit 1 when one cannot."""
    from rollbackbot.core.readiness import render_table, report_to_json
    from rollbackbot.wiring import build, readiness_checker

    settings = load_settings()
    wired = build(settings)
    try:
        report = await readiness_checker(settings, wired, own_clone=False).check(wired.service.policies, app)
    finally:
        await wired.argocd.aclose()
    print(json.dumps(report_to_json(report), indent=2) if as_json else render_table(report))
    return 0 if report.ready else 1


async def rollback(app: str, to_tag: str | None) -> int:
    """Roll the app back now through the same steps and records as an automatic rollback."""
    from rollbackbot.wiring import build

    wired = build(load_settings())
    wired.git.ensure_clone()
    policy, target = policy_for_app(wired.service.policies, app)
    if to_tag:
        result = await asyncio.to_thread(wired.git.plan_to, target, to_tag)
    else:
        result = await asyncio.to_thread(wired.git.plan, target)
    if result.target is None:
        raise NoTargetError(f"no verified target for {app}: {result.no_target_reason}")
    now = wired.service.clock.now()
    user = os.environ.get("USER", "operator")
    ref = AlertRef(
        name="ManualRollback",
        fingerprint=hashlib.sha256(f"{app}{now.isoformat()}".encode()).hexdigest()[:16],
        starts_at=now,
        labels={"app": app, "requested_by": user},
    )
    incident = new_incident(
        app=target.app, policy=policy.name, mode="manual", alert=ref, target=target_to_dict(target), now=now
    ).with_policy(policy)
    current = result.current.name if result.current else f"untagged@{result.head[:12]}"
    incident = (
        incident.with_plan(result)
        .with_approver(f"{user} (cli)")
        .with_state(IncidentState.rolling_back, now, f"manual rollback {current} -> {result.target.name} by {user}")
    )
    wired.store.create(incident)
    final = await wired.service.run_incident(incident.id, follow_verification=False)
    await wired.argocd.aclose()
    assert final is not None
    print(json.dumps(incident_to_api(final), indent=2))
    return 0 if final.state is IncidentState.rolled_back else 1


def incidents(incident_id: str | None, as_json: bool, url: str | None = None) -> int:
    """List incidents newest first, or show one with its events.

    With ``url`` (``--url`` or ROLLBACKBOT_API_URL) it asks the running service's /api with the bearer
    token from ROLLBACKBOT_API_TOKEN (else ROLLBACKBOT_WEBHOOK_TOKEN); without, it reads the local store.
    """
    found_one, rows = _incidents_from_api(url, incident_id) if url else _incidents_from_store(incident_id)
    if incident_id:
        if found_one is None:
            print(f"no incident {incident_id}", file=sys.stderr)
            return 1
        if as_json:
            print(json.dumps(found_one, indent=2))
            return 0
        _print_incident(found_one)
        return 0
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for item in rows:
        created = str(item.get("created_at") or "")
        print(f"{created[:19].replace('T', ' ')}  {item['id']}  {item['app']:<24} {item['state']:<18} {item['reason']}")
    return 0


def _print_incident(data: dict[str, Any]) -> None:
    print(f"{data['id']}  {data['app']}  {data['state']}  policy {data['policy']}  mode {data['mode']}")
    alert, source, target = data["alert"], data["from"], data["to"]
    print(f"alert {alert['name']} {alert['fingerprint']}  from {source['tag']} to {target['tag']}")
    if data.get("rollback_commit"):
        print(f"commit {data['rollback_commit']}")
    for event in data["events"]:
        print(f"  {event['at'][:19].replace('T', ' ')}  {event['state']:<18} {event['detail']}")


def _incidents_from_store(incident_id: str | None) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    from rollbackbot.adapters.store_sql import SqlIncidentStore

    store = SqlIncidentStore(os.environ.get("ROLLBACKBOT_DATABASE_URL", "sqlite:///.rollbackbot/state.db"))
    if incident_id:
        found = store.get(incident_id)
        return (incident_to_api(found) if found else None), []
    return None, [incident_to_api(i) for i in store.recent(100)]


def _incidents_from_api(url: str, incident_id: str | None) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    import httpx

    token = os.environ.get("ROLLBACKBOT_API_TOKEN") or os.environ.get("ROLLBACKBOT_WEBHOOK_TOKEN", "")
    path = f"/api/incidents/{incident_id}" if incident_id else "/api/incidents"
    try:
        answer = httpx.get(url.rstrip("/") + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    except httpx.HTTPError as exc:
        raise AdapterError(f"cannot reach {redact_url(url)}: {type(exc).__name__}") from None
    if answer.status_code == 401:
        raise ConfigError("the service refused the token: set ROLLBACKBOT_API_TOKEN (or ROLLBACKBOT_WEBHOOK_TOKEN)")
    if answer.status_code == 404 and incident_id:
        return None, []
    if answer.status_code != 200:
        raise AdapterError(f"{redact_url(url)}{path} answered {answer.status_code}")
    body = answer.json()
    return (body, []) if incident_id else (None, list(body["incidents"]))


def db(action: str) -> int:
    """``db upgrade``: migrate the incident store's schema (once, under a lock); ``db current``: say where it is."""
    from sqlalchemy.exc import SQLAlchemyError

    from rollbackbot.adapters.store import migrate
    from rollbackbot.adapters.store_sql import make_engine

    url = os.environ.get("ROLLBACKBOT_DATABASE_URL", "sqlite:///.rollbackbot/state.db")
    engine = make_engine(url)
    try:
        if action == "upgrade":
            migrate.upgrade(engine)
        at = migrate.current(engine)
    except SQLAlchemyError as exc:
        raise ConfigError(
            f"incident store {redact_url(url)}: {type(exc).__name__}; check ROLLBACKBOT_DATABASE_URL"
        ) from None
    finally:
        engine.dispose()
    head = migrate.head()
    print(f"{redact_url(url)}: schema revision {at or 'none'} (this version's newest: {head})")
    return 0 if action == "upgrade" or at == head else 1
