"""The dashboard's panels as HTML fragments, rendered by the server from a `Snapshot`.

The page is these fragments in their sections; the browser polls for new ones and swaps
them in (`static/dashboard.js`). Names a user controls are escaped here (`html.escape`) and
in `render_html`, so a namespace called ``<script>`` shows as text.
"""

from __future__ import annotations

import datetime
import html
from dataclasses import replace

from .._render import Grid, format_usd, render_html
from .._report import Report, ReportRow
from ._hourly import HourBar
from ._look import bars_svg, figures_html, headline_figures
from ._providers import provider_of
from ._snapshot import Snapshot

__all__ = ["PANELS", "render_panels"]

PANELS = ("headline", "daily", "hourly", "namespaces", "models", "budgets", "tiers", "updated")


def render_panels(snapshot: Snapshot) -> dict[str, str]:
    """Every panel's HTML, by name (see `PANELS`)."""
    report = snapshot.report
    taken = datetime.datetime.fromtimestamp(snapshot.taken_at, datetime.UTC)
    return {
        "headline": figures_html(headline_figures(report.totals)),
        "daily": report.daily_charts(),
        "hourly": _hourly(snapshot.hours),
        "namespaces": _table(_breakdown(report, "namespace")),
        "models": _table(_with_providers(_breakdown(report, "model"))),
        "budgets": _budgets(report),
        "tiers": _tiers(snapshot),
        "updated": html.escape(
            f"{report.first_day} to {report.last_day} (UTC) · updated {taken:%H:%M:%S} UTC"
        ),
    }


def _breakdown(report: Report, by: str) -> Grid:
    """The report's table grouped by one name, without its title (the section has one)."""
    rows: list[ReportRow] = report.regroup((by,))
    grouped = Report(
        report.workspace,
        (by,),
        report.first_day,
        report.last_day,
        rows,
        report.totals,
        report.daily,
    )
    return replace(grouped.grid(), title="")


def _with_providers(grid: Grid) -> Grid:
    """A "provider" column after the model's (inferred from the model's name)."""
    rows = [[row[0], provider_of(row[0]), *row[1:]] for row in grid.rows]
    total = None if grid.total is None else [grid.total[0], "", *grid.total[1:]]
    return replace(
        grid,
        headers=[grid.headers[0], "provider", *grid.headers[1:]],
        rows=rows,
        total=total,
        numeric=frozenset(i + 1 for i in grid.numeric),
        optional=[],
    )


def _table(grid: Grid) -> str:
    return render_html(grid, css_class="scroll")


def _hourly(hours: list[HourBar]) -> str:
    tips = [bar.when for bar in hours]
    hits = bars_svg(
        [(bar.hour, float(bar.hits)) for bar in hours],
        title="hits per hour",
        show=lambda value: f"{value:,.0f} hits",
        color="#264653",
        tips=tips,
    )
    saved = bars_svg(
        [(bar.hour, bar.saved_usd) for bar in hours],
        title="money saved per hour",
        show=format_usd,
        tips=tips,
    )
    return (
        f"<div class=charts><div class=chart><h3>money saved per hour</h3>{saved}</div>"
        f"<div class=chart><h3>hits per hour</h3>{hits}</div></div>"
    )


def _budgets(report: Report) -> str:
    """Each spend budget (`Cache.budgets()`), its use now and what is left."""
    if not report.budgets:
        return (
            "<p><small>No spend budget: set one with Cache(budget_usd=...), and every "
            "process's dashboard of the workspace shows it.</small></p>"
        )
    rows = [
        [
            "workspace" if budget["scope"] == "*" else str(budget["scope"]),
            str(budget["name"]).replace(":", " ", 1),
            format_usd(budget["limit_usd"]),
            format_usd(budget["spent_usd"]),
            format_usd(budget["left_usd"]),
            f"{budget['used']:.0%}",
        ]
        for budget in report.budgets
    ]
    grid = Grid(
        "",
        headers=("budget of", "period (UTC)", "limit", "spent", "left", "used"),
        rows=rows,
        numeric=frozenset(range(2, 6)),
    )
    return _table(grid)


def _tiers(snapshot: Snapshot) -> str:
    integrity = {tier.name: tier.integrity_failures for tier in snapshot.stats.tiers}
    rows = [
        [
            tier.name,
            tier.read_state,
            tier.write_state,
            "-" if tier.latency_ms is None else f"{tier.latency_ms:,.2f}",
            f"{tier.errors:,}",
            f"{tier.queued_writes:,}",
            f"{tier.dropped_writes:,}",
            f"{integrity.get(tier.name, 0):,}",
            tier.last_error or "-",
        ]
        for tier in snapshot.health.tiers
    ]
    grid = Grid(
        "",
        headers=(
            "tier",
            "reads",
            "writes",
            "latency ms",
            "errors",
            "queued writes",
            "dropped writes",
            "integrity failures",
            "last error",
        ),
        rows=rows,
        numeric=frozenset(range(3, 8)),
        notes=[
            "breakers, latency and errors as this dashboard's process sees the tiers; "
            f"ledger fields skipped as not this workspace's: "
            f"{snapshot.ledger_integrity_failures:,}",
        ],
    )
    return _table(grid)
