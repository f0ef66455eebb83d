"""The incident pages in-process: access, escaping of hostile values, diff, evidence, filters."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from html.parser import HTMLParser

from rollbackbot.core.incidents import IncidentState
from rollbackbot.ui.auth import COOKIE_NAME, ProxyTrust, SessionSigner, parse_ranges
from tests.ui.conftest import BIDI, HOSTILE, T0, TOKEN, UiWorld, hostile_incident, login

PAGE = "/ui/incidents/inc-0123456789abcdef"


class _Tags(HTMLParser):
    """Every start tag and attribute, to prove no hostile value became markup."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def test_pages_without_a_session_redirect_to_login(world: UiWorld) -> None:
    for path in ("/ui/incidents", PAGE, f"{PAGE}/evidence/alert.json"):
        answer = world.client.get(path, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/login?next=")


def test_a_wrong_token_is_refused_and_sets_no_cookie(world: UiWorld) -> None:
    answer = world.client.post("/ui/login", data={"token": "wrong-token-0123456789"}, follow_redirects=False)
    assert answer.status_code == 401
    assert "set-cookie" not in answer.headers
    assert world.client.get(PAGE, follow_redirects=False).status_code == 303


def test_login_sets_a_strict_secure_httponly_cookie_and_returns_to_the_page(world: UiWorld) -> None:
    answer = world.client.post("/ui/login", data={"token": TOKEN, "next": PAGE}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == PAGE
    cookie = answer.headers["set-cookie"].lower()
    for attribute in ("httponly", "secure", "samesite=strict", "max-age=", "path=/ui"):
        assert attribute in cookie
    assert TOKEN.lower() not in cookie
    assert world.client.get(PAGE).status_code == 200


def test_login_never_redirects_off_site(world: UiWorld) -> None:
    for target in ("https://evil.example/", "//evil.example/ui/", "/ui/\\evil"):
        answer = world.client.post("/ui/login", data={"token": TOKEN, "next": target}, follow_redirects=False)
        assert answer.headers["location"] == "/ui/incidents"


def test_a_forged_or_expired_cookie_is_not_a_session(world: UiWorld) -> None:
    signer = SessionSigner(TOKEN.encode())
    expired = signer.issue("someone", now=0)
    forged = SessionSigner(b"another-token-0123456789").issue("someone")
    payload, signature = signer.issue("someone").split(".")
    tampered = payload[:-2] + "xx." + signature
    for value in (expired, forged, tampered, "garbage", "a.b.c"):
        world.client.cookies.set(COOKIE_NAME, value, domain="testserver", path="/ui")
        assert world.client.get(PAGE, follow_redirects=False).status_code == 303, value
        world.client.cookies.clear()


def test_every_page_has_a_strict_content_security_policy(world: UiWorld) -> None:
    login(world.client)
    for path in ("/ui/login", "/ui/incidents", PAGE, "/ui/static/ui.css", "/ui/incidents/inc-none"):
        answer = world.client.get(path)
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe" not in csp
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_hostile_values_are_escaped_everywhere(world: UiWorld) -> None:
    login(world.client)
    for path in (PAGE, "/ui/incidents"):
        html = world.client.get(path).text
        assert "<script" not in html.lower()
        assert HOSTILE not in html
        assert not [t for t in _tags(html) if t[0] in ("script", "img", "iframe")]
        assert not [t for t in _tags(html) if any(k.startswith("on") for k in t[1])]
        assert "\u202e" not in html and "\u2066" not in html
    html = world.client.get(PAGE).text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html  # shown as text, not dropped
    assert "safe&lt;U+202E&gt;txt.exe&lt;U+2066&gt;" in html


def test_secrets_in_urls_and_evidence_are_redacted(world: UiWorld) -> None:
    login(world.client)
    html = world.client.get(PAGE).text
    for secret in ("hunter2", "sekrit", "sk-live-123456", "abc.def.ghi"):
        assert secret not in html


def test_the_page_shows_plan_commit_trailers_diff_and_evidence(world: UiWorld) -> None:
    login(world.client)
    html = world.client.get(PAGE).text
    assert world.commit in html
    assert "Rollback-Incident" in html and world.incident.id in html
    assert "apps/model.yaml" in html and "apps/new.yaml" in html
    assert '<span class="del">-image: broken</span>' in html
    assert '<span class="add">+image: good</span>' in html
    assert "sha256:good" in html and "ds-1" in html
    assert "fraud-llm/v1.5" in html
    manifest = (world.evidence_root / "manifest.json").read_text()
    for digest in re.findall(r'"sha256": "([0-9a-f]{64})"', manifest):
        assert digest in html
    assert "Flagged requests" in html
    assert '<h3 id="h-trigger">Triggered by</h3>' in html and "<code>instruction_override</code>" in html
    assert "IGNORE PREVIOUS INSTRUCTIONS &lt;script&gt;" in html and "7 flagged request(s) · canary leaked" in html
    assert "<svg" in html  # the reaction-time chart


def test_timeline_is_in_order_and_relative_to_the_alert(world: UiWorld) -> None:
    login(world.client)
    html = world.client.get(PAGE).text
    states = re.findall(r'<li class="kind-\w+" data-state="(\w+)"', html)
    assert states == ["alert", "received", "received", "rolling_back", "syncing", "rolled_back"]
    offsets = re.findall(r"<time datetime=\"[^\"]+\" title=\"[^\"]+\">([^<]+)</time>", html)
    assert offsets[0] == "+0.000 s" and offsets[1] == "+30.000 s" and offsets[-1] == "+40.000 s"


def test_evidence_files_download_only_from_the_manifest(world: UiWorld) -> None:
    login(world.client)
    answer = world.client.get(f"{PAGE}/evidence/requests.jsonl")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/octet-stream"
    assert "attachment" in answer.headers["content-disposition"]
    (world.evidence_root.parent / "secret.txt").write_text("not evidence")
    for name in ("../secret.txt", "..%2Fsecret.txt", "nothere.json", "/etc/passwd"):
        assert world.client.get(f"{PAGE}/evidence/{name}").status_code == 404, name


def test_list_filters_and_pagination(world: UiWorld) -> None:
    for n in range(5):
        other = replace(
            hostile_incident(f"inc-other{n:011d}"),
            app="support-llm",
            policy="support-llm-refusal",
            state=IncidentState.rejected,
            created_at=T0 - timedelta(days=2, minutes=n),
        )
        world.store.create(other)
    login(world.client)

    def ids(query: str) -> list[str]:
        return re.findall(r'href="/ui/incidents/(inc-[0-9a-z]+)"', world.client.get(f"/ui/incidents?{query}").text)

    assert len(ids("")) == 6
    assert ids("app=fraud-llm") == ["inc-0123456789abcdef"]
    assert ids("state=rolled_back") == ["inc-0123456789abcdef"]
    assert len(ids("policy=support-llm-refusal")) == 5
    assert ids("since=24h") == ["inc-0123456789abcdef"]
    first = world.client.get("/ui/incidents?limit=4").text
    assert len(re.findall(r'href="/ui/incidents/(inc-[0-9a-z]+)"', first)) == 4
    older = re.search(r'rel="next" href="/ui/incidents\?([^"]+)"', first)
    assert older is not None
    rest = ids(older.group(1).replace("&amp;", "&"))
    assert len(rest) == 2 and not set(rest) & set(ids("limit=4"))


def test_the_list_pages_through_the_store_so_every_incident_is_reachable(world: UiWorld) -> None:
    """Keyset pages like the API: an incident older than a thousand newer ones is still listed."""
    for n in range(1001):
        newer = replace(
            hostile_incident(f"inc-newer{n:011d}"),
            app="support-llm",
            policy="support-llm-refusal",
            created_at=T0 + timedelta(seconds=n + 1),
        )
        world.store.create(newer)
    login(world.client)
    listed = world.client.get("/ui/incidents?app=fraud-llm").text
    assert re.findall(r'href="/ui/incidents/(inc-[0-9a-z]+)"', listed) == ["inc-0123456789abcdef"]
    by_policy = world.client.get("/ui/incidents?policy=support-llm-refusal&limit=200").text
    assert len(re.findall(r'href="/ui/incidents/(inc-[0-9a-z]+)"', by_policy)) == 200
    assert 'rel="next"' in by_policy
    assert world.client.get("/ui/incidents?cursor=not-a-cursor").status_code == 400


def test_a_trusted_proxy_user_header_signs_in_only_from_its_range(world: UiWorld) -> None:
    trusted = ProxyTrust(parse_ranges("10.0.0.0/8, 2001:db8::/32"))
    assert trusted.user_of("10.1.2.3", {"x-forwarded-user": "dana@example.com"}) == "dana@example.com"
    assert trusted.user_of("192.0.2.1", {"x-forwarded-user": "dana@example.com"}) is None
    assert trusted.user_of("10.1.2.3", {}) is None
    # In the app: the TestClient's peer is "testclient", which is in no range, so the header is ignored.
    answer = world.client.get(PAGE, headers={"X-Forwarded-User": "mallory"}, follow_redirects=False)
    assert answer.status_code == 303


def test_an_unknown_incident_is_a_404_page(world: UiWorld) -> None:
    login(world.client)
    answer = world.client.get(f"/ui/incidents/{BIDI}<b>")
    assert answer.status_code == 404 and "<b>" not in answer.text


def test_the_decision_names_the_rules_in_the_order_they_applied() -> None:
    from rollbackbot.core.incidents import new_incident
    from rollbackbot.ui.views import decision, rules_applied

    base = hostile_incident()
    fresh = new_incident(app="a", policy="p", mode="auto", alert=base.alert, target={}, now=T0)
    waited = fresh.with_event(T0, "debounce: waiting until the alert has fired 2m")
    rolled = waited.with_state(IncidentState.rolling_back, T0, "a/v2 -> a/v1 (policy mode is auto)")
    assert rules_applied(rolled) == ["debounce", "policy mode auto"]
    cooled = fresh.with_state(IncidentState.suppressed, T0, "cooldown: app rolled back at 2026-11-25T11:00:00Z")
    assert decision(cooled, None).rule == "cooldown"
    assert decision(cooled, None).outcome.startswith("do nothing (suppressed): cooldown: app rolled back")
    assert decision(rolled, None).outcome == "roll back now: a/v2 -> a/v1 (policy mode is auto)"
    spent = fresh.with_state(IncidentState.suppressed, T0, "budget spent: 3 rollbacks in 1 day")
    assert rules_applied(spent) == ["budget"]
    proposed = fresh.with_state(IncidentState.awaiting_approval, T0, "a/v2 -> a/v1 (policy mode is propose)")
    approved = proposed.with_approver("Dana Ops U012ABC").with_state(IncidentState.approved, T0, "approved")
    assert (
        decision(approved, "channel C1, message ts 1.2").person
        == "approved by Dana Ops (U012ABC) at 2026-11-25 12:00:00 UTC"
    )


def test_repeated_wrong_tokens_are_throttled_then_forgiven() -> None:
    from rollbackbot.ui.auth import LoginThrottle

    now = [0.0]
    throttle = LoginThrottle(limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert not throttle.blocked("192.0.2.1")
        throttle.failed("192.0.2.1")
    assert throttle.blocked("192.0.2.1") and not throttle.blocked("192.0.2.2")
    now[0] = 61.0
    assert not throttle.blocked("192.0.2.1")


def test_the_login_form_answers_429_after_too_many_wrong_tokens(world: UiWorld) -> None:
    for _ in range(10):
        assert world.client.post("/ui/login", data={"token": "wrong-0123456789abcdef"}).status_code == 401
    answer = world.client.post("/ui/login", data={"token": TOKEN}, follow_redirects=False)
    assert answer.status_code == 429 and "set-cookie" not in answer.headers


async def test_the_proxy_user_signs_in_only_from_the_trusted_range(world: UiWorld) -> None:
    import httpx

    from rollbackbot.ui import UiConfig
    from tests.ui.conftest import build_app

    config = UiConfig(
        store=world.store,
        token=TOKEN,
        git_workdir=world.evidence_root,
        proxy=ProxyTrust(parse_ranges("10.0.0.0/8")),
    )
    app = build_app(config)
    for peer, expected in (("10.1.2.3", 200), ("192.0.2.7", 303)):
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="https://rollbackbot") as client:
            answer = await client.get(PAGE, headers={"X-Forwarded-User": "dana@example.com"})
            assert answer.status_code == expected, peer
            if expected == 200:
                assert "Signed in as dana@example.com" in answer.text


def test_a_pull_request_incident_links_its_pull_request_and_merge_commit(world: UiWorld) -> None:
    pull = {
        "forge": "github",
        "repository": "acme/gitops",
        "number": 7,
        "url": "https://github.example/acme/gitops/pull/7",
        "branch": f"rollbackbot/fraud-llm/{world.incident.id}",
        "merge_commit": "f" * 40,
    }
    pulled = replace(world.incident, pull_request=pull)
    world.store.save(pulled, world.incident.state)
    login(world.client)
    html = world.client.get(PAGE).text
    [link] = [attrs for tag, attrs in _tags(html) if tag == "a" and "pull/7" in (attrs.get("href") or "")]
    assert link == {"href": "https://github.example/acme/gitops/pull/7", "rel": "noopener noreferrer"}
    assert f"#7 on github acme/gitops, from rollbackbot/fraud-llm/{world.incident.id}</a>" in html
    assert f"merged as <code>{'f' * 40}</code>" in html
    # A URL that is not http(s) is never made a link.
    saved = world.store.get(world.incident.id)  # the stored version: a save compares it
    assert saved is not None
    world.store.save(replace(saved, pull_request={**pull, "url": "javascript:alert(1)"}), saved.state)
    html = world.client.get(PAGE).text
    assert "javascript:" not in html and "#7 on github acme/gitops" in html


def test_an_incident_answered_but_not_decided_yet_is_shown_once_decided(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Read-your-writes: the page of an id the webhook just answered waits for the inbox drainer."""
    from fastapi.testclient import TestClient

    from rollbackbot.adapters.store_sql import SqlIncidentStore
    from rollbackbot.ui import UiConfig
    from tests.ui.conftest import build_app

    store = SqlIncidentStore(f"sqlite:///{tmp_path}/state.db")
    late = replace(hostile_incident("inc-00000000000000aa"), rollback_commit=None, evidence_url=None)
    waited: list[bool] = []

    async def caught_up() -> bool:  # the drainer decides the webhook's row meanwhile
        waited.append(True)
        store.create(late)
        return True

    config = UiConfig(store=store, token=TOKEN, git_workdir=tmp_path / "repo", caught_up=caught_up)
    with TestClient(build_app(config), base_url="https://testserver") as client:
        login(client)
        assert client.get("/ui/incidents/inc-00000000000000aa").status_code == 200
        assert waited == [True]
        assert client.get("/ui/incidents/inc-00000000000000aa").status_code == 200
        assert waited == [True]  # found at once: no wait at all
