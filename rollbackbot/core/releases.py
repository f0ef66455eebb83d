"""Release-tag rules: which tag is deployed now, which older one is safe to return to.

Purely computational: the git adapter gathers facts (tag listing, tree ids, signature exit
codes, manifest text) and these functions decide. Verification is lazy: ``select_target``
asks the adapter to inspect one candidate at a time, newest first, and stops at the first
that passes, because a signature check costs a process per tag.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rollbackbot.core.commit_message import one_line, parse_trailers
from rollbackbot.core.model import ReleaseTag, SkippedTag

_SEMVER = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")  # Model-Digest trailers and image pins alike
_WILDCARDS = "*?["


@dataclass(frozen=True)
class SemVer:
    """A semantic version; ``key`` orders it by semver precedence (build metadata ignored)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[int | str, ...] = ()
    build: str = ""

    @property
    def key(self) -> tuple[object, ...]:
        """Sort key for semver precedence."""
        # A release sorts after all its pre-releases; numeric identifiers sort before
        # alphanumeric ones, and a shorter identifier list sorts first (semver §11).
        pre = tuple((isinstance(p, str), p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, not self.prerelease, pre)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(str(p) for p in self.prerelease)
        return text + (f"+{self.build}" if self.build else "")


def parse_semver(text: str) -> SemVer | None:
    """Parse ``MAJOR.MINOR.PATCH[-pre][+build]``, with an optional leading ``v``; None if invalid."""
    match = _SEMVER.fullmatch(text[1:] if text[:1] in ("v", "V") else text)
    if match is None:
        return None
    major, minor, patch, pre, build = match.groups()
    prerelease = tuple(int(p) if p.isdigit() else p for p in pre.split(".")) if pre else ()
    return SemVer(int(major), int(minor), int(patch), prerelease, build or "")


def tag_matches(name: str, pattern: str) -> bool:
    """Whether a tag name matches the policy glob (fnmatch, case-sensitive, on the full name)."""
    return fnmatchcase(name, pattern)


def tag_version(name: str, pattern: str) -> SemVer | None:
    """The semver in the part of ``name`` the glob's wildcards matched, e.g. ``fraud-llm/v*``."""
    first = min((i for i in (pattern.find(w) for w in _WILDCARDS) if i >= 0), default=None)
    if first is None:
        return parse_semver(name.rpartition("/")[2])
    last = max(pattern.rfind("*"), pattern.rfind("?"), pattern.rfind("]"))
    prefix, suffix = pattern[:first], pattern[last + 1 :]
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    # When prefix and suffix overlap in ``name`` the slice is empty, which is no semver.
    return parse_semver(name[len(prefix) : len(name) - len(suffix)])


@dataclass(frozen=True)
class TagListing:
    """One line of the adapter's ``git for-each-ref refs/tags`` listing."""

    name: str  # without refs/tags/
    object_type: str  # "tag" for annotated tags, "commit" for lightweight ones
    object_id: str  # the tag object (annotated) or the commit (lightweight)
    commit: str  # peeled commit id; "" when the tag does not point at a commit
    body: str  # %(contents:body): the message after its title, signature excluded
    signed_name: str  # %(tag): the name inside the (signed) tag object; "" for lightweight tags


@dataclass(frozen=True)
class Candidate:
    """A release tag matching the policy glob, with its parsed version."""

    tag: ReleaseTag
    version: SemVer
    object_id: str  # the annotated tag object, what `git verify-tag` checks


def release_candidates(listings: Iterable[TagListing], pattern: str) -> tuple[list[Candidate], list[SkippedTag]]:
    """Annotated tags matching ``pattern`` with a semver, newest first; the others with a reason."""
    candidates: list[Candidate] = []
    ignored: list[SkippedTag] = []
    for item in listings:
        if not tag_matches(item.name, pattern):
            continue
        version = tag_version(item.name, pattern)
        if version is None:
            ignored.append(SkippedTag(item.name, "no semver version in the tag name"))
        elif item.object_type != "tag":
            ignored.append(SkippedTag(item.name, "lightweight tag (release tags are annotated and signed)"))
        elif item.signed_name != item.name:
            # The ref name is not signed; the tag object's own `tag` header is. Anyone with push
            # rights can re-publish an old signed tag object under a newer name without the key.
            reason = f"ref name does not match the signed tag name ({one_line(item.signed_name, 80)!r})"
            ignored.append(SkippedTag(item.name, reason))
        elif not item.commit:
            ignored.append(SkippedTag(item.name, "tag does not point at a commit"))
        else:
            tag = ReleaseTag(item.name, item.commit, parse_trailers(item.body))
            candidates.append(Candidate(tag, version, item.object_id))
    candidates.sort(key=lambda c: (c.version.key, c.tag.name), reverse=True)
    return candidates, ignored


@dataclass(frozen=True)
class TreeFacts:
    """Tree (or blob) ids of the policy paths; None where a path is absent."""

    paths: tuple[str, ...]
    head: Mapping[str, str | None]  # path -> id at the deploy branch head
    at: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)  # commit -> path -> id

    def same_as_head(self, commit: str) -> bool:
        """Whether every policy path at ``commit`` equals the head's (absent in both counts as equal)."""
        trees = self.at.get(commit)
        return trees is not None and all(trees.get(p) == self.head.get(p) for p in self.paths)


def find_current(candidates: Sequence[Candidate], trees: TreeFacts) -> Candidate | None:
    """The newest candidate whose policy paths equal the head's; None means an untagged head."""
    return next((c for c in candidates if trees.same_as_head(c.tag.commit)), None)


def target_pool(
    candidates: Sequence[Candidate],
    current: Candidate | None,
    trees: TreeFacts,
    ancestors: Collection[str],
) -> tuple[list[Candidate], list[SkippedTag]]:
    """Candidates a rollback may go to, newest first: on the deploy branch, and older than current.

    ``ancestors`` are the peeled commits of tags reachable from the branch head: a signed tag
    on a side branch that never merged was never deployed from this branch, so it is no target.
    """
    older = [c for c in candidates if current is None or c.version.key < current.version.key]
    skipped = [SkippedTag(c.tag.name, NOT_ON_BRANCH) for c in older if c.tag.commit not in ancestors]
    pool = [c for c in older if c.tag.commit in ancestors]
    # A re-tag of the deployed content is no rollback at all: it would only touch the quarantine file.
    kept = [c for c in pool if not trees.same_as_head(c.tag.commit)]
    skipped += [SkippedTag(c.tag.name, "same content as the deploy branch head") for c in pool if c not in kept]
    return kept, skipped


NOT_ON_BRANCH = "not on the deploy branch (its commit is not an ancestor of the head)"


@dataclass(frozen=True)
class Inspection:
    """What the adapter found out about one candidate by running git."""

    signature_verified: bool  # `git verify-tag` exit code was 0
    signature_detail: str = ""  # git's own last words when it failed
    manifest_problems: tuple[str, ...] = ()  # "<file>: line N: image ..." from image_problems


def static_problems(
    tag: ReleaseTag,
    required_trailers: Sequence[str],
    quarantine: Quarantine,
    current: ReleaseTag | None = None,
) -> list[str]:
    """Reasons a tag is not a target that need no git call: trailers, quarantine, the current model."""
    problems = [f"missing trailer {name}" for name in required_trailers if not tag.trailers.get(name)]
    digest = tag.model_digest
    if digest and not _DIGEST.fullmatch(digest):
        problems.append("trailer Model-Digest is not sha256:<64 hex>")
    reason = quarantine.reason(tag)
    if reason:
        problems.append(reason)
    if current is not None and digest and digest == current.model_digest:
        # An -rc re-tag of the compromised model: "rolling back" to it keeps the same model serving.
        problems.append(f"same Model-Digest as the current release {current.name}")
    return problems


def deletion_problems(commit: str, tag_name: str, trees: TreeFacts, allow_delete: bool) -> list[str]:
    """Policy paths present at the head but absent at the target: a rollback would delete them."""
    if allow_delete:
        return []
    at = trees.at.get(commit, {})
    return [
        f"path {path} does not exist at {tag_name}; refusing to delete it (target.allowDelete is false)"
        for path in trees.paths
        if trees.head.get(path) is not None and at.get(path) is None
    ]


def verification_problems(inspection: Inspection) -> list[str]:
    """Reasons from the git-gathered facts: a signature that does not verify, unpinned images."""
    problems: list[str] = []
    if not inspection.signature_verified:
        detail = f" ({inspection.signature_detail})" if inspection.signature_detail else ""
        problems.append(f"signature does not verify{detail}")
    problems.extend(inspection.manifest_problems)
    return problems


@dataclass(frozen=True)
class Broken:
    """What the rollback moves away from: a target must differ from it in content and model."""

    current: ReleaseTag | None
    trees: TreeFacts
    allow_delete: bool = False


def candidate_problems(
    candidate: Candidate,
    required_trailers: Sequence[str],
    quarantine: Quarantine,
    inspect: Callable[[Candidate], Inspection],
    broken: Broken | None = None,
) -> list[str]:
    """All reasons ``candidate`` is not verified; calls ``inspect`` only if the cheap checks pass."""
    current = broken.current if broken else None
    problems = static_problems(candidate.tag, required_trailers, quarantine, current)
    if broken is not None:
        problems += deletion_problems(candidate.tag.commit, candidate.tag.name, broken.trees, broken.allow_delete)
    return problems or verification_problems(inspect(candidate))


@dataclass(frozen=True)
class TargetChoice:
    """The outcome of target selection."""

    target: Candidate | None
    skipped: tuple[SkippedTag, ...]
    no_target_reason: str | None = None


def select_target(
    pool: Sequence[Candidate],
    required_trailers: Sequence[str],
    quarantine: Quarantine,
    inspect: Callable[[Candidate], Inspection],
    broken: Broken | None = None,
) -> TargetChoice:
    """The newest verified candidate of ``pool``; every rejected one newer than it is a SkippedTag."""
    skipped: list[SkippedTag] = []
    for candidate in pool:
        problems = candidate_problems(candidate, required_trailers, quarantine, inspect, broken)
        if not problems:
            return TargetChoice(candidate, tuple(skipped))
        skipped.append(SkippedTag(candidate.tag.name, "; ".join(problems)))
    if not skipped:
        return TargetChoice(None, (), "no older release tag to return to")
    newest = skipped[0]
    reason = f"none of the {len(skipped)} older release tags is verified (newest: {newest.name}: {newest.reason})"
    return TargetChoice(None, tuple(skipped), reason)


def no_candidates_reason(pattern: str, current: Candidate | None) -> str:
    """Why there is nothing to roll back to when the pool is empty."""
    if current is not None:
        return f"no release tag matching {pattern!r} is older than {current.tag.name}"
    return f"the head is untagged and no release tag matching {pattern!r} is among its ancestors"


# --- .rollbackbot/quarantine.yaml -------------------------------------------------------------

QUARANTINE_PATH = ".rollbackbot/quarantine.yaml"
QUARANTINE_HEADER = (
    "# Release tags rollbackbot abandoned. A tag listed here (or any tag with the same Model-Digest)"
    " is never a rollback target again.\n"
)


class QuarantineEntry(BaseModel):
    """One abandoned release; humans may add entries (and extra keys, which are kept)."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    tag: str | None = None
    model_digest: str | None = Field(default=None, alias="modelDigest")
    incident: str | None = None
    app: str | None = None

    @model_validator(mode="after")
    def _names_something(self) -> QuarantineEntry:
        if not self.tag and not self.model_digest:
            raise ValueError("a quarantine entry needs a tag or a modelDigest")
        return self


class Quarantine(BaseModel):
    """The parsed quarantine file."""

    model_config = ConfigDict(extra="allow", frozen=True)

    quarantined: tuple[QuarantineEntry, ...] = ()

    def reason(self, tag: ReleaseTag) -> str | None:
        """Why ``tag`` is quarantined (by name, or by its Model-Digest), or None."""
        for entry in self.quarantined:
            if entry.tag == tag.name:
                return f"quarantined (incident {entry.incident or 'unknown'})"
            if entry.model_digest and entry.model_digest == tag.model_digest:
                return f"Model-Digest quarantined with {entry.tag or 'a manual entry'}"
        return None

    def with_abandoned(self, tag: ReleaseTag, incident_id: str, app: str) -> Quarantine:
        """A copy that also lists ``tag``; unchanged when the tag is already listed."""
        if any(entry.tag == tag.name for entry in self.quarantined):
            return self
        entry = QuarantineEntry(tag=tag.name, model_digest=tag.model_digest, incident=incident_id, app=app)
        return self.model_copy(update={"quarantined": (*self.quarantined, entry)})


def parse_quarantine(data: object) -> Quarantine:
    """Validate the YAML-loaded quarantine file (None or empty means nothing is quarantined)."""
    return Quarantine.model_validate(data or {})


def quarantine_document(quarantine: Quarantine) -> dict[str, Any]:
    """Plain data for the YAML writer, keys in a fixed order so rendering is deterministic."""
    entries = [
        entry.model_dump(by_alias=True, exclude_none=True, exclude=set(entry.model_extra or {}))
        | dict(sorted((entry.model_extra or {}).items()))
        for entry in quarantine.quarantined
    ]
    return {"quarantined": entries, **dict(sorted((quarantine.model_extra or {}).items()))}


# --- image pinning ----------------------------------------------------------------------------

_VALUE = r"""("[^"]*"|'[^']*'|[^\s,}\]#'"][^\s,}\]#]*)"""
_IMAGE_BLOCK = re.compile(r"""^\s*(?:-\s+)?["']?image["']?\s*:(.*)$""")  # `image:` as a block key
_IMAGE_FLOW = re.compile(r"""[{,]\s*["']?image["']?\s*:\s*""" + _VALUE)  # inside {...}: YAML flow or JSON
_IMAGES_BLOCK = re.compile(r"^(\s*)(?:-\s+)?images\s*:\s*(?:#.*)?$")
_KUSTOMIZE_KEY = re.compile(r"""(?:^|[\s{,-])(name|newName|newTag|digest)\s*:\s*""" + _VALUE)
_LIST_SCALAR = re.compile(r"^\s*-\s+" + _VALUE + r"\s*(?:#.*)?$")


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in ('"', "'") else value


def reference_problem(reference: str) -> str | None:
    """Why an image reference is not pinned by digest, or None when it is."""
    if not reference:
        return "is empty"
    if "${" in reference or "{{" in reference:
        return "is templated, so its digest cannot be checked"
    _, at, digest = reference.partition("@")
    if at:
        return None if _DIGEST.fullmatch(digest) else "has a malformed digest (want sha256:<64 hex>)"
    last = reference.rpartition("/")[2]
    if ":" not in last:
        return "has no tag or digest (means :latest)"
    tag = last.rpartition(":")[2]
    return "uses :latest" if tag == "latest" else f"is pinned by tag {tag!r} only, not by digest"


def image_problems(manifest_text: str) -> list[str]:
    """Every image reference in a manifest that is not pinned by ``@sha256:<64 hex>``."""
    lines = manifest_text.splitlines()
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        block = _IMAGE_BLOCK.match(line)
        values = [re.sub(r"\s+#.*$", "", block.group(1)).strip()] if block else []
        values += [match.group(1) for match in _IMAGE_FLOW.finditer(line)]
        for value in values:
            if not value:
                # `image:` followed by a nested mapping (Helm style): no single reference to check.
                problems.append(f"line {number}: image is not a plain reference, so its digest cannot be checked")
            elif problem := reference_problem(_unquote(value)):
                problems.append(f"line {number}: image {_unquote(value)!r} {problem}")
    problems.extend(_kustomize_problems(lines))
    return problems


def _kustomize_problems(lines: list[str]) -> list[str]:
    """Kustomize ``images:`` overrides: ``newTag`` without ``digest`` deploys an unpinned image."""
    problems: list[str | None] = []
    index = 0
    while index < len(lines):
        block = _IMAGES_BLOCK.match(lines[index])
        index += 1
        if block is None:
            continue
        indent = len(block.group(1))
        entries: list[tuple[int, dict[str, str]]] = []
        while index < len(lines):
            line = lines[index]
            stripped = line.strip()
            depth = len(line) - len(line.lstrip())
            if stripped and not stripped.startswith("#"):
                if depth < indent or (depth == indent and not stripped.startswith("-")):
                    break
                if stripped.startswith("-"):
                    entries.append((index + 1, {}))
                    scalar = _LIST_SCALAR.match(line)
                    if scalar and not scalar.group(1).endswith(":"):
                        entries[-1][1]["reference"] = _unquote(scalar.group(1))
                if entries:
                    entries[-1][1].update((k, _unquote(v)) for k, v in _KUSTOMIZE_KEY.findall(line))
            index += 1
        problems.extend(_kustomize_entry_problem(number, entry) for number, entry in entries)
    return [p for p in problems if p is not None]


def _kustomize_entry_problem(number: int, entry: dict[str, str]) -> str | None:
    name = entry.get("name", "?")
    if "digest" in entry:
        ok = _DIGEST.fullmatch(entry["digest"])
        return None if ok else f"line {number}: kustomize image {name!r} has a malformed digest"
    if "newTag" in entry:
        return f"line {number}: kustomize image {name!r} sets newTag {entry['newTag']!r} without a digest"
    if "reference" in entry:
        problem = reference_problem(entry["reference"])
        return f"line {number}: image {entry['reference']!r} {problem}" if problem else None
    return None
