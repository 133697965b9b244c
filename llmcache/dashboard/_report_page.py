"""A `Report` in the dashboard's look: headline figures, daily bars, then the table.

What `Report.to_html()`, `Report._repr_html_()` (Jupyter) and the dashboard's daily panel
show. Pure text, like `_look`: no starlette, no matplotlib.
"""

from __future__ import annotations

import datetime
import html
from typing import TYPE_CHECKING

from .._render import format_seconds, format_usd
from .._report import _has_usage
from ._look import CSS, bars_svg, figures_html, headline_figures

if TYPE_CHECKING:
    from .._report import Report

__all__ = ["daily_charts", "report_body"]


def report_body(report: Report, *, charts: bool = True) -> str:
    """The report inside ``<div class=llmcache-report>``, with its style."""
    parts = [
        f"<style>{CSS}</style>",
        f"<h1>llmcache: workspace {html.escape(repr(report.workspace))}</h1>",
        f"<p class=subtitle>{report.first_day} to {report.last_day} (UTC days)</p>",
        figures_html(headline_figures(report.totals)),
    ]
    if charts:
        parts.append(daily_charts(report))
    parts.append(report.table_html())
    return f"<div class=llmcache-report>{''.join(parts)}</div>"


def daily_charts(report: Report) -> str:
    """Money saved (time saved, when no call had usage to price) and hits, per day."""
    days = [_short_day(row.group["day"]) for row in report.daily]
    if _has_usage(report.totals):
        saved_title = "money saved per day"
        saved_points = [(d, row.saved_usd) for d, row in zip(days, report.daily, strict=True)]
        saved = bars_svg(saved_points, title=saved_title, show=format_usd)
    else:  # nothing to price: bars of $0 would say nothing, time saved does
        saved_title = "time saved per day"
        saved_points = [(d, row.saved_s) for d, row in zip(days, report.daily, strict=True)]
        saved = bars_svg(saved_points, title=saved_title, show=format_seconds)
    hits = bars_svg(
        [(d, float(row.hits)) for d, row in zip(days, report.daily, strict=True)],
        title="hits per day",
        show=lambda value: f"{value:,.0f} hits",
        color="#264653",
    )
    return (
        f"<div class=charts><div class=chart><h3>{saved_title}</h3>{saved}</div>"
        f"<div class=chart><h3>hits per day</h3>{hits}</div></div>"
    )


def _short_day(day: str) -> str:
    """ "2026-12-02" -> "Dec 02": the bars' labels."""
    return datetime.date.fromisoformat(day).strftime("%b %d")
