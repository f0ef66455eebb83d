"""Release rules, table-driven: semver, globs, trailers, image pins, current/target, commit messages."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml

from rollbackbot.core.commit_message import (
    build_commit_message,
    one_line,
    parse_commit_trailers,
    parse_trailers,
)
from rollbackbot.core.model import ReleaseTag, ResolvedTarget, RollbackPlan, RollbackRequest
from rollbackbot.core.releases import (
    Broken,
    Candidate,
    Inspection,
    TagListing,
    TreeFacts,
    deletion_problems,
    find_current,
    image_problems,
    no_candidates_reason,
    parse_quarantine,
    parse_semver,
    quarantine_document,
    release_candidates,
    select_target,
    tag_matches,
    tag_version,
    target_pool,
)
from rollbackbot.errors import NoTargetError

D = "sha256:" + "a" * 64  # a valid digest
PATTERN = "fraud-llm/v*"
PATHS = ("apps/fraud-llm", "apps/fraud-llm-features")


# --- semver and globs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("2.9.0", "2.10.0"),
        ("1.99.99", "2.0.0"),
        ("2.1.0-rc.1", "2.1.0"),
        ("2.1.0-alpha", "2.1.0-alpha.1"),
        ("2.1.0-alpha.1", "2.1.0-alpha.beta"),
        ("2.1.0-alpha.2", "2.1.0-alpha.10"),
        ("2.1.0-beta.11", "2.1.0-rc.1"),
        ("2.1.0-rc.1", "2.1.1-alpha"),
    ],
)
def test_semver_precedence(older: str, newer: str) -> None:
    low, high = parse_semver(older), parse_semver(newer)
    assert low is not None and high is not None
    assert low.key < high.key


@pytest.mark.parametrize("text", ["2.1", "2.1.0.0", "02.1.0", "2.1.0-", "2.1.0-01", "two", "", "2.1.0+", "v", "٢.1.0"])
def test_invalid_semver(text: str) -> None:
    assert parse_semver(text) is None


def test_build_metadata_does_not_change_precedence() -> None:
    plain, built = parse_semver("v2.1.0"), parse_semver("2.1.0+build.7")
    assert plain is not None and built is not None
    assert plain.key == built.key and str(built) == "2.1.0+build.7"


@pytest.mark.parametrize(
    ("name", "pattern", "version"),
    [
        ("fraud-llm/v2.10.0", "fraud-llm/v*", "2.10.0"),
        ("fraud-llm/v2.1.0-rc.1", "fraud-llm/v*", "2.1.0-rc.1"),
        ("fraud-llm/2.1.0", "fraud-llm/*", "2.1.0"),
        ("release-2.1.0-fraud", "release-*-fraud", "2.1.0"),
        ("fraud-llm/v2.1", "fraud-llm/v*", None),
        ("fraud-llm/vnext", "fraud-llm/v*", None),
    ],
)
def test_tag_version_from_glob(name: str, pattern: str, version: str | None) -> None:
    assert tag_matches(name, pattern)
    parsed = tag_version(name, pattern)
    assert (str(parsed) if parsed else None) == version


@pytest.mark.parametrize(
    ("name", "matches"),
    [
        ("fraud-llm/v2.1.0", True),
        ("fraud-llm-features/v2.1.0", False),
        ("Fraud-llm/v2.1.0", False),
        ("x/fraud-llm/v1.0.0", False),
    ],
)
def test_glob_matches_full_tag_name(name: str, matches: bool) -> None:
    assert tag_matches(name, PATTERN) is matches


# --- trailers -----------------------------------------------------------------------------------

SIG = "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (f"Model-Digest: {D}\nData-Version: ds-1\n", {"Model-Digest": D, "Data-Version": "ds-1"}),
        (
            f"Some notes.\n\nMore notes.\n\nModel-Digest: {D}\nData-Version: ds-1\n",
            {"Model-Digest": D, "Data-Version": "ds-1"},
        ),
        (f"Model-Digest: {D}\nData-Version: ds-1\n{SIG}", {"Model-Digest": D, "Data-Version": "ds-1"}),
        ("model-digest: x\r\nDATA-VERSION: y\r\n", {"Model-Digest": "x", "Data-Version": "y"}),
        ("Data-Version: ds-1\n  continued\n", {"Data-Version": "ds-1 continued"}),
        ("Data-Version: first\nData-Version: second\n", {"Data-Version": "first"}),
        ("Model-Digest: x\nthis line is prose\n", {}),
        ("Model-Digest: x\n\nJust a closing paragraph.\n", {}),
        ("", {}),
        (SIG, {}),
        ("https://example.com/release\n", {}),
    ],
    ids=[
        "plain",
        "last-paragraph",
        "signature-appended",
        "case-crlf",
        "continuation",
        "duplicate",
        "mixed",
        "not-last",
        "empty",
        "sig-only",
        "url",
    ],
)
def test_parse_trailers(body: str, expected: dict[str, str]) -> None:
    assert parse_trailers(body) == expected


def test_subject_is_never_a_trailer() -> None:
    assert parse_commit_trailers("Fix: thing") == {}
    assert parse_commit_trailers("Fix: thing\n\nRollback-Incident: inc-1\n") == {"Rollback-Incident": "inc-1"}


# --- image pins ---------------------------------------------------------------------------------


NOT_DIGEST = "is pinned by tag {!r} only, not by digest"
MALFORMED = "has a malformed digest (want sha256:<64 hex>)"
UNCHECKABLE = "so its digest cannot be checked"
IMAGE_CASES = {
    "digest": (f"      containers:\n        - name: m\n          image: reg.example/m@{D}\n", []),
    "tag-and-digest-quoted": (f'  image: "reg.example:5000/m:2.1@{D}"  # tag and digest\n', []),
    "latest": ("  image: reg.example/m:latest\n", ["line 1: image 'reg.example/m:latest' uses :latest"]),
    "tag-only-list-item": (
        "  - image: 'reg.example/m:2.1'\n",
        ["line 1: image 'reg.example/m:2.1' " + NOT_DIGEST.format("2.1")],
    ),
    "no-tag-registry-port": (
        "  image: reg.example:5000/m\n",
        ["line 1: image 'reg.example:5000/m' has no tag or digest (means :latest)"],
    ),
    "short-digest": ("  image: m@sha256:abc\n", [f"line 1: image 'm@sha256:abc' {MALFORMED}"]),
    "uppercase-digest": (f"  image: m@{D.upper()}\n", [f"line 1: image 'm@{D.upper()}' {MALFORMED}"]),
    "json": (
        '{"spec": {"containers": [{"name": "m", "image": "m:latest"}]}}',
        ["line 1: image 'm:latest' uses :latest"],
    ),
    "flow-mapping": (
        "  containers: [{name: m, image: m:1.0}]\n",
        ["line 1: image 'm:1.0' " + NOT_DIGEST.format("1.0")],
    ),
    "templated": ("  image: ${IMAGE}\n", [f"line 1: image '${{IMAGE}}' is templated, {UNCHECKABLE}"]),
    "helm-mapping": (
        "image:\n  repository: m\n  tag: '1.0'\n",
        [f"line 1: image is not a plain reference, {UNCHECKABLE}"],
    ),
    "similar-keys": ("  imagePullPolicy: Always\n  images_seen: 3\n", []),
    "kustomize-newtag": (
        f'images:\n- name: reg.example/m\n  newTag: "2.1"\n- name: reg.example/n\n  newName: other/n\n  digest: {D}\n',
        ["line 2: kustomize image 'reg.example/m' sets newTag '2.1' without a digest"],
    ),
    "kustomize-flow": (
        "images:\n  - {name: m, newTag: latest}\nresources: [a.yaml]\n",
        ["line 2: kustomize image 'm' sets newTag 'latest' without a digest"],
    ),
    "kustomize-digest-wins": (f"images:\n- name: m\n  newTag: '2.1'\n  digest: {D}\n", []),
    "kustomize-bad-digest": (
        "images:\n- name: m\n  digest: sha256:zz\n",
        ["line 2: kustomize image 'm' has a malformed digest"],
    ),
    "image-list": ("images:\n- reg.example/m:2\n", ["line 2: image 'reg.example/m:2' " + NOT_DIGEST.format("2")]),
}


@pytest.mark.parametrize(("manifest", "problems"), IMAGE_CASES.values(), ids=IMAGE_CASES.keys())
def test_image_problems(manifest: str, problems: list[str]) -> None:
    assert image_problems(manifest) == problems


# --- current and target -------------------------------------------------------------------------


def listing(version: str, commit: str, *, kind: str = "tag", trailers: dict[str, str] | None = None) -> TagListing:
    chosen = {"Model-Digest": D, "Data-Version": f"ds-{version}"} if trailers is None else trailers
    body = "".join(f"{k}: {v}\n" for k, v in chosen.items())
    name = f"fraud-llm/v{version}"
    return TagListing(name, kind, f"obj-{version}", commit, body, name if kind == "tag" else "")


def trees(**at: str) -> TreeFacts:
    """Commit -> tree id of the first path (the key ``head`` is the branch head); the second path is absent."""
    facts = {commit: {PATHS[0]: tree, PATHS[1]: None} for commit, tree in at.items()}
    return TreeFacts(PATHS, facts["head"], facts)


def verified(_: Candidate) -> Inspection:
    return Inspection(signature_verified=True)


LISTINGS = [listing("2.0.0", "c0"), listing("2.10.0", "c3"), listing("2.9.0", "c2"), listing("2.1.0", "c1")]
ALL_ON_BRANCH = {"c0", "c1", "c2", "c3"}


def test_candidates_are_ordered_by_semver_and_oddities_ignored() -> None:
    extra = [listing("2.11.0", "c9", kind="commit"), listing("next", "c8"), listing("3.0.0", "")]
    candidates, ignored = release_candidates(
        [*LISTINGS, *extra, TagListing("chat/v9.0.0", "tag", "o", "c", "", "chat/v9.0.0")], PATTERN
    )
    assert [c.tag.name for c in candidates] == [
        "fraud-llm/v2.10.0",
        "fraud-llm/v2.9.0",
        "fraud-llm/v2.1.0",
        "fraud-llm/v2.0.0",
    ]
    assert {s.name: s.reason.split(" ")[0] for s in ignored} == {
        "fraud-llm/v2.11.0": "lightweight",
        "fraud-llm/vnext": "no",
        "fraud-llm/v3.0.0": "tag",
    }


@pytest.mark.parametrize(
    ("head_tree", "current", "target"),
    [
        ("t3", "fraud-llm/v2.10.0", "fraud-llm/v2.9.0"),  # head is the newest release
        ("t1", "fraud-llm/v2.1.0", "fraud-llm/v2.0.0"),  # head was rolled back to 2.1.0 before
        ("tX", None, "fraud-llm/v2.10.0"),  # untagged change on top of 2.10.0
    ],
)
def test_current_and_target(head_tree: str, current: str | None, target: str | None) -> None:
    candidates, _ = release_candidates(LISTINGS, PATTERN)
    facts = trees(head=head_tree, c0="t0", c1="t1", c2="t2", c3="t3")
    found = find_current(candidates, facts)
    assert (found.tag.name if found else None) == current
    pool, _ = target_pool(candidates, found, facts, ancestors={"c0", "c1", "c2", "c3"})
    choice = select_target(pool, ("Model-Digest", "Data-Version"), parse_quarantine(None), verified)
    assert choice.target is not None and choice.target.tag.name == target


def test_untagged_head_only_considers_ancestors() -> None:
    candidates, _ = release_candidates(LISTINGS, PATTERN)
    facts = trees(head="tX", c0="t0", c1="t1", c2="t2", c3="t3")
    pool, _ = target_pool(candidates, None, facts, ancestors={"c0", "c1"})
    assert [c.tag.name for c in pool] == ["fraud-llm/v2.1.0", "fraud-llm/v2.0.0"]
    assert "untagged" in no_candidates_reason(PATTERN, None)


def test_retag_of_deployed_content_is_no_target() -> None:
    candidates, _ = release_candidates(LISTINGS, PATTERN)
    facts = trees(head="t3", c0="t0", c1="t1", c2="t3", c3="t3")  # 2.9.0 has 2.10.0's content
    current = find_current(candidates, facts)
    pool, same = target_pool(candidates, current, facts, ALL_ON_BRANCH)
    assert [c.tag.name for c in pool] == ["fraud-llm/v2.1.0", "fraud-llm/v2.0.0"]
    assert [(s.name, s.reason) for s in same] == [("fraud-llm/v2.9.0", "same content as the deploy branch head")]


def test_ref_name_must_equal_the_signed_tag_name() -> None:
    republished = TagListing("fraud-llm/v9.9.9", "tag", "obj-old", "c0", "", "fraud-llm/v2.0.0")
    candidates, ignored = release_candidates([*LISTINGS, republished], PATTERN)
    assert "fraud-llm/v9.9.9" not in [c.tag.name for c in candidates]
    assert [(s.name, s.reason) for s in ignored] == [
        ("fraud-llm/v9.9.9", "ref name does not match the signed tag name ('fraud-llm/v2.0.0')")
    ]


def test_tags_off_the_deploy_branch_are_never_targets() -> None:
    candidates, _ = release_candidates(LISTINGS, PATTERN)
    facts = trees(head="t3", c0="t0", c1="t1", c2="t2", c3="t3")
    current = find_current(candidates, facts)
    assert current is not None  # a tagged head: ancestry is checked here too
    pool, unusable = target_pool(candidates, current, facts, ancestors={"c0", "c1", "c3"})
    assert [c.tag.name for c in pool] == ["fraud-llm/v2.1.0", "fraud-llm/v2.0.0"]
    assert [s.name for s in unusable] == ["fraud-llm/v2.9.0"] and "not on the deploy branch" in unusable[0].reason


def test_same_model_digest_as_current_is_no_target() -> None:
    rc = listing("2.10.0-rc.1", "c9", trailers={"Model-Digest": "sha256:" + "b" * 64, "Data-Version": "d"})
    head = listing("2.10.0", "c3", trailers={"Model-Digest": "sha256:" + "b" * 64, "Data-Version": "d"})
    candidates, _ = release_candidates([listing("2.9.0", "c2"), rc, head], PATTERN)
    facts = trees(head="t3", c2="t2", c3="t3", c9="t9")
    current = find_current(candidates, facts)
    pool, _ = target_pool(candidates, current, facts, {"c2", "c3", "c9"})
    broken = Broken(current.tag if current else None, facts)
    choice = select_target(pool, ("Model-Digest",), parse_quarantine(None), verified, broken)
    assert choice.target is not None and choice.target.tag.name == "fraud-llm/v2.9.0"
    assert [(s.name, s.reason) for s in choice.skipped] == [
        ("fraud-llm/v2.10.0-rc.1", "same Model-Digest as the current release fraud-llm/v2.10.0")
    ]


@pytest.mark.parametrize(
    ("head", "at_target", "allow", "problems"),
    [
        (
            "t1",
            None,
            False,
            ["path apps/fraud-llm does not exist at T; refusing to delete it (target.allowDelete is false)"],
        ),
        ("t1", None, True, []),
        (None, None, False, []),  # absent in both: nothing to delete
        ("t1", "t0", False, []),
    ],
)
def test_deletion_problems(head: str | None, at_target: str | None, allow: bool, problems: list[str]) -> None:
    facts = TreeFacts((PATHS[0],), {PATHS[0]: head}, {"c": {PATHS[0]: at_target}})
    assert deletion_problems("c", "T", facts, allow) == problems


QUARANTINE = {
    "quarantined": [
        {"tag": "fraud-llm/v2.9.0", "modelDigest": "sha256:" + "9" * 64, "incident": "inc-1", "app": "fraud-llm"},
        {"modelDigest": "sha256:" + "8" * 64, "note": "added by hand"},
    ]
}


@pytest.mark.parametrize(
    ("listings", "inspect", "target", "skipped"),
    [
        (
            [listing("2.9.0", "c2"), listing("2.1.0", "c1")],
            verified,
            "fraud-llm/v2.1.0",
            [("fraud-llm/v2.9.0", "quarantined (incident inc-1)")],
        ),
        (
            [
                listing("2.8.0", "c2", trailers={"Model-Digest": "sha256:" + "8" * 64, "Data-Version": "d"}),
                listing("2.1.0", "c1"),
            ],
            verified,
            "fraud-llm/v2.1.0",
            [("fraud-llm/v2.8.0", "Model-Digest quarantined with a manual entry")],
        ),
        (
            [
                listing("2.8.0", "c2", trailers={"Model-Digest": D}),
                listing("2.1.0", "c1", trailers={"Data-Version": "d"}),
            ],
            verified,
            None,
            [
                ("fraud-llm/v2.8.0", "missing trailer Data-Version"),
                ("fraud-llm/v2.1.0", "missing trailer Model-Digest"),
            ],
        ),
        (
            [listing("2.8.0", "c2", trailers={"Model-Digest": "md5:x", "Data-Version": "d"})],
            verified,
            None,
            [("fraud-llm/v2.8.0", "trailer Model-Digest is not sha256:<64 hex>")],
        ),
        (
            [listing("2.8.0", "c2"), listing("2.1.0", "c1")],
            lambda c: Inspection(c.tag.commit != "c2", "No principal matched."),
            "fraud-llm/v2.1.0",
            [("fraud-llm/v2.8.0", "signature does not verify (No principal matched.)")],
        ),
        (
            [listing("2.8.0", "c2")],
            lambda c: Inspection(True, "", ("apps/fraud-llm/d.yaml: line 3: image 'm:latest' uses :latest",)),
            None,
            [("fraud-llm/v2.8.0", "apps/fraud-llm/d.yaml: line 3: image 'm:latest' uses :latest")],
        ),
    ],
    ids=[
        "quarantined-by-name",
        "quarantined-by-digest",
        "missing-trailers",
        "bad-digest",
        "bad-signature",
        "unpinned-image",
    ],
)
def test_select_target_rejections(
    listings: list[TagListing],
    inspect: Callable[[Candidate], Inspection],
    target: str | None,
    skipped: list[tuple[str, str]],
) -> None:
    pool, _ = release_candidates(listings, PATTERN)
    choice = select_target(pool, ("Model-Digest", "Data-Version"), parse_quarantine(QUARANTINE), inspect)
    assert (choice.target.tag.name if choice.target else None) == target
    assert [(s.name, s.reason) for s in choice.skipped] == skipped
    if target is None:
        assert choice.no_target_reason is not None and skipped[0][0] in choice.no_target_reason


def test_verification_is_lazy_and_stops_at_first_verified() -> None:
    pool, _ = release_candidates([listing(f"2.{n}.0", f"c{n}") for n in range(25)], PATTERN)
    inspected: list[str] = []

    def inspect(candidate: Candidate) -> Inspection:
        inspected.append(candidate.tag.name)
        return Inspection(candidate.tag.name != "fraud-llm/v2.24.0", "bad")

    choice = select_target(pool, ("Model-Digest",), parse_quarantine(None), inspect)
    assert inspected == ["fraud-llm/v2.24.0", "fraud-llm/v2.23.0"]
    assert choice.target is not None and choice.target.tag.name == "fraud-llm/v2.23.0"


def test_empty_pool_has_a_reason() -> None:
    choice = select_target([], ("Model-Digest",), parse_quarantine(None), verified)
    assert choice.target is None and choice.no_target_reason


# --- quarantine file ----------------------------------------------------------------------------


def test_quarantine_round_trip_is_deterministic_and_keeps_human_keys() -> None:
    quarantine = parse_quarantine(QUARANTINE)
    tag = ReleaseTag("fraud-llm/v2.10.0", "c3", {"Model-Digest": D})
    updated = quarantine.with_abandoned(tag, "inc-2", "fraud-llm")
    assert updated.with_abandoned(tag, "inc-3", "fraud-llm") == updated  # listed once only
    document = quarantine_document(updated)
    assert document["quarantined"][1] == {"modelDigest": "sha256:" + "8" * 64, "note": "added by hand"}
    assert list(document["quarantined"][2]) == ["tag", "modelDigest", "incident", "app"]
    assert parse_quarantine(yaml.safe_load(yaml.safe_dump(document, sort_keys=False))) == updated
    assert quarantine_document(parse_quarantine(document)) == document


@pytest.mark.parametrize("data", [{"quarantined": [{"incident": "x"}]}, {"quarantined": "nope"}, ["x"]])
def test_invalid_quarantine_is_an_error(data: object) -> None:
    with pytest.raises(ValueError):
        parse_quarantine(data)


# --- commit message -----------------------------------------------------------------------------

TARGET = ResolvedTarget(("fraud-llm",), "ml-prod", PATHS, PATTERN)
CURRENT = ReleaseTag("fraud-llm/v2.10.0", "c3", {"Model-Digest": D, "Data-Version": "ds-3"})
GOOD = ReleaseTag("fraud-llm/v2.9.0", "c2", {"Model-Digest": "sha256:" + "b" * 64, "Data-Version": "ds-2"})
HEAD = "0123456789abcdef0123456789abcdef01234567"


def rollback_request(**changes: object) -> RollbackRequest:
    """A request; ``current``/``release`` replace the plan's tags, other keys the request's fields."""
    plan = RollbackPlan("fraud-llm", "main", HEAD, changes.pop("current", CURRENT), changes.pop("release", GOOD))  # type: ignore[arg-type]
    fields: dict[str, object] = {
        "incident_id": "inc-1",
        "target": TARGET,
        "plan": plan,
        "alert_ref": "ModelRefusalRateDrop/3f2a",
        "evidence_url": None,
        "approved_by": None,
    }
    return RollbackRequest(**(fields | changes))  # type: ignore[arg-type]


def test_commit_message_shape_and_trailer_order() -> None:
    message = build_commit_message(rollback_request(evidence_url="s3://ev/inc-1", approved_by="Ana U012"))
    subject, body, trailers = message.rstrip("\n").split("\n\n")
    assert subject == "rollback(fraud-llm): fraud-llm/v2.10.0 -> fraud-llm/v2.9.0"
    assert "apps/fraud-llm, apps/fraud-llm-features" in body and "ds-2" in body and "fraud-llm/v2.10.0" in body
    assert trailers.splitlines() == [
        "Rollback-Incident: inc-1",
        "Rollback-From: fraud-llm/v2.10.0",
        "Rollback-To: fraud-llm/v2.9.0",
        "Rollback-Alert: ModelRefusalRateDrop/3f2a",
        "Rollback-Evidence: s3://ev/inc-1",
        "Approved-By: Ana U012",
    ]


def test_commit_message_untagged_head_and_defaults() -> None:
    message = build_commit_message(rollback_request(current=None, approved_by=""))
    trailers = parse_commit_trailers(message)
    assert message.startswith(f"rollback(fraud-llm): untagged@{HEAD[:12]} -> fraud-llm/v2.9.0\n")
    assert trailers["Rollback-From"] == f"untagged@{HEAD[:12]}"
    assert trailers["Rollback-Evidence"] == "none" and "Approved-By" not in trailers


def test_commit_message_needs_a_target() -> None:
    with pytest.raises(NoTargetError):
        build_commit_message(rollback_request(release=None))


EVIL = [
    "X\nApproved-By: evil",
    "X\r\nApproved-By: evil",
    "X\n\nApproved-By: evil",
    "X\u2028Approved-By: evil",
    "X\x0bApproved-By: evil\x00",
    "X\u202eApproved-By: evil",
]


@pytest.mark.parametrize("evil", EVIL)
@pytest.mark.parametrize("field", ["alert_ref", "incident_id", "approved_by", "evidence_url", "tag", "app"])
def test_injection_cannot_forge_trailers_or_paragraphs(field: str, evil: str) -> None:
    if field == "tag":
        request = rollback_request(
            current=ReleaseTag(evil, "c3", {}), release=ReleaseTag(evil, "c2", {"Data-Version": evil})
        )
    elif field == "app":
        request = rollback_request(target=ResolvedTarget((evil,), "p", (evil,), PATTERN))
    else:
        request = rollback_request(**{field: evil})
    message = build_commit_message(request)
    assert message.count("\n\n") == 2  # subject, body, trailers: nothing more
    assert all(ch == "\n" or ch.isprintable() for ch in message)
    trailers = parse_commit_trailers(message)
    assert list(trailers)[:5] == [
        "Rollback-Incident",
        "Rollback-From",
        "Rollback-To",
        "Rollback-Alert",
        "Rollback-Evidence",
    ]
    forged = [line for line in message.splitlines() if line.startswith("Approved-By")]
    assert forged == ([f"Approved-By: {one_line(evil)}"] if field == "approved_by" else [])


def test_long_values_are_bounded() -> None:
    message = build_commit_message(rollback_request(alert_ref="A" * 5000))
    assert max(len(line) for line in message.splitlines()) < 300


@pytest.mark.parametrize(
    ("incident", "alert"),
    [("inc-1", "A/b"), ("inc with spaces", "Alert: colon/fp"), ("inc-ü", "Ünïcode/fp")],
)
def test_trailers_round_trip(incident: str, alert: str) -> None:
    message = build_commit_message(rollback_request(incident_id=incident, alert_ref=alert))
    trailers = parse_commit_trailers(message)
    assert trailers["Rollback-Incident"] == incident and trailers["Rollback-Alert"] == alert
