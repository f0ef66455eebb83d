"""The incident pages of a real run (``rollbackbot demo --serve``) in headless Chromium.

Checks the timeline order, the diff against git, the Slack decision, hostile values, the login
redirect, 375 px layouts and basic accessibility (labels, headings, contrast, keyboard). Every
failure leaves a screenshot in ``.test-artifacts/ui/``; ``UI_UPDATE_SCREENSHOTS=1``
also refreshes the README's docs/img/incident-page.png from this run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollbackbot.demo.run import APP, WEBHOOK_TOKEN
from rollbackbot.testing.alertmanager import alert, notification
from tests.ui.browser import ARTIFACTS, DemoServer, git_show, new_driver, require_browser, save_screenshot, start_demo
from tests.ui.conftest import BIDI, HOSTILE

pytestmark = [pytest.mark.e2e]
README_SHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "incident-page.png"


@pytest.fixture(scope="module")
def browser_paths() -> tuple[str, str]:
    return require_browser()


@pytest.fixture(scope="module")
def demo(browser_paths: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    yield from start_demo(tmp_path_factory.mktemp("ui-demo") / "demo")


@pytest.fixture
def browser(browser_paths: tuple[str, str], request: pytest.FixtureRequest) -> Iterator[Any]:
    driver = new_driver(*browser_paths)
    try:
        yield driver
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            save_screenshot(driver, f"FAILED-{request.node.name}")
        driver.quit()


def _sign_in(driver: Any, demo: DemoServer, path: str = "/ui/incidents") -> None:
    from selenium.webdriver.common.by import By

    driver.get(demo.base + path)
    assert "/ui/login" in driver.current_url
    driver.find_element(By.ID, "token").send_keys(demo.token)
    driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    _wait_url(driver, demo.base + path)


def _wait_url(driver: Any, url: str) -> None:
    """Wait (polling, with a deadline) until the navigation a click started has landed on ``url``."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(driver, 15).until(expected_conditions.url_to_be(url))


def _incidents(driver: Any) -> dict[str, str]:
    """Alert name → incident page URL, from the list."""
    from selenium.webdriver.common.by import By

    links = driver.find_elements(By.CSS_SELECTOR, "table.incidents tbody a")
    return {a.text: a.get_attribute("href") for a in links}


def _auto_incident_page(driver: Any) -> str:
    return _incidents(driver)["PromptInjectionSpike"]


def test_a_page_without_a_session_redirects_to_login(browser: Any, demo: DemoServer) -> None:
    from selenium.webdriver.common.by import By

    browser.get(demo.pages)
    assert "/ui/login" in browser.current_url
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
    browser.find_element(By.ID, "token").send_keys("not-the-token-0123456789")
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    error = WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "login-error")))
    assert error.text == "That token is not valid."
    assert browser.get_cookies() == []


def test_the_list_shows_the_demo_incidents_newest_first_with_badges(browser: Any, demo: DemoServer) -> None:
    from selenium.webdriver.common.by import By

    _sign_in(browser, demo)
    assert [c["name"] for c in browser.get_cookies()] == ["rollbackbot_ui"]
    assert browser.get_cookies()[0]["httpOnly"] and browser.get_cookies()[0]["secure"]
    rows = browser.find_elements(By.CSS_SELECTOR, "table.incidents tbody tr")
    times = [r.find_element(By.TAG_NAME, "time").get_attribute("datetime") for r in rows]
    assert len(times) >= 2 and times == sorted(times, reverse=True)
    badges = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "table.incidents .badge")]
    assert badges.count("rolled_back") >= 2
    assert browser.find_element(By.CSS_SELECTOR, "svg.chart title").get_attribute("textContent").startswith("Reaction")


def test_the_incident_page_shows_the_timeline_in_order_and_the_real_diff(browser: Any, demo: DemoServer) -> None:
    from selenium.webdriver.common.by import By

    _sign_in(browser, demo)
    browser.get(_auto_incident_page(browser))
    entries = browser.find_elements(By.CSS_SELECTOR, "#timeline li")
    states = [e.get_attribute("data-state") for e in entries]
    assert states[0] == "alert" and states[-1] == "rolled_back"
    assert states.index("rolling_back") < states.index("syncing") < states.index("rolled_back")
    stamps = [e.find_element(By.TAG_NAME, "time").get_attribute("datetime") for e in entries]
    assert stamps == sorted(stamps)
    sha = browser.find_element(By.ID, "commit-sha").text
    shown = {
        d.find_element(By.CSS_SELECTOR, "code.path").text: d.find_element(By.CSS_SELECTOR, "pre.diff").text
        for d in browser.find_elements(By.CSS_SELECTOR, "details.file")
    }
    changed = git_show(demo.remote, "--format=", "--name-only", sha).split()
    assert sorted(shown) == sorted(changed) and f"apps/{APP}/model.yaml" in shown
    patch = git_show(demo.remote, "--format=", sha, "--", f"apps/{APP}/model.yaml")
    added = [line for line in patch.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert added and all(line in shown[f"apps/{APP}/model.yaml"] for line in added)
    assert browser.find_element(By.ID, "argo-health").text == "Healthy"
    evidence = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "table.evidence a")]
    assert "alert.json" in evidence and "argocd-app.json" in evidence


def test_the_rollback_incident_trailer_resolves_to_the_page(browser: Any, demo: DemoServer) -> None:
    from selenium.webdriver.common.by import By

    _sign_in(browser, demo)
    page = _auto_incident_page(browser)
    browser.get(page)
    sha = browser.find_element(By.ID, "commit-sha").text
    message = git_show(demo.remote, "--no-patch", "--format=%B", sha)
    [trailer] = re.findall(r"^Rollback-Incident: (\S+)$", message, re.MULTILINE)
    browser.get(f"{demo.base}/ui/incidents/{trailer}")
    assert browser.current_url == page
    assert browser.find_element(By.ID, "commit-sha").text == sha


def test_the_slack_decision_names_the_approver(browser: Any, demo: DemoServer) -> None:
    from selenium.webdriver.common.by import By

    _sign_in(browser, demo)
    browser.get(_incidents(browser)["ModelRefusalRateDrop"])
    decision = browser.find_element(By.ID, "slack-decision").text
    assert decision.startswith("approved by Dana Ops (U012ABC) at ")


def test_screenshot_of_an_incident_page(browser: Any, demo: DemoServer) -> None:
    _sign_in(browser, demo)
    browser.get(_auto_incident_page(browser))
    shot = save_screenshot(browser, "incident-page", max_height=2300)  # header to the start of the diff
    assert shot.stat().st_size > 10_000
    if os.environ.get("UI_UPDATE_SCREENSHOTS") == "1":
        README_SHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, README_SHOT)


def _deliver_hostile_alert(demo: DemoServer) -> str:
    labels = {"alertname": "PromptInjectionSpike", "app": APP, "severity": "critical", "note": HOSTILE, "bidi": BIDI}
    body = notification(
        [
            alert(
                labels,
                datetime.now(UTC) - timedelta(seconds=30),
                annotations={"summary": f"{HOSTILE} {'W' * 3000}", "description": BIDI},
            )
        ]
    )
    answer = httpx.post(
        f"{demo.base}/webhook/alertmanager",
        content=json.dumps(body),
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["incidents"][0])


def test_hostile_values_stay_text(browser: Any, demo: DemoServer) -> None:
    from selenium.webdriver.common.by import By

    incident_id = _deliver_hostile_alert(demo)
    _sign_in(browser, demo)
    browser.get(f"{demo.base}/ui/incidents/{incident_id}")
    assert browser.find_element(By.TAG_NAME, "h1").text.endswith("PromptInjectionSpike")
    assert browser.execute_script("return document.scripts.length") == 0
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    body = browser.find_element(By.TAG_NAME, "body").text
    assert '<script>alert("x")</script>' in body  # shown, not run
    assert "safe<U+202E>txt.exe<U+2066>" in body and "\u202e" not in body
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - asking is the check
    browser.set_window_size(375, 900)
    assert _overflowing(browser) == []


_OVERFLOW_JS = """
const width = document.documentElement.scrollWidth;
if (width <= window.innerWidth + 1) return [];
const culprits = [...document.querySelectorAll('body *')]
  .filter(e => !(e.parentElement && e.parentElement.closest('.scroll, pre')))
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 || e.scrollWidth > e.clientWidth + 1)
  .filter(e => !e.matches('.scroll, pre, svg, svg *'))
  .slice(0, 8).map(e => e.tagName + '.' + e.className);
return ['document is ' + width + 'px wide', ...culprits];
"""


def _overflowing(driver: Any) -> list[str]:
    """What sticks out to the right, making the page scroll sideways (empty: nothing does)."""
    return list(driver.execute_script(_OVERFLOW_JS))


def test_pages_are_usable_375px_wide(browser_paths: tuple[str, str], demo: DemoServer) -> None:
    from selenium.webdriver.common.by import By

    driver = new_driver(*browser_paths, width=375, height=800)
    try:
        _sign_in(driver, demo)
        assert _overflowing(driver) == []
        driver.get(_auto_incident_page(driver))
        assert _overflowing(driver) == []
        ok = driver.find_element(By.ID, "state")
        assert ok.is_displayed() and ok.rect["x"] + ok.rect["width"] <= 375
    except BaseException:
        save_screenshot(driver, "FAILED-375px")
        raise
    finally:
        driver.quit()


_CONTRAST_JS = """
function lum(c){const m=c.match(/[\\d.]+/g).map(Number);const [r,g,b]=m.slice(0,3).map(v=>{v/=255;
 return v<=0.03928?v/12.92:Math.pow((v+0.055)/1.055,2.4)});return 0.2126*r+0.7152*g+0.0722*b}
function bg(el){while(el){const c=getComputedStyle(el).backgroundColor;
 if(c&&!c.startsWith('rgba(0, 0, 0, 0)')&&c!=='transparent')return c;el=el.parentElement}return 'rgb(255, 255, 255)'}
const bad=[];
for(const el of document.querySelectorAll('body *')){
 if(!el.offsetParent&&el.tagName!=='BODY')continue;
 const own=[...el.childNodes].some(n=>n.nodeType===3&&n.textContent.trim());if(!own)continue;
 const a=lum(getComputedStyle(el).color),b=lum(bg(el));const ratio=(Math.max(a,b)+0.05)/(Math.min(a,b)+0.05);
 if(ratio<4.5)bad.push(el.tagName+'.'+el.className+': '+ratio.toFixed(2));}
return bad;
"""


def test_basic_accessibility(browser: Any, demo: DemoServer) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _sign_in(browser, demo)
    for url in (demo.pages, _auto_incident_page(browser)):
        browser.get(url)
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
        assert len(browser.find_elements(By.TAG_NAME, "h1")) == 1
        levels = [int(h.tag_name[1]) for h in browser.find_elements(By.CSS_SELECTOR, "h1, h2, h3, h4")]
        assert all(b - a <= 1 for a, b in zip(levels, levels[1:], strict=False)), levels
        for field in browser.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), select"):
            field_id = field.get_attribute("id")
            assert field_id and browser.find_elements(By.CSS_SELECTOR, f"label[for='{field_id}']"), field_id
        assert browser.execute_script(_CONTRAST_JS) == []
        for svg in browser.find_elements(By.CSS_SELECTOR, "svg"):
            assert svg.get_attribute("role") == "img" and svg.find_elements(By.TAG_NAME, "title")
    browser.get(demo.pages)
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    first = browser.switch_to.active_element
    assert first.text == "Skip to content"
    seen = []
    for _ in range(40):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        active = browser.switch_to.active_element
        outline = browser.execute_script("return getComputedStyle(arguments[0]).outlineStyle", active)
        assert outline != "none", active.get_attribute("outerHTML")[:120]
        seen.append(active.get_attribute("href") or active.text)
        if active.get_attribute("href") and "/ui/incidents/inc-" in active.get_attribute("href"):
            break
    assert any("/ui/incidents/inc-" in s for s in seen), seen
    assert ARTIFACTS.name == "ui"
