"""Block Kit for incident messages: a pure renderer of ``rollbackbot.core.messages``.

No I/O. Every string that came from outside (alert annotations, labels, reasons, names) is escaped,
so an alert cannot ping ``<!channel>`` or forge a link.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from rollbackbot.core.messages import (
    Decision,
    IncidentMessage,
    MessageKind,
    NoteKind,
    Release,
    ThreadNote,
    title_of,
    utc,
)
from rollbackbot.core.traffic import CANARY_HELD

Block = dict[str, Any]

HEADER_LIMIT = 150  # Slack: header text
TEXT_LIMIT = 3000  # Slack: section text
FIELD_LIMIT = 2000  # Slack: each section field
FALLBACK_LIMIT = 300  # the notification preview; the blocks carry the rest


class ActionId(StrEnum):
    """The buttons' action ids (docs/http-api.md); their value is the incident id."""

    approve_rollback = "approve_rollback"
    reject_rollback = "reject_rollback"
    complete_rollback = "complete_rollback"  # a held canary rollback: all traffic to the safe release now
    hold_rollback = "hold_rollback"  # a held canary rollback: keep the weights as they are
    end_shadow = "end_shadow"  # a shadow after a canary rollback: remove the mirror and the sandbox now


_ICONS = {
    MessageKind.proposal: ":raised_hand:",
    MessageKind.rollback: ":rewind:",
    MessageKind.notify: ":mag:",
    MessageKind.needs_human: ":warning:",
    MessageKind.failure: ":x:",
}
_DECISION_ICONS = {"approved": ":white_check_mark:", "rejected": ":no_entry_sign:", "expired": ":hourglass:"}


def escape(text: str) -> str:
    """Slack mrkdwn escaping: only &, < and > are special."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(text: str) -> str:
    """Inline code; backticks inside would end it early, so they become quotes."""
    return "`" + escape(text).replace("`", "'") + "`"


def clip(text: str, limit: int) -> str:
    """Cut to Slack's length limit, saying so."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def date(at: datetime) -> str:
    """Shown in each reader's own time zone, with UTC as the fallback."""
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time_secs}}|{escape(utc(at))}>"


def mention(slack_id: str) -> str:
    """A user (U…/W…) or user-group (S…) mention."""
    return f"<!subteam^{slack_id}>" if slack_id.startswith("S") else f"<@{slack_id}>"


def link(url: str, label: str) -> str:
    """A link for http(s) URLs; anything else (file://, s3://) is shown as code, since Slack cannot open it."""
    if url.startswith(("http://", "https://")):
        return f"<{escape(url).replace('|', '%7C')}|{escape(label)}>"
    return code(url)


def fallback_text(message: IncidentMessage) -> str:
    """The notification text that goes with the blocks."""
    return clip(escape(f"{title_of(message)}: {message.alert_name} ({message.severity})"), FALLBACK_LIMIT)


def note_text(note: ThreadNote) -> str:
    """A thread reply as mrkdwn."""
    icon = {
        NoteKind.failure: ":x: ",
        NoteKind.verification_failed: ":rotating_light: ",
        NoteKind.outcome: ":white_check_mark: ",
    }
    view = f" · {link(note.page_url, 'View incident')}" if note.page_url else ""
    return clip(icon.get(note.kind, "") + escape(note.text), TEXT_LIMIT - len(view)) + view


def message_blocks(message: IncidentMessage) -> list[Block]:
    """The whole message as Block Kit blocks, buttons only while a decision is open."""
    blocks: list[Block] = [_header(message)]
    if message.decision:
        blocks.append(_section(_decision_text(message.decision)))
    blocks.append(_section(_alert_text(message)))
    blocks.append(_fields(f"*App*\n{code(message.app)}", f"*Policy*\n{code(message.policy)} (mode {message.mode})"))
    if message.from_release and message.to_release:
        blocks.append(_fields(_release_text("From", message.from_release), _release_text("To", message.to_release)))
    if message.pull_request:
        blocks.append(_section(_pull_request_text(message)))
    if message.diff_stat.strip():
        stat = clip(escape(message.diff_stat.strip("\n")), TEXT_LIMIT - 20)
        blocks.append(_section(f"*Changes*\n```{stat}```"))
    if message.reason:
        blocks.append(_section(f"*Reason*\n{escape(message.reason)}"))
    if message.trigger:
        blocks.append(_section(clip(f"*Triggered by*\n{escape(message.trigger.line)}", TEXT_LIMIT)))
    blocks.append(_context(message))
    if message.asks_for_decision:
        if message.approvers:
            blocks.append(_section("Who may decide: " + ", ".join(mention(a) for a in message.approvers)))
        held = message.reason.startswith(CANARY_HELD)
        blocks.append(canary_hold_actions(message.incident_id) if held else _actions(message))
    if message.shadow_until is not None:
        blocks.append(_section(f"*Shadow*\n{escape(message.shadow)}, until {date(message.shadow_until)}"))
        blocks.append(shadow_actions(message.incident_id))
    return blocks


def _header(message: IncidentMessage) -> Block:
    icon = _DECISION_ICONS.get(message.decision.verb, ":x:") if message.decision else _ICONS.get(message.kind, "")
    text = clip(f"{icon} {title_of(message)}".strip(), HEADER_LIMIT)
    return {"type": "header", "text": {"type": "plain_text", "text": text, "emoji": True}}


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, TEXT_LIMIT)}}


def _fields(*texts: str) -> Block:
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": clip(t, FIELD_LIMIT)} for t in texts]}


def _decision_text(decision: Decision) -> str:
    who = mention(decision.user_id) if decision.user_id else escape(decision.by or "")
    if decision.verb == "expired":
        return f"*Expired* {date(decision.at)}: nobody decided in time, so nothing was changed."
    if decision.verb == "failed":
        return f"*Closed* {date(decision.at)}: the incident failed before a decision."
    by = f" by {who}" if who else ""
    return f"*{decision.verb.capitalize()}*{by} {date(decision.at)}"


def _alert_text(message: IncidentMessage) -> str:
    lines = [
        f"*{escape(message.alert_name)}* · severity *{escape(message.severity)}* · since {date(message.started_at)}"
    ]
    if message.summary:
        lines.append(escape(message.summary))
    if message.generator_url:
        lines.append(link(message.generator_url, "Alert source"))
    return "\n".join(lines)


def _release_text(side: str, release: Release) -> str:
    lines = [f"*{side}*", code(release.tag)]
    if release.model_digest:
        lines.append(f"Model-Digest {code(release.model_digest)}")
    if release.data_version:
        lines.append(f"Data-Version {code(release.data_version)}")
    return "\n".join(lines)


def _pull_request_text(message: IncidentMessage) -> str:
    pull = message.pull_request
    assert pull is not None
    then = "approving merges it" if message.asks_for_decision else "it carries the rollback"
    return f"*Pull request* {link(pull.url, f'#{pull.number} on {pull.forge}')}: {then}"


def _context(message: IncidentMessage) -> Block:
    parts = [f"Incident {code(message.incident_id)}"]
    if message.page_url:
        parts.append(link(message.page_url, "View incident"))
    if message.evidence_url:
        parts.append(f"Evidence {link(message.evidence_url, 'bundle')}")
    if message.expires_at and message.asks_for_decision:
        then = "then rolls back anyway" if message.on_timeout == "rollback" else "then nothing changes"
        parts.append(f"Expires {date(message.expires_at)} ({then})")
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(" · ".join(parts), TEXT_LIMIT)}]}


def _actions(message: IncidentMessage) -> Block:
    target = message.to_release.tag if message.to_release else "the previous release"
    does = f"This commits {target} to the deploy branch and syncs Argo CD."
    if message.pull_request:
        does = f"This merges pull request #{message.pull_request.number} ({target}) and syncs Argo CD."
    confirm = {
        "title": {"type": "plain_text", "text": clip(f"Roll back {message.app}?", 100)},
        "text": {"type": "plain_text", "text": clip(does, 300)},
        "confirm": {"type": "plain_text", "text": "Roll back"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }
    approve = _button(ActionId.approve_rollback, "Approve rollback", message.incident_id, "primary") | {
        "confirm": confirm
    }
    reject = _button(ActionId.reject_rollback, "Reject", message.incident_id, "danger")
    return {"type": "actions", "block_id": "decision", "elements": [approve, reject]}


def canary_hold_actions(incident_id: str) -> Block:
    """Buttons for a held canary rollback: all traffic to the safe release now, or keep the weights."""
    complete = _button(ActionId.complete_rollback, "Complete to 100 % now", incident_id, "primary")
    hold = _button(ActionId.hold_rollback, "Hold", incident_id, "danger")
    return {"type": "actions", "block_id": "canary", "elements": [complete, hold]}


def shadow_actions(incident_id: str) -> Block:
    """The button that ends a shadow before its ttl: one commit removes the mirror and the sandbox."""
    confirm = {
        "title": {"type": "plain_text", "text": "End the shadow?"},
        "text": {"type": "plain_text", "text": "This removes the mirror and the sandbox in one commit."},
        "confirm": {"type": "plain_text", "text": "End shadow"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }
    end = _button(ActionId.end_shadow, "End shadow now", incident_id, "danger") | {"confirm": confirm}
    return {"type": "actions", "block_id": "shadow", "elements": [end]}


def _button(action: ActionId, label: str, value: str, style: str) -> Block:
    return {
        "type": "button",
        "action_id": action.value,
        "text": {"type": "plain_text", "text": label},
        "style": style,
        "value": value,
    }
