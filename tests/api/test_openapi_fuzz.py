"""schemathesis against the service's own OpenAPI: no input reaches a 5xx (webhook and API routes)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr

from rollbackbot.adapters.store_sql import SqlIncidentStore
from rollbackbot.api import create_app
from rollbackbot.clock import FakeClock
from rollbackbot.policy_files import load_policies
from rollbackbot.service import Service
from tests.service.fakes import FakeArgo, FakeGit

REPO = Path(__file__).resolve().parents[2]
TOKEN = "fuzz-webhook-token-0123456789"
_DB = Path(tempfile.mkdtemp(prefix="rollbackbot-fuzz-")) / "state.db"

service = Service(
    store=SqlIncidentStore(f"sqlite:///{_DB}"),
    git=FakeGit(),
    argocd=FakeArgo(),
    policies=load_policies(REPO / "policies"),
    clock=FakeClock(),
)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(service, SecretStr(TOKEN)))


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_reaches_a_server_error(case, abuse_report) -> None:  # type: ignore[no-untyped-def]
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}):
        case.headers = {**(case.headers or {}), **headers}
        if not headers:
            case.headers.pop("Authorization", None)
        response = case.call()
        abuse_report.add("bad-input", inputs=1)
        assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
        if not headers and case.path == "/webhook/alertmanager" and case.method == "POST":
            assert response.status_code == 401
