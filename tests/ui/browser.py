"""Headless Chromium from Debian, driven by Selenium with the matching chromium-driver.

Skipped with a reason when the browser, the driver or Selenium is missing; under ``CI=true`` that is
a failure instead, because ``.ci/run`` installs them. Screenshots go to ``ARTIFACTS``.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("UI_TEST_ARTIFACTS", REPO / ".test-artifacts")) / "ui"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
DEMO_START_SECONDS = 180.0


def _first(paths: tuple[str, ...]) -> str | None:
    return next((p for p in paths if Path(p).is_file()), None)


def require_browser() -> tuple[str, str]:
    """The Chromium and chromedriver paths, or a skip (a failure under CI=true) saying what is missing."""
    problem = ""
    chromium, driver = _first(CHROMIUM), _first(DRIVER)
    try:
        import selenium  # noqa: F401
    except ImportError:
        problem = "selenium is not installed (pip install -e '.[dev]')"
    if chromium is None:
        problem = "Debian's chromium is not installed (.ci/run installs it when run as root: apt-get install chromium)"
    elif driver is None:
        problem = "chromium-driver is not installed (.ci/run installs it: apt-get install chromium-driver)"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}; under CI=true the browser tests must run")
        pytest.skip(problem)
    assert chromium is not None and driver is not None
    return chromium, driver


def new_driver(chromium: str, driver: str, width: int = 1280, height: int = 1800) -> Any:
    """A fresh headless browser (no cookies) at the given window size."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in CI containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


@dataclass
class DemoServer:
    """``rollbackbot demo --serve`` running: its pages' URL, the token, the sandbox directory."""

    process: subprocess.Popen[str]
    pages: str
    token: str
    workdir: Path
    output: list[str]

    @property
    def base(self) -> str:
        return self.pages.removesuffix("/ui/incidents")

    @property
    def remote(self) -> Path:
        return self.workdir / "gitops" / "remote.git"


def _reader(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def start_demo(workdir: Path) -> Iterator[DemoServer]:
    """Run the real demo with ``--serve``; wait for the line announcing the pages; stop it with SIGINT."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rollbackbot", "demo", "--serve", "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=workdir.parent,
        env={k: v for k, v in os.environ.items() if not k.startswith("ROLLBACKBOT_")},
    )
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True).start()
    output: list[str] = []
    deadline = time.monotonic() + DEMO_START_SECONDS
    announced = None
    try:
        while announced is None:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                pytest.fail("the demo ended before serving its pages:\n" + "".join(output))
            output.append(line)
            announced = re.search(r"incident pages: (\S+) \(sign in with the API token (\S+)\)", line)
        assert any(line.startswith("demo OK") for line in output), "".join(output)
        _wait_for(lines, output, "serving until interrupted", deadline)
        yield DemoServer(process, announced.group(1), announced.group(2), workdir, output)
    except queue.Empty:
        pytest.fail("the demo did not announce its pages in time:\n" + "".join(output))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for(lines: queue.Queue[str | None], output: list[str], text: str, deadline: float) -> None:
    while not any(text in line for line in output):
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if line is None:
            pytest.fail(f"the demo ended before saying {text!r}:\n" + "".join(output))
        output.append(line)


def save_screenshot(driver: Any, name: str, max_height: int = 8000) -> Path:
    """A PNG of the page (whole, up to ``max_height`` pixels) under ARTIFACTS."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(max(height + 120, 600), max_height))
    driver.save_screenshot(str(path))
    return path


def git_show(remote: Path, *args: str) -> str:
    """``git show`` in the demo's bare remote."""
    git = shutil.which("git") or "git"
    return subprocess.run(
        [git, "--git-dir", str(remote), "show", "--no-color", *args], capture_output=True, text=True, check=True
    ).stdout
