"""What each alert of a webhook becomes, decided once for the answer and again for the incidents.

Purely computational, no side effects. The webhook answers with the incident ids of a payload
before anything is stored (the inbox, ``rollbackbot.inbox``); the drainer later opens exactly those
incidents. Both call ``AlertPlanner.plan`` with the same inputs (the payload, the time it was
accepted, which apps were unknown then), so the answer and the stored incidents cannot disagree.

Memoised per policy set: which policy an alert falls under depends only on the labels the
matchers read, and its target only on the labels the templates read, so an alert storm over a few
apps selects and resolves each (policy, app) once.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from rollbackbot.core.alerts import Alert
from rollbackbot.core.incidents import incident_id
from rollbackbot.core.model import ResolvedTarget
from rollbackbot.core.policy import TEMPLATE, Policy
from rollbackbot.core.policy_select import resolve_target, select_policy
from rollbackbot.errors import AlertRefused

K = TypeVar("K")
V = TypeVar("V")
REFUSED_APP = "unresolved"  # the app of an incident whose labels failed the name check
_MEMO_LIMIT = 4096  # entries per memo; cleared when full (label values come from whoever fires alerts)


class AlertKind(enum.Enum):
    """What becomes of one alert."""

    opens = "opens"  # an incident (new, or the one a re-delivery maps to)
    refused = "refused"  # an incident recorded as suppressed: a label failed the name check
    unknown_app = "unknown_app"  # its app is not in the GitOps repository: nothing recorded
    resolution = "resolution"  # it ended: its incident, if any, learns so
    unmatched = "unmatched"  # no policy matches


@dataclass(frozen=True)
class AlertPlan:
    """One alert's fate: kind, policy, resolved target and the incident id it maps to."""

    alert: Alert
    kind: AlertKind
    policy: Policy | None = None
    target: ResolvedTarget | None = None
    incident_id: str | None = None  # opens / refused
    refusal: str | None = None  # refused: why


AppKnown = Callable[[ResolvedTarget], bool]


def _always_known(_target: ResolvedTarget) -> bool:
    return True


class AlertPlanner:
    """``plan`` for one policy set; build a new planner when the policies change."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = list(policies)
        self._matched_labels = sorted({m.name for p in self.policies for m in p.spec.matchers})
        self._templated = [_template_labels(p) for p in self.policies]
        self._index = {id(p): i for i, p in enumerate(self.policies)}
        self._selected: dict[tuple[str | None, ...], Policy | None] = {}
        self._resolved: dict[tuple[int, tuple[str | None, ...]], ResolvedTarget | str] = {}

    def plan(self, alert: Alert, now: datetime, app_known: AppKnown = _always_known) -> AlertPlan:
        """The fate of ``alert`` received at ``now``; ``app_known`` says whether a target's paths exist."""
        policy = self._select(alert)
        if policy is None:
            return AlertPlan(alert, AlertKind.unmatched)
        if not alert.firing or (alert.ends_at is not None and alert.ends_at <= now):
            return AlertPlan(alert, AlertKind.resolution, policy)  # a "firing" alert that ended is over too
        resolved = self._resolve(policy, alert)
        if isinstance(resolved, str):
            refused_id = incident_id(REFUSED_APP, alert.fingerprint, alert.starts_at)
            return AlertPlan(alert, AlertKind.refused, policy, None, refused_id, resolved)
        if not app_known(resolved):
            return AlertPlan(alert, AlertKind.unknown_app, policy, resolved)
        return AlertPlan(
            alert, AlertKind.opens, policy, resolved, incident_id(resolved.app, alert.fingerprint, alert.starts_at)
        )

    def plan_all(self, alerts: Sequence[Alert], now: datetime, app_known: AppKnown = _always_known) -> list[AlertPlan]:
        """``plan`` for every alert, in order."""
        return [self.plan(alert, now, app_known) for alert in alerts]

    def _select(self, alert: Alert) -> Policy | None:
        key = tuple(alert.labels.get(name) for name in self._matched_labels)
        return _memoised(self._selected, key, lambda: select_policy(self.policies, alert.labels))

    def _resolve(self, policy: Policy, alert: Alert) -> ResolvedTarget | str:
        """The target for this alert, or why it is refused."""
        index = self._index[id(policy)]
        key = (index, tuple(alert.labels.get(name) for name in self._templated[index]))
        return _memoised(self._resolved, key, lambda: _target_or_refusal(policy, alert))


def _memoised(memo: dict[K, V], key: K, make: Callable[[], V]) -> V:
    """``memo[key]``, made once; the memo is cleared when full. Shared by the webhook (event loop) and the
    drainer (a thread): only single dict operations, so a clear between them never loses a read."""
    try:
        return memo[key]
    except KeyError:
        pass
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    value = memo[key] = make()
    return value


def _target_or_refusal(policy: Policy, alert: Alert) -> ResolvedTarget | str:
    try:
        return resolve_target(policy, alert.labels)
    except AlertRefused as exc:
        return str(exc)


def answer_ids(plans: Sequence[AlertPlan]) -> list[str]:
    """The webhook's answer: each incident id once, in alert order (refused ones included)."""
    return list(dict.fromkeys(p.incident_id for p in plans if p.incident_id is not None))


def _template_labels(policy: Policy) -> list[str]:
    """Every label name a ``${labels.NAME}`` of the policy's target reads."""
    target = policy.spec.target
    texts = [*target.argocd_apps, *target.paths, target.tags]
    return sorted({found.group(1) for text in texts for found in TEMPLATE.finditer(text)})
