"""The look shared by the dashboard and the static report: headline figures, SVG bars, CSS.

Pure Python and text only (no starlette, no matplotlib), so `Report.to_html()` and a
notebook's rich display use it without the ``dashboard`` extra. Every name a user controls
(workspace, namespace, model, tier errors) goes through `html.escape` here or in
`llmcache._render.render_html`, never into markup as it is.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._render import format_money, format_seconds

if TYPE_CHECKING:
    from .._report import ReportRow

__all__ = ["CSS", "Figure", "bars_svg", "figures_html", "headline_figures"]

# Scoped under .llmcache-report, so a notebook's own styles and ours do not meet.
CSS = """
.llmcache-report { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1d2733; max-width: 1240px; }
.llmcache-report h1 { font-size: 1.4em; margin: 0 0 .2em; }
.llmcache-report h2 { font-size: 1.05em; margin: 1.2em 0 .4em; color: #34495e; }
.llmcache-report .subtitle { color: #5b6b7b; margin: 0 0 1em; font-size: .9em; }
.llmcache-report .figures { display: grid; gap: 10px;
  grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); margin: .6em 0 1em; }
.llmcache-report .figure { background: #f3f7f6; border-radius: 8px; padding: 10px 14px; }
.llmcache-report .figure .label { font-size: .8em; color: #5b6b7b; text-transform: uppercase;
  letter-spacing: .04em; }
.llmcache-report .figure .value { font-size: 1.9em; font-weight: 650; color: #1b6f65;
  white-space: nowrap; }
.llmcache-report .figure.spent .value { color: #b4532f; }
.llmcache-report .figure .detail { font-size: .8em; color: #5b6b7b; }
.llmcache-report .charts { display: grid; gap: 12px;
  grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); }
.llmcache-report .chart h3 { font-size: .9em; margin: 0 0 4px; color: #34495e; }
.llmcache-report svg.bars { width: 100%; height: auto; display: block; }
.llmcache-report .scroll { overflow-x: auto; }
.llmcache-report table { border-collapse: collapse; font-size: 13px; }
.llmcache-report th, .llmcache-report td { padding: 3px 10px; border-bottom: 1px solid #ddd;
  white-space: nowrap; }
.llmcache-report th { text-align: left; background: #f4f4f4; }
.llmcache-report td.num, .llmcache-report th.num { text-align: right; }
.llmcache-report tr.total td { font-weight: bold; border-top: 2px solid #999; }
.llmcache-report caption { text-align: left; padding: 4px 0; color: #333; }
.llmcache-report small { color: #5b6b7b; }
"""


@dataclass(frozen=True)
class Figure:
    """One headline figure: a stable key (HTML id and tests), its label, value and detail."""

    key: str
    label: str
    value: str
    detail: str


def headline_figures(totals: ReportRow) -> list[Figure]:
    """Money saved, hit rate, calls avoided, time saved, spend on misses: as the report's
    table writes them ("unknown" or "≥ $x" when some calls had no price, "-" when the calls
    reported no usage at all)."""
    has_usage = bool(
        totals.input_tokens
        + totals.output_tokens
        + totals.saved_input_tokens
        + totals.saved_output_tokens
    )
    return [
        Figure(
            "saved",
            "money saved",
            format_money(totals.saved_usd, totals.unpriced_hits, has_usage),
            f"by {totals.hits:,} hits",
        ),
        Figure(
            "hit-rate",
            "hit rate",
            f"{totals.hit_rate:.1%}",
            f"{totals.hits:,} of {totals.calls:,} calls",
        ),
        Figure("avoided", "calls avoided", f"{totals.hits:,}", "real calls not made"),
        Figure("time", "time saved", format_seconds(totals.saved_s), "waiting avoided"),
        Figure(
            "spent",
            "spent on misses",
            format_money(totals.spent_usd, totals.unpriced_misses, has_usage),
            f"on {totals.misses:,} real calls",
        ),
    ]


def figures_html(figures: Sequence[Figure]) -> str:
    """The headline figures as cards (each value has id ``figure-<key>``)."""
    cards = "".join(
        f"<div class='figure {f.key}'><div class=label>{html.escape(f.label)}</div>"
        f"<div class=value id='figure-{f.key}'>{html.escape(f.value)}</div>"
        f"<div class=detail>{html.escape(f.detail)}</div></div>"
        for f in figures
    )
    return f"<div class=figures>{cards}</div>"


# The chart's own coordinates; the SVG scales to its box (viewBox), text included.
_WIDTH, _HEIGHT, _LEFT, _BOTTOM, _TOP = 480, 170, 6, 22, 20
_WIDEST_BAR = 48  # a day or two of data: bars, not slabs
_MOST_LABELS = 7


def bars_svg(
    points: Sequence[tuple[str, float]],
    *,
    title: str,
    show: Callable[[float], str],
    color: str = "#2a9d8f",
    tips: Sequence[str] | None = None,
) -> str:
    """Vertical bars, one per point (label, value), as inline SVG.

    Only the points given are drawn: a report's days start at its first day with counts, so
    there is no bar (and no point) before the data. Each bar has a tooltip (``<title>``):
    its label, or its entry of `tips`, then its value.
    """
    label = html.escape(title)
    if not points:
        return (
            f"<svg class=bars role=img aria-label='{label}' viewBox='0 0 {_WIDTH} 40'>"
            f"<text x='{_WIDTH / 2}' y='24' text-anchor='middle' fill='#5b6b7b' "
            f"font-size='13'>no data yet</text></svg>"
        )
    most = max(value for _, value in points)
    plot_height = _HEIGHT - _BOTTOM - _TOP
    slot = (_WIDTH - 2 * _LEFT) / len(points)
    width = max(1.0, min(slot * 0.8, _WIDEST_BAR))
    every = max(1, -(-len(points) // _MOST_LABELS))  # ceil: at most _MOST_LABELS x labels
    parts = [
        f"<svg class=bars role=img aria-label='{label}' viewBox='0 0 {_WIDTH} {_HEIGHT}' "
        f"font-family='sans-serif'>",
        f"<text x='{_LEFT}' y='13' font-size='12' fill='#5b6b7b'>"
        f"{html.escape('max ' + show(most))}</text>",
        f"<line x1='{_LEFT}' x2='{_WIDTH - _LEFT}' y1='{_HEIGHT - _BOTTOM}' "
        f"y2='{_HEIGHT - _BOTTOM}' stroke='#999' stroke-width='1'/>",
    ]
    for n, (name, value) in enumerate(points):
        height = plot_height * value / most if most > 0 else 0.0
        x = _LEFT + n * slot + (slot - width) / 2
        y = _HEIGHT - _BOTTOM - height
        tip = html.escape(f"{name if tips is None else tips[n]}: {show(value)}")
        parts.append(
            f"<rect class=bar x='{x:.1f}' y='{y:.1f}' width='{width:.1f}' "
            f"height='{height:.1f}' fill='{color}'><title>{tip}</title></rect>"
        )
        if n % every == 0 or n == len(points) - 1:
            parts.append(
                f"<text x='{x + width / 2:.1f}' y='{_HEIGHT - 6}' font-size='12' "
                f"text-anchor='middle' fill='#5b6b7b'>{html.escape(name)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)
