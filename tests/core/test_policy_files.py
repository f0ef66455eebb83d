"""Loading policy directories: file:line for every problem, the shipped examples, and fuzzing."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollbackbot.core.policy import PolicyMode, policy_json_schema
from rollbackbot.core.policy_select import resolve_target, select_policy
from rollbackbot.errors import PolicyError
from rollbackbot.policy_files import (
    MAX_FILE_BYTES,
    PolicyErrors,
    check_directory,
    load_policies,
    policy_set_fingerprint,
)

SHIPPED = Path(__file__).parents[2] / "policies"

VALID = """\
apiVersion: rollbackbot/v1
kind: RollbackPolicy
metadata:
  name: fraud-llm
spec:
  matchers:
    - app = "fraud-llm"
  target:
    argocdApps: [fraud-llm]
    project: ml-prod
    paths: [apps/fraud-llm]
    tags: "fraud-llm/v*"
  mode: auto
"""  # line numbers above are what the assertions below name


def write(directory: Path, name: str, text: str | bytes) -> Path:
    path = directory / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def problems_in(directory: Path, name: str, text: str | bytes) -> list[str]:
    write(directory, name, text)
    return check_directory(directory)


def named(text: str, name: str) -> str:
    return text.replace("name: fraud-llm", f"name: {name}")


# --- what loads ------------------------------------------------------------------------------------


def test_files_in_name_order_documents_in_file_order(tmp_path: Path) -> None:
    write(tmp_path, "20-b.yaml", f"---\n{named(VALID, 'b0')}---\n---\n{named(VALID, 'b3')}...\n")
    write(tmp_path, "10-a.yml", named(VALID, "a0"))
    write(tmp_path, ".10-a.yaml.swp.yaml", "not: [valid")  # editor leftovers are not policies
    write(tmp_path, "README.md", "not yaml: [")
    write(tmp_path, "empty.yaml", "# nothing here yet\n")
    policies = load_policies(tmp_path)
    assert [(p.name, p.source, p.index) for p in policies] == [
        ("a0", "10-a.yml", 0),
        ("b0", "20-b.yaml", 0),
        ("b3", "20-b.yaml", 2),
    ]
    assert check_directory(tmp_path) == []


def test_empty_directory_has_no_policies(tmp_path: Path) -> None:
    assert load_policies(tmp_path) == []


def test_merge_keys_work_and_errors_point_into_the_anchor(tmp_path: Path) -> None:
    text = VALID + "  sync: &s {timeout: 1m}\n  verify: {<<: *s}\n"
    assert problems_in(tmp_path, "p.yaml", text) == [f"{tmp_path / 'p.yaml'}:14: spec.verify.timeout: unknown key"]


def test_crlf_and_byte_order_mark(tmp_path: Path) -> None:
    text = "\ufeff" + VALID.replace("\n", "\r\n").replace("mode: auto", "mode: sometimes")
    assert problems_in(tmp_path, "p.yaml", text) == [
        f"{tmp_path / 'p.yaml'}:13: spec.mode: Input should be 'auto', 'propose' or 'notify' (got 'sometimes')"
    ]


# --- every problem, with its line -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VALID + "  modes: auto\n", ["14: spec.modes: unknown key"]),
        (
            VALID.replace("    project", "    Project"),
            ["8: spec.target.project: required key is missing", "10: spec.target.Project: unknown key"],
        ),
        (
            VALID.replace('- app = "fraud-llm"', '- app =~ "("'),
            ["7: spec.matchers[0]: invalid regular expression '(': missing ), unterminated subpattern at position 0"],
        ),
        (
            VALID.replace("[apps/fraud-llm]", "\n      - apps/ok\n      - ../etc"),
            ["13: spec.target.paths[1]: path '../etc' must not contain '..', '.' or empty segments"],
        ),
        (
            VALID.replace("mode: auto", "mode:\n    sometimes"),
            ["14: spec.mode: Input should be 'auto', 'propose' or 'notify' (got 'sometimes')"],
        ),
        (VALID.replace("  mode: auto\n", ""), ["5: spec.mode: required key is missing"]),
        (
            VALID.replace("mode: auto", "mode: propose"),
            ["5: spec: mode propose needs an approval block (channel and approvers)"],
        ),
        (
            VALID + "  cooldown: 2024-02-30\n",
            ["14: spec.cooldown: invalid duration '2024-02-30': expected e.g. 500ms, 60s, 30m, 24h, 1h30m"],
        ),
        (VALID + "  debounce: 60\n", ["14: spec.debounce: a duration must be a string such as 60s, 30m or 1h30m"]),
        (
            VALID + "  budget:\n    max: 0\n",
            ["15: spec.budget.max: Input should be greater than or equal to 1 (got 0)"],
        ),
        (
            VALID + "  sync: {timeout: !!int abc}\n",
            ["14: invalid tag:yaml.org,2002:int value: invalid literal for int() with base 10: 'abc'"],
        ),
        (
            VALID.replace("argocdApps: [fraud-llm]", 'argocdApps: ["${app}"]'),
            [
                "9: spec.target.argocdApps[0]: Argo CD application name: "
                "only ${labels.NAME} may be substituted, found '${app}'"
            ],
        ),
        (
            VALID.replace("rollbackbot/v1", "v1").replace("RollbackPolicy", "Deployment").replace("auto", "x"),
            [
                "1: apiVersion: Input should be 'rollbackbot/v1' (got 'v1')",
                "2: kind: Input should be 'RollbackPolicy' (got 'Deployment')",
            ],
        ),
        (VALID + "  mode: notify\n", ["14: duplicate key 'mode'"]),
        (VALID + '  "\\e[31mred": 1\n', ["14: spec['\\x1b[31mred']: unknown key"]),
        (VALID + "  ? [a]\n  : b\n", ["14: found unhashable key"]),
        (
            VALID + "  x: !!python/object:os.system {}\n",
            ["14: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object:os.system'"],
        ),
        (VALID + "---\n- a list\n", ["15: a policy document must be a mapping (apiVersion, kind, …)"]),
        (VALID + "---\njust text\n", ["15: a policy document must be a mapping (apiVersion, kind, …)"]),
        (
            VALID.replace("[fraud-llm]", "[fraud-llm"),
            [
                "10: YAML syntax error: while parsing a flow sequence, expected ',' or ']', but got ':' "
                "(in what starts at line 9)"
            ],
        ),
        (
            VALID + "  x: 'unterminated\n",
            [
                "15: YAML syntax error: while scanning a quoted scalar, found unexpected end of stream "
                "(in what starts at line 14)"
            ],
        ),
        (
            VALID + "\tmode: auto\n",
            [
                "14: YAML syntax error: while scanning for the next token, "
                "found character '\\t' that cannot start any token"
            ],
        ),
        (VALID + "  x: \x07\n", ["14: YAML syntax error: unacceptable character '\\x07'"]),
        (VALID + "  x: *nowhere\n", ["14: YAML syntax error: found undefined alias 'nowhere'"]),
        ("[" * 40 + "]" * 40, ["1: nested deeper than 32 levels"]),
        ("a:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 40)), ["33: nested deeper than 32 levels"]),
    ],
)
def test_problem_lines(tmp_path: Path, text: str, expected: list[str]) -> None:
    location = tmp_path / "10-policy.yaml"
    assert problems_in(tmp_path, location.name, text) == [f"{location}:{line}" for line in expected]


def test_every_problem_in_every_file_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID + "  modes: auto\n---\n" + VALID.replace("name: fraud-llm", "name: Bad_Name"))
    write(tmp_path, "b.yaml", "key: [")
    write(tmp_path, "c.yaml", VALID)
    with pytest.raises(PolicyErrors) as caught:
        load_policies(tmp_path)
    assert [(e.location, e.message) for e in caught.value.errors] == [
        (f"{tmp_path / 'a.yaml'}:14", "spec.modes: unknown key"),
        (
            f"{tmp_path / 'a.yaml'}:19",
            "metadata.name: 'Bad_Name' is not a valid policy name (DNS label) "
            "(must match [a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)",
        ),
        (
            f"{tmp_path / 'b.yaml'}:1",
            "YAML syntax error: while parsing a flow node, expected the node content, but found '<stream end>'",
        ),
    ]
    assert str(caught.value).splitlines() == [str(e) for e in caught.value.errors]
    assert isinstance(caught.value, PolicyError)


def test_duplicate_names_across_and_within_files(tmp_path: Path) -> None:
    write(tmp_path, "10-a.yaml", VALID)
    write(tmp_path, "20-b.yaml", named(VALID, "other") + "---\n" + VALID)
    assert check_directory(tmp_path) == [
        f"{tmp_path / '20-b.yaml'}:18: duplicate policy name 'fraud-llm' (first defined at {tmp_path / '10-a.yaml'}:4)"
    ]


def test_file_level_problems(tmp_path: Path) -> None:
    write(tmp_path, "a-big.yaml", "# " + "x" * MAX_FILE_BYTES)
    write(tmp_path, "b-latin1.yaml", VALID.encode() + b"  x: caf\xe9\n")
    (tmp_path / "c-dir.yaml").mkdir()
    assert check_directory(tmp_path) == [
        f"{tmp_path / 'a-big.yaml'}:1: file is larger than {MAX_FILE_BYTES} bytes",
        f"{tmp_path / 'b-latin1.yaml'}:14: file is not valid UTF-8",
        f"{tmp_path / 'c-dir.yaml'}:1: cannot read file: Is a directory",
    ]


def test_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    assert problems_in(tmp_path, "bomb.yaml", "\n".join(levels) + "\n") == [
        f"{tmp_path / 'bomb.yaml'}:1: document expands to more than 10000 nodes (alias bomb?)"
    ]


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    assert problems_in(tmp_path, "loop.yaml", "a: &a [*a]\n") == [
        f"{tmp_path / 'loop.yaml'}:1: nested deeper than 32 levels"
    ]


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_directory_must_exist(tmp_path: Path, kind: str) -> None:
    directory = tmp_path / "policies"
    if kind == "file":
        directory.write_text("")
    expected = "does not exist" if kind == "missing" else "is not a directory"
    assert check_directory(directory) == [f"{directory}: policy directory {expected}"]
    with pytest.raises(PolicyErrors):
        load_policies(directory)


# --- the shipped examples ---------------------------------------------------------------------------


def test_shipped_policies_load_cleanly() -> None:
    assert check_directory(SHIPPED) == []
    policies = load_policies(SHIPPED)
    assert [p.name for p in policies] == [
        "docsum-llm-injection",
        "support-llm-refusal",
        "support-llm-injection-canary",
        "badge-vision-access",
    ]
    by_name = {p.name: p.spec for p in policies}
    assert by_name["support-llm-refusal"].mode is PolicyMode.propose
    assert by_name["docsum-llm-injection"].forensics.requests_url is not None
    assert by_name["docsum-llm-injection"].approval is not None


@pytest.mark.parametrize(
    ("labels", "policy", "apps", "paths", "tags"),
    [
        (
            {"alertname": "ModelCanaryLeak", "app": "docsum-llm"},
            "docsum-llm-injection",
            ["docsum-llm"],
            ["apps/docsum-llm"],
            "docsum-llm/v*",
        ),
        (
            {"alertname": "PromptInjectionSpike", "app": "docsum-llm", "severity": "critical"},
            "docsum-llm-injection",
            ["docsum-llm"],
            ["apps/docsum-llm"],
            "docsum-llm/v*",
        ),
        (
            {"alertname": "ModelOutputPIILeak", "app": "docsum-llm"},
            "docsum-llm-injection",
            ["docsum-llm"],
            ["apps/docsum-llm"],
            "docsum-llm/v*",
        ),
        (
            {"alertname": "ModelRefusalRateDrop", "app": "support-llm"},
            "support-llm-refusal",
            ["support-llm"],
            ["apps/support-llm"],
            "support-llm/v*",
        ),
        (
            {"alertname": "ModelRefusalRateDrop", "app": "support-llm-de"},
            "support-llm-refusal",
            ["support-llm-de"],
            ["apps/support-llm-de"],
            "support-llm-de/v*",
        ),
        (
            {"alertname": "PromptInjectionSpike", "app": "support-llm", "severity": "critical"},
            "support-llm-injection-canary",
            ["support-llm"],
            ["apps/support-llm"],
            "support-llm/v*",
        ),
        (
            {"alertname": "ModelFalseNegativeSpike", "app": "badge-vision"},
            "badge-vision-access",
            ["badge-vision", "badge-vision-features"],
            ["apps/badge-vision", "apps/badge-vision-features"],
            "badge-vision/v*",
        ),
        (
            {"alertname": "ModelHighConfidenceMisclassification", "app": "badge-vision"},
            "badge-vision-access",
            ["badge-vision", "badge-vision-features"],
            ["apps/badge-vision", "apps/badge-vision-features"],
            "badge-vision/v*",
        ),
    ],
)
def test_shipped_policies_select_their_alerts(
    labels: dict[str, str], policy: str, apps: list[str], paths: list[str], tags: str
) -> None:
    chosen = select_policy(load_policies(SHIPPED), labels)
    assert chosen is not None and chosen.name == policy
    resolved = resolve_target(chosen, labels)
    assert (list(resolved.apps), list(resolved.paths), resolved.tag_pattern) == (apps, paths, tags)


@pytest.mark.parametrize(
    "labels",
    [
        {"alertname": "ModelRefusalRateDrop", "app": "docsum-llm"},
        {"alertname": "PromptInjectionSpike", "app": "support-llm-de"},  # the canary policy names one route
        {"alertname": "PromptInjectionSpike", "app": "badge-vision"},
        {"alertname": "ModelRefusalRateDrop", "app": "support-llm-"},
        {"alertname": "ModelRefusalRateDrop", "app": "my-support-llm"},
        {"alertname": "ModelFalseNegativeSpike", "app": "badge-vision-features"},
        {"alertname": "ModelCanaryLeak"},
    ],
)
def test_shipped_policies_ignore_other_alerts(labels: dict[str, str]) -> None:
    assert select_policy(load_policies(SHIPPED), labels) is None


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.yaml")), ids=lambda path: path.name)
def test_json_schema_accepts_the_shipped_policies(path: Path) -> None:
    validator = jsonschema.Draft202012Validator(policy_json_schema())
    for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        assert [e.message for e in validator.iter_errors(document)] == []


# --- fuzzing: whatever the file holds, only located PolicyErrors come out ---------------------------


def assert_only_located_policy_errors(directory: Path, text: str | bytes) -> None:
    write(directory, "fuzz.yaml", text)
    try:
        load_policies(directory)
    except PolicyErrors as exc:
        assert exc.errors
        for error in exc.errors:
            assert type(error) is PolicyError
            assert error.location is not None and re.fullmatch(
                rf"{re.escape(str(directory))}/fuzz\.yaml:\d+", error.location
            )


fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
trees = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
    max_leaves=20,
)
VALID_DOC: dict[str, Any] = yaml.safe_load(VALID)
YAML_TOKENS = [*"ab:-[]{}&*!|>'\"#%@`,?\n\t \\.~0<=", "---\n", "...\n", "\x85", "\u2028", "!!int ", "&a ", "*a", "<<: "]


@fuzz
@given(data=st.binary(max_size=300))
def test_fuzz_bytes(tmp_path: Path, data: bytes) -> None:
    assert_only_located_policy_errors(tmp_path, data)


@fuzz
@given(text=st.lists(st.sampled_from(YAML_TOKENS), max_size=80).map("".join))
def test_fuzz_yaml_punctuation(tmp_path: Path, text: str) -> None:
    assert_only_located_policy_errors(tmp_path, text)


@fuzz
@given(tree=trees)
def test_fuzz_arbitrary_documents(tmp_path: Path, tree: Any) -> None:
    assert_only_located_policy_errors(tmp_path, yaml.safe_dump(tree, allow_unicode=True))


@fuzz
@given(data=st.data())
def test_fuzz_one_value_of_a_valid_policy(tmp_path: Path, data: st.DataObject) -> None:
    document = copy.deepcopy(VALID_DOC)
    node: Any = document
    while isinstance(node, dict | list) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(list(node.keys()) if isinstance(node, dict) else range(len(node))))
        if not isinstance(node[key], dict | list) or data.draw(st.booleans()):
            node[key] = data.draw(trees)
            break
        node = node[key]
    assert_only_located_policy_errors(tmp_path, yaml.safe_dump(document, allow_unicode=True))


# --- the fingerprint the reloader polls (rollbackbot.reload) -----------------------------------------


def _configmap(root: Path, generation: str, files: dict[str, str]) -> None:
    """Lay out or update ``root`` as the kubelet does a ConfigMap volume: KEY -> ..data/KEY, ..data -> ..TS."""
    data = root / f"..{generation}"
    data.mkdir(parents=True)
    for name, text in files.items():
        (data / name).write_text(text)
        if not (root / name).is_symlink():
            (root / name).symlink_to(Path("..data") / name)
    (root / "..data_tmp").symlink_to(data.name)
    (root / "..data_tmp").replace(root / "..data")


def test_fingerprint_follows_the_configmap_symlink_swap(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    _configmap(root, "2026_12_04_10_00_00.1", {"10-a.yaml": VALID})
    before = policy_set_fingerprint(root)
    assert [p.name for p in load_policies(root)] == ["fraud-llm"]
    _configmap(root, "2026_12_04_10_05_00.2", {"10-a.yaml": named(VALID, "fraud-llm-v2")})
    assert policy_set_fingerprint(root) != before  # no file in root itself changed
    assert [p.name for p in load_policies(root)] == ["fraud-llm-v2"]


def test_fingerprint_ignores_timestamps_and_dotfiles_but_not_names(tmp_path: Path) -> None:
    write(tmp_path, "10-a.yaml", VALID)
    before = policy_set_fingerprint(tmp_path)
    os.utime(tmp_path / "10-a.yaml", (1, 1))
    write(tmp_path, ".10-a.yaml.swp", "editor state")
    write(tmp_path, "README.md", "not a policy")
    assert policy_set_fingerprint(tmp_path) == before
    (tmp_path / "10-a.yaml").rename(tmp_path / "20-a.yaml")  # selection order is by file name
    assert policy_set_fingerprint(tmp_path) != before


def test_fingerprint_of_a_missing_directory_is_stable(tmp_path: Path) -> None:
    assert policy_set_fingerprint(tmp_path / "gone") == policy_set_fingerprint(tmp_path / "gone")
    assert policy_set_fingerprint(tmp_path / "gone") != policy_set_fingerprint(tmp_path)
