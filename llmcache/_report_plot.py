"""The savings plot of a `Report`: cumulative money saved and spent, and time saved, per day.

matplotlib (the ``notebook`` extra) is imported only here, only when a plot is asked for.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._errors import MissingDependencyError
from ._report import format_money, format_seconds, format_usd

if TYPE_CHECKING:
    from ._report import Report

__all__ = ["plot_report"]

_NOTEBOOK_HINT = "install the notebook extra: pip install 'llmcache[notebook]'"


def _cumulative(values: Iterable[float]) -> list[float]:
    total, out = 0.0, []
    for value in values:
        total += value
        out.append(total)
    return out


def plot_report(report: Report) -> Any:
    """Build the Figure (see `Report.plot`)."""
    try:
        from matplotlib import dates
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError as error:
        raise MissingDependencyError(f"Report.plot() needs matplotlib; {_NOTEBOOK_HINT}") from error
    daily = report.daily
    # Only days the report covers: no made-up $0 point before the first one (a one-day
    # report draws single markers, which is what it knows).
    days = [datetime.date.fromisoformat(row.group["day"]) for row in daily]
    saved = _cumulative(row.saved_usd for row in daily)
    spent = _cumulative(row.spent_usd for row in daily)
    seconds = _cumulative(row.saved_s for row in daily)
    most = seconds[-1] if seconds else 0.0
    scale, unit = (
        (3600.0, "hours") if most >= 7200 else (60.0, "minutes") if most >= 120 else (1, "s")
    )

    figure = Figure(figsize=(8, 5.5), layout="constrained")
    money_axes, time_axes = figure.subplots(2, 1, sharex=True)
    money_axes.plot(days, saved, marker="o", color="#2a9d8f", label="saved by hits")
    money_axes.plot(days, spent, marker=".", color="#e76f51", label="spent on misses")
    money_axes.set_ylim(bottom=0)
    # Ticks are round numbers: shown exactly, even below the table's "<$0.0001".
    money_axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_usd(v, smallest=0)))
    money_axes.set_ylabel("US$, cumulative")
    money_axes.legend(loc="upper left")
    money_axes.grid(alpha=0.3)
    time_axes.plot(days, [s / scale for s in seconds], marker="o", color="#264653")
    time_axes.set_ylim(bottom=0)
    time_axes.set_ylabel(f"time saved, {unit}, cumulative")
    time_axes.grid(alpha=0.3)
    if days:
        # Half a day of margin either side: a one-day report is a point, which matplotlib
        # would otherwise centre in years of empty axis.
        margin = datetime.timedelta(hours=12)
        start = datetime.datetime.combine(days[0], datetime.time()) - margin
        time_axes.set_xlim(start, datetime.datetime.combine(days[-1], datetime.time()) + margin)
    if not days or (days[-1] - days[0]).days <= 14:
        # Whole days only: the automatic locator would label hours on a short range.
        time_axes.xaxis.set_major_locator(dates.DayLocator())  # type: ignore[no-untyped-call]
        time_axes.xaxis.set_major_formatter(dates.DateFormatter("%b %d"))  # type: ignore[no-untyped-call]
    else:
        locator = dates.AutoDateLocator()  # type: ignore[no-untyped-call]
        time_axes.xaxis.set_major_locator(locator)
        time_axes.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    totals = report.totals
    unpriced = totals.unpriced_hits + totals.unpriced_misses
    note = f" ({unpriced:,} unpriced calls not valued)" if unpriced else ""
    figure.suptitle(
        f"llmcache savings, workspace {report.workspace!r}: "
        f"{format_money(totals.saved_usd, totals.unpriced_hits, True)} and "
        f"{format_seconds(totals.saved_s)} saved{note}",
        fontsize=11,
    )
    return figure
