"""Which policy a manual `plan`/`rollback --app APP` uses (pure, over the shipped policies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollbackbot.core.policy_select import policy_for_app
from rollbackbot.errors import PolicyError
from rollbackbot.policy_files import load_policies

POLICIES = load_policies(Path(__file__).resolve().parents[2] / "policies")


@pytest.mark.parametrize(
    ("app", "policy", "apps"),
    [
        ("docsum-llm", "docsum-llm-injection", ("docsum-llm",)),
        # A templated target resolves for any app; its app matcher must still accept this one.
        ("badge-vision", "badge-vision-access", ("badge-vision", "badge-vision-features")),
        ("support-llm-eu", "support-llm-refusal", ("support-llm-eu",)),
    ],
)
def test_policy_for_app(app: str, policy: str, apps: tuple[str, ...]) -> None:
    chosen, target = policy_for_app(POLICIES, app)
    assert (chosen.name, target.apps) == (policy, apps)


@pytest.mark.parametrize("app", ["payments-api", "../etc", "support-llm-x/../y"])
def test_no_policy_for_app(app: str) -> None:
    with pytest.raises(PolicyError, match="no policy targets app"):
        policy_for_app(POLICIES, app)
