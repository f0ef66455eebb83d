"""Canary rollback and shadowing as data: weights per step, route edits, analysis verdicts.

Purely computational: no YAML parsing, no git, no HTTP, no clock. The route document arrives as
nested mutable mappings and lists (the git adapter passes ruamel.yaml's round-trip objects, which
are ``dict``/``list`` subclasses, so comments and key order survive the edit) and is edited in
place. Traffic only ever moves toward the safe backend: no function here produces a plan with
less traffic on it than the step before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from rollbackbot.core.commit_message import one_line
from rollbackbot.core.matchers import Matcher
from rollbackbot.core.policy import Backends, RouteKind, Sandbox, Shadow, Strategy, StrategyType, TrafficRouter
from rollbackbot.errors import PermanentError, PolicyError

# Markers another controller leaves on routes it owns; editing such a route in Git would fight it.
OWNER_ANNOTATIONS = {
    "argo-rollouts.argoproj.io/managed-by-rollouts": "Argo Rollouts manages this route",
}
OWNER_API_GROUPS = {"flagger.app": "Flagger generated this route", "argoproj.io": "Argo Rollouts owns this route"}

STEP_TRAILER = "Rollback-Step"
WEIGHTS_TRAILER = "Rollback-Weights"
SHADOW_TRAILER = "Rollback-Shadow"
CANARY_HELD = "canary held"  # how the reason of a held canary rollback begins; Slack shows Complete / Hold
_STEP = re.compile(r"(\d+)/(\d+)")
SHADOW_RULE_SUFFIX = "-rollbackbot-shadow"  # the header-matched copy of a rule that carries the mirror


@dataclass(frozen=True)
class Mirror:
    """Mirror ``percent`` of the rule's requests (those carrying ``headers``, if any) to the sandbox."""

    service: str
    namespace: str
    port: int | None
    percent: float
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TrafficPlan:
    """What the route should say: integer weights summing to 100, and an optional mirror."""

    backends: Backends
    safe_weight: int
    mirror: Mirror | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.safe_weight <= 100:
            raise ValueError(f"safe weight {self.safe_weight} is not a percentage")

    @property
    def weights(self) -> dict[str, int]:
        """Backend name → weight, safe first; always sums to exactly 100."""
        return {self.backends.safe: self.safe_weight, self.backends.compromised: 100 - self.safe_weight}

    def weights_trailer(self) -> str:
        """``chat-llm-v1=50,chat-llm-v2=50``."""
        return ",".join(f"{name}={weight}" for name, weight in self.weights.items())


@dataclass(frozen=True)
class StepPosition:
    """Step ``index`` of ``total`` (1-based), as the ``Rollback-Step`` trailer says it."""

    index: int
    total: int

    def trailer(self) -> str:
        """``2/4``."""
        return f"{self.index}/{self.total}"

    @property
    def last(self) -> bool:
        """Whether this step puts all traffic on the safe backend."""
        return self.index == self.total


class ShadowPhase(StrEnum):
    """The ``Rollback-Shadow`` trailer: sandbox added, mirror on, both removed."""

    sandbox = "sandbox"
    on = "on"
    off = "off"


@dataclass(frozen=True)
class StepCommit:
    """One step commit: the route edit, the sandbox files when shadowing (None deletes), the trailers."""

    incident_id: str
    app: str
    router: TrafficRouter
    plan: TrafficPlan
    position: StepPosition
    shadow: ShadowPhase | None = None
    files: Mapping[str, bytes | None] = field(default_factory=dict)

    def message(self) -> str:
        """Subject, a line saying what was edited, and the trailers."""
        weights = self.plan.weights_trailer()
        subject = f"rollback({self.app}): traffic step {self.position.trailer()} {weights}"
        if self.shadow is ShadowPhase.sandbox:
            subject = f"rollback({self.app}): shadow sandbox {', '.join(sorted(self.files))}"
        elif self.shadow is ShadowPhase.on and self.plan.mirror is not None:
            subject = f"rollback({self.app}): shadow {self.plan.mirror.percent:g}% to {self.plan.mirror.namespace}"
        elif self.shadow is ShadowPhase.off:
            subject = f"rollback({self.app}): shadow removed"
        body = f"{self.router.kind.value} {self.router.name} in {self.router.file}, rule {self.router.rule}."
        trailers = [
            f"Rollback-Incident: {one_line(self.incident_id)}",
            f"{STEP_TRAILER}: {self.position.trailer()}",
            f"{WEIGHTS_TRAILER}: {weights}",
        ]
        if self.shadow is not None:
            trailers.append(f"{SHADOW_TRAILER}: {self.shadow.value}")
        return f"{subject}\n\n{body}\n\n" + "\n".join(trailers) + "\n"


@dataclass(frozen=True)
class StepRecord:
    """The newest step commit of an incident found on the deploy branch."""

    commit: str
    position: StepPosition
    weights: str
    shadow: str | None = None


def safe_weight_of(weights_trailer: str, safe: str) -> int:
    """The safe backend's weight in a ``Rollback-Weights`` value; 0 when it is not there."""
    for pair in weights_trailer.split(","):
        name, _, weight = pair.strip().partition("=")
        if name == safe and weight.isdigit():
            return int(weight)
    return 0


def parse_step(value: str) -> StepPosition | None:
    """Read a ``Rollback-Step`` trailer value; None if malformed."""
    found = _STEP.fullmatch(value.strip())
    if not found:
        return None
    index, total = int(found.group(1)), int(found.group(2))
    return StepPosition(index, total) if 1 <= index <= total else None


def canary_steps(strategy: Strategy | None, labels: Mapping[str, str]) -> tuple[int, ...]:
    """Percentages on the safe backend, one commit each; ``(100,)`` for instant or ``instantWhen`` alerts."""
    if strategy is None or strategy.type is StrategyType.instant:
        return (100,)
    if goes_instant(strategy.instant_when, labels):
        return (100,)
    return strategy.steps


def goes_instant(instant_when: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    """All ``instantWhen`` matchers hold (an empty list never does)."""
    return bool(instant_when) and all(m.matches(labels) for m in instant_when)


def mirror_for(shadow: Shadow) -> Mirror:
    """The mirror a shadow block asks for; the percent is always explicit, the port the route's own."""
    headers = tuple(sorted((shadow.match or {}).items()))
    return Mirror(shadow.sandbox.name, shadow.sandbox.namespace, None, shadow.percent, headers)


# --- route documents ---------------------------------------------------------------------------------


def refuse_if_owned(document: Mapping[str, Any]) -> None:
    """Raise PermanentError when another controller owns the route (Argo Rollouts, Flagger)."""
    metadata = document.get("metadata") or {}
    for key, reason in OWNER_ANNOTATIONS.items():
        if key in (metadata.get("annotations") or {}) or key in (metadata.get("labels") or {}):
            raise PermanentError(f"route refused: {reason} ({key}); it would undo every commit we make")
    for owner in metadata.get("ownerReferences") or []:
        group = str(owner.get("apiVersion", "")).split("/")[0]
        if group in OWNER_API_GROUPS:
            kind = owner.get("kind", "?")
            raise PermanentError(f"route refused: {OWNER_API_GROUPS[group]} (ownerReference {kind} {group})")


def check_route(document: Mapping[str, Any], router: TrafficRouter) -> None:
    """The document is the policy's route: right kind and name, not owned by another controller."""
    if document.get("kind") != router.kind.value:
        raise PolicyError(f"{router.file}: kind is {document.get('kind')!r}, the policy says {router.kind.value}")
    name = (document.get("metadata") or {}).get("name")
    if name != router.name:
        raise PolicyError(f"{router.file}: route is named {name!r}, the policy says {router.name!r}")
    refuse_if_owned(document)


def check_sandbox(document: Mapping[str, Any], sandbox: Sandbox) -> None:
    """The sandbox must not share the production route's namespace."""
    namespace = (document.get("metadata") or {}).get("namespace")
    if namespace and namespace == sandbox.namespace:
        raise PolicyError(f"shadow sandbox namespace {sandbox.namespace!r} is the production namespace")


def _rules(document: MutableMapping[str, Any], kind: RouteKind) -> list[Any]:
    spec = document.get("spec") or {}
    rules = spec.get("rules" if kind is RouteKind.http_route else "http")
    if not isinstance(rules, list) or not rules:
        raise PolicyError(f"route has no {'spec.rules' if kind is RouteKind.http_route else 'spec.http'}")
    return rules


def _rule_index(rules: Sequence[Any], selector: int | str) -> int:
    if isinstance(selector, int):
        if not 0 <= selector < len(rules):
            raise PolicyError(f"route has no rule {selector} (it has {len(rules)})")
        return selector
    for index, rule in enumerate(rules):
        if isinstance(rule, Mapping) and rule.get("name") == selector:
            return index
    raise PolicyError(f"route has no rule named {selector!r}")


def _backend_key(entry: Mapping[str, Any], kind: RouteKind) -> str:
    if kind is RouteKind.http_route:
        return str(entry.get("name", ""))
    destination = entry.get("destination") or {}
    return str(destination.get("subset") or destination.get("host", ""))


def _live_safe_weight(targets: list[Any], kind: RouteKind, safe: str) -> int:
    weights = [int(t.get("weight", 1)) for t in targets if isinstance(t, Mapping) and _backend_key(t, kind) == safe]
    return sum(weights)


def live_safe_weight(document: Mapping[str, Any], router: TrafficRouter) -> int:
    """The safe backend's weight on the policy's rule as the route says it now (0 when it is not there)."""
    return read_weights(document, router).get(router.backends.safe, 0)


def _set_weights(targets: list[Any], kind: RouteKind, plan: TrafficPlan) -> None:
    weights = plan.weights
    seen = {_backend_key(entry, kind) for entry in targets}
    strangers = seen - set(weights)
    if strangers:
        raise PolicyError(f"rule routes to backends the policy does not name: {sorted(strangers)}")
    missing = set(weights) - seen
    if missing:
        raise PolicyError(f"rule does not route to {sorted(missing)}; add it with weight 0 first")
    for entry in targets:
        entry["weight"] = weights[_backend_key(entry, kind)]


def _gateway_mirror(mirror: Mirror) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": mirror.service, "namespace": mirror.namespace}
    if mirror.port is not None:
        ref["port"] = mirror.port
    # Gateway API `percent` is an integer; a fraction keeps sub-percent samples exact.
    if float(mirror.percent).is_integer():
        return {"type": "RequestMirror", "requestMirror": {"backendRef": ref, "percent": int(mirror.percent)}}
    fraction = {"numerator": round(mirror.percent * 100), "denominator": 10000}
    return {"type": "RequestMirror", "requestMirror": {"backendRef": ref, "fraction": fraction}}


def _apply_gateway_mirror(rule: MutableMapping[str, Any], mirror: Mirror | None) -> None:
    filters = [f for f in rule.get("filters") or [] if f.get("type") != "RequestMirror"]
    if mirror is not None:
        filters.append(_gateway_mirror(mirror))
    if filters:
        rule["filters"] = filters
    elif "filters" in rule:
        del rule["filters"]


def _apply_istio_mirror(rule: MutableMapping[str, Any], mirror: Mirror | None) -> None:
    for key in ("mirror", "mirrorPercentage", "mirror_percent"):
        rule.pop(key, None)
    if mirror is None:
        return
    destination: dict[str, Any] = {"host": f"{mirror.service}.{mirror.namespace}.svc.cluster.local"}
    if mirror.port is not None:
        destination["port"] = {"number": mirror.port}
    rule["mirror"] = destination
    rule["mirrorPercentage"] = {"value": float(mirror.percent)}


def _shadow_rule_name(base: Mapping[str, Any]) -> str:
    return f"{base.get('name') or 'rule'}{SHADOW_RULE_SUFFIX}"


def _header_rule(base: Mapping[str, Any], kind: RouteKind, headers: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """A copy of the rule that only takes requests carrying ``headers`` (so only those are mirrored)."""
    rule: dict[str, Any] = dict(_plain(base))
    rule["name"] = _shadow_rule_name(base)
    if kind is RouteKind.http_route:
        extra = [{"type": "Exact", "name": k, "value": v} for k, v in headers]
        matches = rule.get("matches") or [{}]
        rule["matches"] = [{**m, "headers": [*(m.get("headers") or []), *extra]} for m in matches]
    else:
        extra_istio = {k: {"exact": v} for k, v in headers}
        matches = rule.get("match") or [{}]
        rule["match"] = [{**m, "headers": {**(m.get("headers") or {}), **extra_istio}} for m in matches]
    return rule


def _port_of(targets: Sequence[Any], kind: RouteKind, backend: str) -> int | None:
    """The port the route uses for ``backend``: the sandbox serves the same one."""
    for entry in targets:
        if _backend_key(entry, kind) == backend:
            port = entry.get("port") if kind is RouteKind.http_route else (entry.get("destination") or {}).get("port")
            number = port.get("number") if isinstance(port, Mapping) else port
            return int(number) if number is not None else None
    return None


def route_facts(document: Mapping[str, Any], router: TrafficRouter) -> tuple[str, int | None]:
    """The route's namespace and the port it uses for the compromised backend (the sandbox serves the same)."""
    rules = [r for r in _rules(dict(document), router.kind) if not _is_shadow_rule(r)]
    rule = rules[_rule_index(rules, router.rule)]
    targets = rule.get("backendRefs" if router.kind is RouteKind.http_route else "route") or []
    namespace = str((document.get("metadata") or {}).get("namespace") or "default")
    return namespace, _port_of(targets, router.kind, router.backends.compromised)


def proxy_namespace(document: Mapping[str, Any], router: TrafficRouter) -> str:
    """Where the mirroring proxies run: the HTTPRoute's first parent Gateway, else the route's namespace."""
    namespace = str((document.get("metadata") or {}).get("namespace") or "default")
    if router.kind is RouteKind.http_route:
        parents = (document.get("spec") or {}).get("parentRefs") or []
        if parents and isinstance(parents[0], Mapping) and parents[0].get("namespace"):
            return str(parents[0]["namespace"])
    return namespace


def shadow_due_off(switched_on: datetime, ttl: timedelta, now: datetime) -> bool:
    """Whether a shadow switched on at ``switched_on`` has outlived its ``ttl``."""
    return now >= switched_on + ttl


def _is_shadow_rule(rule: Any) -> bool:
    return isinstance(rule, Mapping) and str(rule.get("name", "")).endswith(SHADOW_RULE_SUFFIX)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def apply_plan(document: MutableMapping[str, Any], router: TrafficRouter, plan: TrafficPlan) -> None:
    """Edit the route in place: weights on the policy's rule, and the mirror (added or removed)."""
    check_route(document, router)
    kind = router.kind
    rules = _rules(document, kind)
    # A previous shadow's header rule is ours: drop it first so rule indexes mean what the policy says.
    for stale in [i for i, r in enumerate(rules) if _is_shadow_rule(r)][::-1]:
        del rules[stale]
    index = _rule_index(rules, router.rule)
    rule = rules[index]
    targets_key = "backendRefs" if kind is RouteKind.http_route else "route"
    targets = rule.get(targets_key)
    if not isinstance(targets, list) or not targets:
        raise PolicyError(f"rule {router.rule} has no {targets_key}")
    live = _live_safe_weight(targets, kind, router.backends.safe)
    if plan.safe_weight < live:
        raise PolicyError(
            f"{router.file}: the route already gives {live}% to {router.backends.safe}; {plan.safe_weight}% would move"
            f" traffic back toward {router.backends.compromised}, which rollbackbot never does on its own"
        )
    _set_weights(targets, kind, plan)
    apply_mirror = _apply_gateway_mirror if kind is RouteKind.http_route else _apply_istio_mirror
    mirror = plan.mirror
    if mirror is not None and mirror.port is None:
        mirror = replace(mirror, port=_port_of(targets, kind, router.backends.compromised))
    if mirror is not None and mirror.headers:
        shadow_rule = _header_rule(rule, kind, mirror.headers)
        apply_mirror(shadow_rule, mirror)
        rules.insert(index, shadow_rule)
        mirror = None
    apply_mirror(rule, mirror)
    check_weights(read_weights(document, router))


def read_weights(document: Mapping[str, Any], router: TrafficRouter) -> dict[str, int]:
    """Backend → weight on the policy's rule as the document says it now (missing weight = 1, as both APIs)."""
    rules = [r for r in _rules(dict(document), router.kind) if not _is_shadow_rule(r)]
    rule = rules[_rule_index(rules, router.rule)]
    targets = rule.get("backendRefs" if router.kind is RouteKind.http_route else "route") or []
    return {_backend_key(t, router.kind): int(t.get("weight", 1)) for t in targets}


def check_weights(weights: Mapping[str, int]) -> None:
    """Integers summing to exactly 100, at least one above zero (else the proxy answers 500 for all)."""
    if any(not isinstance(w, int) or w < 0 for w in weights.values()):
        raise PolicyError(f"weights must be non-negative integers: {dict(weights)}")
    if sum(weights.values()) != 100 or not any(weights.values()):
        raise PolicyError(f"weights must sum to 100 with one above zero: {dict(weights)}")
