"""PolicyReloader: whole-set swaps, refusals that keep the old set, metrics, and the polling loop."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from rollbackbot.core.policy import Policy, PolicyMode
from rollbackbot.errors import ConfigError
from rollbackbot.metrics import REGISTRY
from rollbackbot.reload import PolicyReloader

SHIPPED = Path(__file__).resolve().parents[1] / "policies"
DOCSUM, BADGE = "10-docsum-llm-injection.yaml", "30-badge-vision-access.yaml"


def _reloads(result: str) -> float:
    return REGISTRY.get_sample_value("rollbackbot_policy_reload_total", {"result": result}) or 0.0


class Applied:
    def __init__(self) -> None:
        self.sets: list[list[str]] = []

    def __call__(self, policies: list[Policy]) -> None:
        self.sets.append([p.name for p in policies])


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    path = tmp_path / "policies"
    path.mkdir()
    shutil.copy(SHIPPED / DOCSUM, path)
    return path


def test_a_valid_change_is_applied_whole_and_counted(directory: Path) -> None:
    applied, before = Applied(), _reloads("success")
    reloader = PolicyReloader(directory, applied)
    assert not reloader.changed()
    shutil.copy(SHIPPED / BADGE, directory)
    assert reloader.changed()
    assert reloader.reload("test") is True
    assert applied.sets == [["docsum-llm-injection", "badge-vision-access"]]
    assert _reloads("success") == before + 1
    assert not reloader.changed()
    stamp = REGISTRY.get_sample_value("rollbackbot_policy_last_reload_success_timestamp_seconds")
    assert stamp is not None and stamp > 0


def test_one_broken_file_refuses_the_whole_set(directory: Path, caplog: pytest.LogCaptureFixture) -> None:
    applied, before = Applied(), _reloads("failure")
    reloader = PolicyReloader(directory, applied)
    shutil.copy(SHIPPED / BADGE, directory)
    (directory / DOCSUM).write_text((SHIPPED / DOCSUM).read_text().replace("  mode: auto", "  mode: sometimes"))
    assert reloader.reload("test") is False
    assert applied.sets == []
    assert _reloads("failure") == before + 1
    assert f"{DOCSUM}:" in caplog.text and "previous policies stay active" in caplog.text
    assert not reloader.changed(), "the same broken content is not retried every poll"


@pytest.mark.parametrize("make_empty", [lambda d: (d / DOCSUM).unlink(), shutil.rmtree])
def test_an_empty_or_missing_directory_is_refused(directory: Path, make_empty: Callable[[Path], None]) -> None:
    applied = Applied()
    reloader = PolicyReloader(directory, applied)
    make_empty(directory)
    assert reloader.reload("test") is False
    assert applied.sets == []


def test_the_service_check_can_refuse_a_set(directory: Path) -> None:
    def no_slack(policies: Sequence[Policy]) -> None:
        if any(p.spec.mode is PolicyMode.propose for p in policies):
            raise ConfigError("ROLLBACKBOT_SLACK_BOT_TOKEN is required by a propose policy")

    applied = Applied()
    reloader = PolicyReloader(directory, applied, check=no_slack)
    shutil.copy(SHIPPED / "20-support-llm-refusal.yaml", directory)
    assert reloader.reload("test") is False
    assert applied.sets == []


def test_a_set_changing_while_it_is_read_is_read_again(directory: Path) -> None:
    swaps = [lambda: shutil.copy(SHIPPED / BADGE, directory)]

    def swap_during_the_first_read(_policies: Sequence[Policy]) -> None:
        if swaps:
            swaps.pop()()  # what a ConfigMap update between two file reads looks like

    applied = Applied()
    reloader = PolicyReloader(directory, applied, check=swap_during_the_first_read)
    assert reloader.reload("test") is True
    assert applied.sets == [["docsum-llm-injection", "badge-vision-access"]], "never a mix of two generations"


async def test_the_loop_reloads_on_request_and_on_change(directory: Path) -> None:
    applied = Applied()
    reloader = PolicyReloader(directory, applied, poll_seconds=0.01)
    async with reloader.running():
        reloader.request()
        await _until(lambda: len(applied.sets) == 1)
        shutil.copy(SHIPPED / BADGE, directory)
        await _until(lambda: len(applied.sets) == 2)
    assert applied.sets[-1] == ["docsum-llm-injection", "badge-vision-access"]


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_the_loop_survives_a_failing_apply(directory: Path) -> None:
    calls: list[int] = []

    def flaky(policies: list[Policy]) -> None:
        calls.append(len(policies))
        if len(calls) == 1:
            raise RuntimeError("surprise")

    before = _reloads("failure")
    reloader = PolicyReloader(directory, flaky, poll_seconds=0.01)
    async with reloader.running():
        reloader.request()
        await _until(lambda: len(calls) == 1)
        reloader.request()
        await _until(lambda: len(calls) == 2)
    assert _reloads("failure") == before + 1
