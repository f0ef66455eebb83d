"""The ``RollbackPolicy`` document (docs/policies.md) as frozen pydantic models.

Purely computational: validation only, no YAML and no file access (that lives in
``rollbackbot.policy_files``). Key names are the public contract, so every model forbids
unknown keys and validates by the camelCase alias only; Python code reads snake_case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    StrictBool,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from rollbackbot.core.matchers import Matcher, parse_matcher
from rollbackbot.errors import PolicyError

KIND = "RollbackPolicy"

# --- durations: Go/Prometheus style, units in descending order, each at most once -------------

_DURATION = re.compile(r"(?=\d)(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
_UNITS = ("weeks", "days", "hours", "minutes", "seconds", "milliseconds")


def parse_duration(text: str) -> timedelta:
    """Parse ``500ms``, ``60s``, ``1h30m``, ``0s`` … into a timedelta; ValueError if malformed."""
    found = _DURATION.fullmatch(text)
    if found is None:
        raise ValueError(f"invalid duration {text!r}: expected e.g. 500ms, 60s, 30m, 24h, 1h30m")
    try:
        return timedelta(**{unit: int(n) for unit, n in zip(_UNITS, found.groups(), strict=True) if n})
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long") from None


def format_duration(value: timedelta) -> str:
    """Render a timedelta the way ``parse_duration`` reads it (``1h30m``, ``0s``)."""
    millis = round(value.total_seconds() * 1000)
    parts = [(millis // 3_600_000, "h"), (millis // 60_000 % 60, "m"), (millis // 1000 % 60, "s")]
    text = "".join(f"{n}{unit}" for n, unit in parts if n) + (f"{millis % 1000}ms" if millis % 1000 else "")
    return text or "0s"


def _validate_duration(value: object) -> timedelta:
    # A bare YAML number has no unit; refusing it beats guessing seconds.
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("a duration must be a string such as 60s, 30m or 1h30m")
    return parse_duration(value)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


Duration = Annotated[
    timedelta,
    PlainValidator(_validate_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": f"^{_DURATION.pattern}$", "examples": ["60s", "1h30m"]}),
]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]

# --- names, templates and paths -----------------------------------------------------------------

TEMPLATE = re.compile(r"\$\{labels\.([a-zA-Z_][a-zA-Z0-9_]*)\}")
SAFE_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class _Checked:
    """A string annotation: regex check with a readable error, and the same pattern in the schema.

    With ``templates`` the value may also hold ``${labels.NAME}`` placeholders between the
    characters that ``char_class`` allows.
    """

    char_class: str
    what: str
    templates: bool = False

    @property
    def pattern(self) -> str:
        if self.templates:
            return rf"(?:\$\{{labels\.[a-zA-Z_][a-zA-Z0-9_]*\}}|{self.char_class})+"
        return self.char_class

    def check(self, value: str) -> str:
        rest = TEMPLATE.sub("", value) if self.templates else value
        if self.templates and "${" in rest:
            bad = rest[rest.index("${") :][:40]
            raise ValueError(f"{self.what}: only ${{labels.NAME}} may be substituted, found {bad!r}")
        if not re.fullmatch(self.pattern, value):
            rule = (
                f"allowed: {self.char_class} and ${{labels.NAME}}"
                if self.templates
                else f"must match {self.char_class}"
            )
            raise ValueError(f"{value!r} is not a valid {self.what} ({rule})")
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {**handler(schema), "pattern": f"^{self.pattern}$", "description": self.what}


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a safe repository-relative path, or None if it is."""
    if path.startswith("/"):
        return "must be relative to the repository root (no leading '/')"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "must not contain '..', '.' or empty segments"
    return None


def _path_check(value: str) -> str:
    problem = path_problem(value)
    if problem:
        raise ValueError(f"path {value!r} {problem}")
    return value


def _matcher(value: object) -> Matcher:
    if isinstance(value, Matcher):
        return value
    if not isinstance(value, str):
        raise ValueError('a matcher must be a string such as app = "fraud-llm"')
    try:
        return parse_matcher(value)
    except PolicyError as exc:  # pydantic only turns ValueError into a located error
        raise ValueError(exc.message) from None


MatcherField = Annotated[
    Matcher,
    PlainValidator(_matcher),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "examples": ['alertname =~ "A|B"', 'app = "fraud-llm"']}),
]
AppName = Annotated[str, _Checked(r"[A-Za-z0-9._-]", "Argo CD application name", templates=True)]
RepoPath = Annotated[
    str,
    _Checked(r"[A-Za-z0-9._/-]", "repository path, relative, without '..'", templates=True),
    AfterValidator(_path_check),
]
TagGlob = Annotated[str, _Checked(r"[A-Za-z0-9._/*?\[\]-]", "glob over release tag names", templates=True)]
Name = Annotated[str, _Checked(r"[A-Za-z0-9][A-Za-z0-9._-]*", "name")]
DnsLabel = Annotated[str, _Checked(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?", "policy name (DNS label)")]
Trailer = Annotated[str, _Checked(r"[A-Za-z0-9][A-Za-z0-9-]*", "git trailer key")]
SlackChannel = Annotated[str, _Checked(r"[CG][A-Z0-9]{2,}", "Slack channel ID (not a #name)")]
SlackApprover = Annotated[str, _Checked(r"[USW][A-Z0-9]{2,}", "Slack user (U/W) or user-group (S) ID")]
WebUrl = Annotated[str, _Checked(r"https?://\S+", "http(s) URL")]
ForgeRepository = Annotated[
    str, _Checked(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)+", "forge repository (owner/name)")
]
ForgeLogin = Annotated[str, _Checked(r"[A-Za-z0-9][A-Za-z0-9._-]*", "forge user login")]

# --- the document -----------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        serialize_by_alias=True,
        field_title_generator=lambda name, _: to_camel(name),
    )


class PolicyMode(StrEnum):
    """What a matching alert leads to."""

    auto = "auto"
    propose = "propose"
    notify = "notify"


class OnTimeout(StrEnum):
    """What an unanswered proposal turns into."""

    expire = "expire"
    rollback = "rollback"


class Metadata(_Section):
    """Identifies the policy; incidents record its name."""

    name: DnsLabel


class Target(_Section):
    """What is rolled back: Argo CD apps, the repository paths restored in one commit, the release tags."""

    argocd_apps: tuple[AppName, ...] = Field(min_length=1)
    project: Name
    paths: tuple[RepoPath, ...] = Field(min_length=1)
    tags: TagGlob
    require_trailers: tuple[Trailer, ...] = ("Model-Digest", "Data-Version")
    allow_delete: StrictBool = Field(
        default=False,
        description=(
            "Whether a rollback may delete a policy path that does not exist at the target release."
            " Off by default: a path missing at the target usually belongs to another app or was added"
            " later, and the plan refuses rather than deleting it."
        ),
    )


class Budget(_Section):
    """At most ``max`` automatic rollbacks per ``per``; past it, auto becomes propose."""

    max: StrictInt = Field(default=3, ge=1)
    per: PositiveDuration = timedelta(hours=24)


class Approval(_Section):
    """Who may approve a proposed rollback in Slack, and what happens when nobody answers."""

    channel: SlackChannel
    approvers: tuple[SlackApprover, ...] = Field(min_length=1)
    timeout: PositiveDuration = timedelta(minutes=30)
    on_timeout: OnTimeout = OnTimeout.expire


class Sync(_Section):
    """How Argo CD syncs the apps after the rollback commit."""

    timeout: PositiveDuration = timedelta(minutes=5)
    prune: StrictBool = True


class Forensics(_Section):
    """Evidence captured before anything changes; ``required`` makes a failed capture a proposal."""

    requests_url: WebUrl | None = None
    snapshot_url: WebUrl | None = None
    budget: PositiveDuration = timedelta(seconds=10)
    required: StrictBool = False


class Verify(_Section):
    """The triggering alert must resolve this soon after the rollback, else a human is called."""

    within: PositiveDuration = timedelta(minutes=10)


class Retry(_Section):
    """Overrides of the service's retry budget for transient errors (settings retry_budget_seconds, retry_attempts)."""

    budget: PositiveDuration | None = None  # how long one attempt retries transient errors
    attempts: StrictInt | None = Field(default=None, ge=1)  # attempts in all, re-deliveries included


class GitMode(StrEnum):
    """How the rollback commit reaches the deploy branch."""

    direct = "direct"
    pull_request = "pull-request"


class ForgeKind(StrEnum):
    """The forge that hosts the GitOps repository's pull requests."""

    github = "github"
    gitlab = "gitlab"


class AutoMerge(StrEnum):
    """Who merges a rollback pull request."""

    after_approval = "afterApproval"
    platform = "platform"
    never = "never"


class MergeMethod(StrEnum):
    """How the forge merges the pull request."""

    merge = "merge"
    squash = "squash"
    rebase = "rebase"


class GitDelivery(_Section):
    """Direct push (default) or a pull request on a forge, merged on approval (docs/pull-request-mode.md)."""

    mode: GitMode = GitMode.direct
    forge: ForgeKind | None = None
    repository: ForgeRepository | None = None
    auto_merge: AutoMerge = AutoMerge.after_approval
    merge_method: MergeMethod = MergeMethod.merge
    approvers: tuple[ForgeLogin, ...] = ()  # forge logins whose approving review counts as approval
    poll: PositiveDuration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _pull_request_needs_forge(self) -> Self:
        if self.mode is GitMode.pull_request and (self.forge is None or self.repository is None):
            raise ValueError("mode pull-request needs forge (github or gitlab) and repository (owner/name)")
        return self

    @property
    def pull_request(self) -> bool:
        """Whether the rollback goes through a pull request."""
        return self.mode is GitMode.pull_request


class Spec(_Section):
    """Which alerts the policy covers and what it does about them."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"mode": {"const": "propose"}}},
            "then": {"required": ["approval"]},
        }
    )

    matchers: tuple[MatcherField, ...] = Field(min_length=1)
    target: Target
    mode: PolicyMode
    debounce: Duration = timedelta(0)
    cooldown: Duration = timedelta(minutes=30)
    budget: Budget = Budget()
    approval: Approval | None = None
    sync: Sync = Sync()
    forensics: Forensics = Forensics()
    verify: Verify = Verify()
    retry: Retry | None = None
    git: GitDelivery = GitDelivery()

    @model_validator(mode="after")
    def _propose_needs_approval(self) -> Self:
        if self.mode is PolicyMode.propose and self.approval is None:
            raise ValueError("mode propose needs an approval block (channel and approvers)")
        return self


class Policy(_Section):
    """One validated policy document; ``source``/``index`` say where it was read from."""

    api_version: Literal["rollbackbot/v1"]
    kind: Literal["RollbackPolicy"]
    metadata: Metadata
    spec: Spec
    _source: str = PrivateAttr(default="")
    _index: int = PrivateAttr(default=0)

    @model_validator(mode="after")
    def _take_origin(self, info: ValidationInfo) -> Self:
        origin = info.context or {}
        self._source = str(origin.get("source", ""))
        self._index = int(origin.get("index", 0))
        return self

    @classmethod
    def from_document(cls, document: object, *, source: str = "", index: int = 0) -> Policy:
        """Validate one parsed document; raises pydantic.ValidationError with alias locations."""
        return cls.model_validate(document, context={"source": source, "index": index})

    @property
    def name(self) -> str:
        """``metadata.name``."""
        return self.metadata.name

    @property
    def source(self) -> str:
        """File name the policy was read from (``""`` if built in memory)."""
        return self._source

    @property
    def index(self) -> int:
        """Position of the document in its file, counting from 0."""
        return self._index


class _PolicySchema(GenerateJsonSchema):
    def encode_default(self, dft: Any) -> Any:
        # Defaults would otherwise appear in ISO 8601 ("PT30M"), which the files do not accept.
        return format_duration(dft) if isinstance(dft, timedelta) else super().encode_default(dft)


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema of a policy document (by alias), for editors and ``policy schema``."""
    schema = Policy.model_json_schema(by_alias=True, mode="validation", schema_generator=_PolicySchema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": KIND,
        "description": "A rollbackbot policy file (policies/*.yaml); see docs/policies.md.",
    }
