"""The policy model: the cases ``make mutation`` found unpinned in ``core/policy.py``.

The JSON Schema is a published artifact (``rollbackbot policy schema``; editors validate policy
files with it), so it is pinned byte for byte in ``cases/policy.schema.json``. After an intended
change, regenerate it with::

    .venv/bin/python -c "import json; from rollbackbot.core.policy import policy_json_schema; \\
        print(json.dumps(policy_json_schema(), indent=2, sort_keys=True))" > tests/core/cases/policy.schema.json
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rollbackbot.core.policy import OnTimeout, Policy, policy_json_schema

CASES = Path(__file__).parent / "cases"


def document(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "matchers": ['app = "fraud-llm"'],
        "target": {"argocdApps": ["fraud-llm"], "project": "ml-prod", "paths": ["apps/fraud-llm"], "tags": "v*"},
        "mode": "auto",
    }
    body.update(spec)
    return {"apiVersion": "rollbackbot/v1", "kind": "RollbackPolicy", "metadata": {"name": "p"}, "spec": body}


def test_the_json_schema_is_the_published_one() -> None:
    published = json.loads((CASES / "policy.schema.json").read_text(encoding="utf-8"))
    assert policy_json_schema() == published


def test_approval_and_retry_defaults() -> None:
    spec = Policy.from_document(document(approval={"channel": "C1X", "approvers": ["U1X"]})).spec
    assert spec.approval is not None
    assert (spec.approval.timeout, spec.approval.on_timeout) == (timedelta(minutes=30), OnTimeout.expire)
    assert spec.retry is None


@pytest.mark.parametrize(("attempts", "valid"), [(0, False), (1, True), (5, True)])
def test_retry_attempts_count_from_one(attempts: int, valid: bool) -> None:
    doc = document(retry={"attempts": attempts})
    if valid:
        assert Policy.from_document(doc).spec.retry.attempts == attempts
    else:
        with pytest.raises(ValidationError, match="greater than or equal to 1"):
            Policy.from_document(doc)


def test_a_policy_read_without_origin_has_none() -> None:
    assert (Policy.from_document(document()).source, Policy.from_document(document()).index) == ("", 0)
    plain = Policy.model_validate(document())
    assert (plain.source, plain.index) == ("", 0)
    placed = Policy.from_document(document(), source="10-a.yaml", index=2)
    assert (placed.source, placed.index) == ("10-a.yaml", 2)


def test_a_validated_policy_validates_again_from_python_values() -> None:
    """Durations already timedeltas and matchers already parsed pass through unchanged (model_copy, reloads)."""
    policy = Policy.from_document(document(debounce="1m", cooldown="2h"), source="a.yaml")
    again = Policy.model_validate(policy.model_dump(), context={"source": "a.yaml", "index": 0})
    assert again == policy
    assert again.spec.matchers == policy.spec.matchers
    # model_dump() gives strings back; Python callers may also pass the parsed values themselves.
    built = Policy.from_document(
        document(debounce=timedelta(minutes=1), cooldown=timedelta(hours=2), matchers=list(policy.spec.matchers)),
        source="a.yaml",
    )
    assert built == policy


@pytest.mark.parametrize("path", ["apps/./x", "apps//x", "apps/..", "./apps"])
def test_paths_with_dot_or_empty_segments_are_refused(path: str) -> None:
    with pytest.raises(ValidationError, match="must not contain '..', '.' or empty segments"):
        Policy.from_document(document(target={**document()["spec"]["target"], "paths": [path]}))


def test_only_the_bad_substitution_is_quoted_not_the_good_ones_after_it() -> None:
    tags = "v${oops}${labels.app}-*"
    with pytest.raises(ValidationError) as caught:
        Policy.from_document(document(target={**document()["spec"]["target"], "tags": tags}))
    assert "found '${oops}-*'" in str(caught.value)  # the good placeholder is left out


def test_a_bad_substitution_is_quoted_up_to_40_characters() -> None:
    tags = "v${" + "x" * 60 + "}"
    with pytest.raises(ValidationError) as caught:
        Policy.from_document(document(target={**document()["spec"]["target"], "tags": tags}))
    message = str(caught.value)
    assert repr(("${" + "x" * 60)[:40]) in message
    assert repr(("${" + "x" * 60)[:41]) not in message
