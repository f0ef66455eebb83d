"""Release-tag rules: the cases ``make mutation`` found unpinned in ``core/releases.py``.

Tag globs without a wildcard, starting with one, or using ``?`` and ``[...]``; a foreign tag that
sorts first; defaults of the facts the adapter hands over; the quarantine file's extra keys and
key order; kustomizations whose ``images:`` block is not on the first line or ends early.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rollbackbot.core.model import ReleaseTag
from rollbackbot.core.releases import (
    QUARANTINE_PATH,
    Broken,
    Candidate,
    Inspection,
    Quarantine,
    SemVer,
    TagListing,
    TreeFacts,
    candidate_problems,
    image_problems,
    no_candidates_reason,
    parse_quarantine,
    parse_semver,
    quarantine_document,
    release_candidates,
    tag_version,
    verification_problems,
)

D = "sha256:" + "a" * 64
E = "sha256:" + "e" * 64


def annotated(name: str, commit: str = "c1") -> TagListing:
    return TagListing(name, "tag", f"obj-{name}", commit, f"Model-Digest: {D}\n", name)


@pytest.mark.parametrize(
    ("name", "pattern", "version"),
    [
        ("fraud-llm/v1.2.3", "fraud-llm/v1.2.3", "1.2.3"),  # no wildcard: the last path segment
        ("release-1.2.3", "release-1.2.3", None),
        ("1.2.3.prod", "*.prod", "1.2.3"),  # a leading wildcard
        ("v1.2.3", "*", "1.2.3"),
        ("fraud-llm/v1.2.3", "fraud-llm/v?.?.?", "1.2.3"),  # '?' is a wildcard, the last one ends the version
        ("model-1.2.3", "model-[0-9].[0-9].[0-9]", "1.2.3"),  # so is '[...]'
        ("v1.2.3-a", "v*-?", "1.2.3-a"),  # the version runs from the first wildcard of any kind
        ("X-model/v1.2.3", "X-model/v*", "1.2.3"),  # literal capitals are not wildcards
        ("v1", "v1*1", None),  # prefix and suffix overlap: nothing left for a version
        ("fraud-llm/V1.2.3", "fraud-llm/*", "1.2.3"),  # a capital V prefix, like a lower-case one
    ],
)
def test_tag_version_for_every_kind_of_glob(name: str, pattern: str, version: str | None) -> None:
    found = tag_version(name, pattern)
    assert (str(found) if found else None) == version


def test_a_version_without_build_metadata_prints_without_a_plus() -> None:
    assert str(SemVer(1, 2, 3)) == "1.2.3"
    assert str(parse_semver("V1.2.3-rc.1")) == "1.2.3-rc.1"


def test_numeric_pre_release_identifiers_sort_before_alphanumeric_ones() -> None:
    order = ["1.0.0-1", "1.0.0-2", "1.0.0-10", "1.0.0-a", "1.0.0-a.1", "1.0.0-b", "1.0.0"]
    versions = [parse_semver(text) for text in order]
    keys = [v.key for v in versions if v]
    assert keys == sorted(keys) and len(set(keys)) == len(order)


def test_a_foreign_tag_listed_first_does_not_hide_the_releases() -> None:
    listings = [annotated("other-app/v9.0.0"), annotated("fraud-llm/v1.0.0"), annotated("fraud-llm/v1.1.0", "c2")]
    candidates, ignored = release_candidates(listings, "fraud-llm/v*")
    assert [c.tag.name for c in candidates] == ["fraud-llm/v1.1.0", "fraud-llm/v1.0.0"]
    assert ignored == []


def test_tree_facts_without_targets_know_no_commit() -> None:
    facts = TreeFacts(("apps/m",), {"apps/m": "t1"})
    assert facts.at == {}
    assert facts.same_as_head("c1") is False


def test_a_failed_signature_without_detail_says_only_that() -> None:
    assert verification_problems(Inspection(signature_verified=False)) == ["signature does not verify"]
    assert verification_problems(Inspection(False, "no principal matched")) == [
        "signature does not verify (no principal matched)"
    ]


def test_a_target_missing_a_policy_path_is_refused_unless_deletion_is_allowed() -> None:
    facts = TreeFacts(("apps/m", "apps/new"), {"apps/m": "t2", "apps/new": "t9"}, {"c1": {"apps/m": "t1"}})
    candidate = release_candidates([annotated("m/v1.0.0")], "m/v*")[0][0]
    problems = candidate_problems(candidate, (), Quarantine(), lambda _: Inspection(True), Broken(None, facts))
    assert problems == ["path apps/new does not exist at m/v1.0.0; refusing to delete it (target.allowDelete is false)"]
    allowed = Broken(None, facts, allow_delete=True)
    assert candidate_problems(candidate, (), Quarantine(), lambda _: Inspection(True), allowed) == []


# --- the quarantine file ----------------------------------------------------------------------


def test_an_abandoned_tag_quarantines_its_model_digest_too() -> None:
    broken = ReleaseTag("m/v2.0.0", "c2", {"Model-Digest": D})
    quarantine = parse_quarantine(None).with_abandoned(broken, "inc-1", "m")
    retag = ReleaseTag("m/v2.0.1-rc.1", "c3", {"Model-Digest": D})
    assert quarantine.reason(retag) == "Model-Digest quarantined with m/v2.0.0"
    assert quarantine.reason(ReleaseTag("m/v1.0.0", "c1", {"Model-Digest": E})) is None
    assert quarantine_document(quarantine)["quarantined"] == [
        {"tag": "m/v2.0.0", "modelDigest": D, "incident": "inc-1", "app": "m"}
    ]


def test_an_entry_may_name_only_a_tag() -> None:
    quarantine = parse_quarantine({"quarantined": [{"tag": "m/v2.0.0"}]})
    assert quarantine.reason(ReleaseTag("m/v2.0.0", "c2", {})) == "quarantined (incident unknown)"


def test_the_quarantine_is_immutable() -> None:
    quarantine = parse_quarantine({"quarantined": [{"tag": "m/v2.0.0"}]})
    with pytest.raises(ValidationError):
        quarantine.quarantined = ()
    with pytest.raises(ValidationError):
        quarantine.quarantined[0].tag = "m/v1.0.0"


def test_keys_people_add_are_kept_in_sorted_order() -> None:
    data = {
        "quarantined": [{"tag": "m/v2.0.0", "zeta": 1, "alpha": "by hand"}],
        "owners": ["@ml-oncall"],
        "comment": "see the runbook",
    }
    document = quarantine_document(parse_quarantine(data))
    assert list(document) == ["quarantined", "comment", "owners"]
    assert document["owners"] == ["@ml-oncall"]
    assert list(document["quarantined"][0].items()) == [("tag", "m/v2.0.0"), ("alpha", "by hand"), ("zeta", 1)]


# --- image pinning ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "problems"),
    [
        ('image: ""\n', ["line 1: image '' is empty"]),
        ("image: '\"'\n", ["line 1: image '\"' has no tag or digest (means :latest)"]),
        (
            'image: "{{ .Values.image }}"\n',
            ["line 1: image '{{ .Values.image }}' is templated, so its digest cannot be checked"],
        ),
        ("image: reg.example:5000/m\n", ["line 1: image 'reg.example:5000/m' has no tag or digest (means :latest)"]),
        (
            "image: reg.example:5000/m:2.1\n",
            ["line 1: image 'reg.example:5000/m:2.1' is pinned by tag '2.1' only, not by digest"],
        ),
    ],
)
def test_image_references(manifest: str, problems: list[str]) -> None:
    assert image_problems(manifest) == problems


KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deployment.yaml
images:
  # the model server
  - name: reg.example/m
    newTag: "2.1"
  - reg.example/n@{digest}
  - name: reg.example/o
    newName: reg.example/o-mirror
configMapGenerator:
  - name: settings
    newTag: not-an-image
"""


def test_a_kustomization_images_block_is_found_after_other_keys_and_ends_where_yaml_ends_it() -> None:
    assert image_problems(KUSTOMIZATION.format(digest=D)) == [
        "line 7: kustomize image 'reg.example/m' sets newTag '2.1' without a digest"
    ]


def test_list_style_kustomize_entries_are_checked_as_references() -> None:
    manifest = "kind: Kustomization\nimages:\n  - reg.example/n:2.1\n  - 'reg.example/p@" + D + "'\n"
    assert image_problems(manifest) == ["line 3: image 'reg.example/n:2.1' is pinned by tag '2.1' only, not by digest"]


def test_an_indented_images_key_ends_at_a_sibling_key() -> None:
    manifest = "spec:\n  images:\n  - name: m\n    digest: " + D + "\n  other:\n  - name: x\n    newTag: v1\n"
    assert image_problems(manifest) == []


def test_a_name_outside_the_glob_has_no_version_even_when_it_starts_like_it() -> None:
    assert tag_version("fraud-llm/v2.1.0-final", "fraud-llm/v*-rc") is None
    assert tag_version("other/v2.1.0-rc", "fraud-llm/v*-rc") is None
    assert tag_version("fraud-llm/v2.1.0-rc", "fraud-llm/v*-rc") == parse_semver("2.1.0")


def test_the_quarantine_file_lives_where_people_edit_it() -> None:
    # docs/operations.md and docs/git-conventions.md send people to this file on the deploy branch.
    assert QUARANTINE_PATH == ".rollbackbot/quarantine.yaml"


def test_nothing_older_names_the_current_release_or_the_untagged_head() -> None:
    current = Candidate(ReleaseTag("fraud-llm/v1.0.0", "c1", {}), SemVer(1, 0, 0), "o1")
    assert no_candidates_reason("fraud-llm/v*", current) == (
        "no release tag matching 'fraud-llm/v*' is older than fraud-llm/v1.0.0"
    )
    assert "head is untagged" in no_candidates_reason("fraud-llm/v*", None)


def test_blank_lines_and_comments_anywhere_inside_an_images_block_do_not_end_it() -> None:
    manifest = (
        "kind: Kustomization\n"
        "images:\n"
        "  - name: reg.example/m\n"
        "    digest: " + D + "\n"
        "\n"
        "# pinned by hand, see the runbook\n"
        "  - newTag: v3\n"
    )
    assert image_problems(manifest) == ["line 7: kustomize image '?' sets newTag 'v3' without a digest"]


def test_a_list_item_whose_value_is_on_the_next_line_is_a_key_not_an_image() -> None:
    manifest = "images:\n- name:\n    reg.example/m\n  newName: reg.example/m-mirror\n"
    assert image_problems(manifest) == []


@pytest.mark.parametrize("quote", ['"', "'"])
def test_quoted_references_are_read_without_their_quotes(quote: str) -> None:
    manifest = f"image: {quote}reg.example/m:2.1{quote}\n"
    assert image_problems(manifest) == ["line 1: image 'reg.example/m:2.1' is pinned by tag '2.1' only, not by digest"]
    mismatched = 'image: "reg.example/m@' + D + "'\n"
    assert image_problems(mismatched) != []
