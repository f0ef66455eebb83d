"""Reaction times over the last incidents as an inline SVG, drawn on the server (no JavaScript).

One row per incident: a bar from the alert to the pushed rollback commit, and a longer, lighter bar
to the moment Argo CD reported the app Synced and Healthy again.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from rollbackbot.ui.views import Milestones, duration

ROW = 26
LABEL = 190
BAR = 420
PAD = 10
MAX_ROWS = 20


def _scale(values: Sequence[float]) -> float:
    top = max(values, default=1.0)
    return top if top > 0 else 1.0


def reaction_chart(rows: Sequence[Milestones]) -> Markup:
    """The SVG, or an explanatory paragraph when no incident reached a push yet."""
    shown = [r for r in rows if r.pushed is not None][:MAX_ROWS]
    if not shown:
        return Markup('<p class="muted">No rollback has been pushed yet, so there are no reaction times to chart.</p>')
    top = _scale([max(r.pushed or 0.0, r.healthy or 0.0) for r in shown])
    height = PAD * 2 + ROW * len(shown) + 24
    width = LABEL + BAR + 110
    parts = [
        f'<svg class="chart" role="img" aria-labelledby="chart-title chart-desc" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">',
        '<title id="chart-title">Reaction times: alert to pushed commit and to healthy</title>',
        f'<desc id="chart-desc">{len(shown)} recent incidents; longest {escape(duration(top))}</desc>',
    ]
    for index, row in enumerate(shown):
        y = PAD + index * ROW
        parts.append(_row(row, y, top))
    legend_y = PAD + ROW * len(shown) + 14
    parts.append(
        f'<rect x="{LABEL}" y="{legend_y - 9}" width="10" height="10" class="bar-pushed"/>'
        f'<text x="{LABEL + 14}" y="{legend_y}" class="legend">alert → pushed</text>'
        f'<rect x="{LABEL + 130}" y="{legend_y - 9}" width="10" height="10" class="bar-healthy"/>'
        f'<text x="{LABEL + 144}" y="{legend_y}" class="legend">alert → healthy</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def _row(row: Milestones, y: int, top: float) -> str:
    label = escape(f"{row.app} {row.incident_id[-6:]}")
    pushed = (row.pushed or 0.0) / top * BAR
    healthy = (row.healthy or 0.0) / top * BAR if row.healthy is not None else 0.0
    value = duration(row.healthy if row.healthy is not None else row.pushed)
    return (
        f"<g><title>{escape(row.incident_id)}: pushed after {escape(duration(row.pushed))}, "
        f"healthy after {escape(duration(row.healthy))}</title>"
        f'<text x="{LABEL - 6}" y="{y + 15}" text-anchor="end" class="label">{label}</text>'
        f'<rect x="{LABEL}" y="{y + 3}" width="{max(healthy, 0):.1f}" height="16" class="bar-healthy"/>'
        f'<rect x="{LABEL}" y="{y + 3}" width="{max(pushed, 1):.1f}" height="16" class="bar-pushed"/>'
        f'<text x="{LABEL + max(healthy, pushed) + 6:.1f}" y="{y + 15}" class="value">{escape(value)}</text></g>'
    )
