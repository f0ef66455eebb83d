"""Policy selection, manual app lookup and refusals: cases ``make mutation`` found unpinned."""

from __future__ import annotations

from typing import Any

import pytest

from rollbackbot.core.policy import Policy
from rollbackbot.core.policy_select import policy_for_app, resolve_target
from rollbackbot.errors import AlertRefused, PolicyError


def policy(name: str, matchers: list[str], **target: Any) -> Policy:
    body = {"argocdApps": ["${labels.app}"], "project": "ml-prod", "paths": ["apps/${labels.app}"], "tags": "v*"}
    body.update(target)
    return Policy.from_document(
        {
            "apiVersion": "rollbackbot/v1",
            "kind": "RollbackPolicy",
            "metadata": {"name": name},
            "spec": {"matchers": matchers, "target": body, "mode": "auto"},
        }
    )


def test_every_app_matcher_must_accept_the_app() -> None:
    family = policy("family", ['app =~ "fraud-.*"', 'app != "fraud-legacy"'])
    legacy = policy("legacy", ['app = "fraud-legacy"'])
    assert policy_for_app([family, legacy], "fraud-llm")[0] is family
    assert policy_for_app([family, legacy], "fraud-legacy")[0] is legacy
    with pytest.raises(PolicyError):
        policy_for_app([family], "fraud-legacy")


def test_a_policy_that_cannot_resolve_for_the_app_is_passed_over() -> None:
    """A target needing a label the manual command cannot supply does not end the search."""
    regional = policy("regional", ['app = "fraud-llm"'], argocdApps=["fraud-llm-${labels.region}"])
    plain = policy("plain", ['app = "fraud-llm"'])
    chosen, target = policy_for_app([regional, plain], "fraud-llm")
    assert chosen is plain
    assert target.apps == ("fraud-llm",)


@pytest.mark.parametrize(("length", "cut"), [(63, False), (64, False), (65, True)])
def test_refusals_quote_up_to_64_characters_of_a_value(length: int, cut: bool) -> None:
    value = "a" * (length - 1) + "/"
    with pytest.raises(AlertRefused) as caught:
        resolve_target(policy("p", ['app = "x"']), {"app": value})
    message = str(caught.value)
    assert (repr(value) in message) is not cut
    assert (f"({length} chars)" in message) is cut
    if cut:
        assert repr(value[:64]) + "…" in message


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"argocdApps": ["${labels.team}"]}, "target.argocdApps"),
        ({"paths": ["apps/${labels.team}"]}, "target.paths"),
        ({"tags": "${labels.team}/v*"}, "target.tags"),
    ],
)
def test_a_missing_label_refusal_names_the_field_that_uses_it(target: dict[str, Any], field: str) -> None:
    with pytest.raises(AlertRefused, match=rf"label 'team' \(used in {field}\) is missing"):
        resolve_target(policy("p", ['app = "x"'], **target), {"app": "x"})
