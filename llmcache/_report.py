"""`cache.report()`: the ledger as a table, a DataFrame, HTML, and a plot of savings over time.

The numbers come from the ledger's counters in the most shared tier (so they cover every
process that used the workspace), plus this process's counts not yet written there. Days are
UTC days, like the ledger's. Money spent on misses and money saved by hits are kept apart;
calls whose price is unknown are counted as "unpriced" and never valued at $0: a money cell
reads "unknown" when none of its calls was priced, and "≥ $x" when only some were.

pandas and matplotlib (the ``notebook`` extra) are imported only by `to_pandas` and `plot`.
The HTML (`to_html`, a notebook's rich display) has the dashboard's look: headline figures,
daily bars as inline SVG, then the table (`llmcache.dashboard._look`, pure Python).
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError, MissingDependencyError
from ._ledger import day_of, epoch_day_of
from ._render import Grid, format_money, format_seconds, format_usd, render_text, terminal_width

if TYPE_CHECKING:
    from ._cache import Cache

__all__ = [
    "GROUPS",
    "Report",
    "ReportRow",
    "build_report",
    "format_money",
    "format_seconds",
    "format_usd",
]

GROUPS = ("namespace", "model", "day")
_COUNTS = (
    "calls",
    "hits",
    "misses",
    "unpriced_misses",
    "unpriced_hits",
    "input_tokens",
    "output_tokens",
    "saved_input_tokens",
    "saved_output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "saved_cache_read_tokens",
    "saved_cache_write_tokens",
)
_AMOUNTS = ("spent_usd", "saved_usd", "spent_s", "saved_s")
_NOTEBOOK_HINT = "install the notebook extra: pip install 'llmcache[notebook]'"


@dataclasses.dataclass(frozen=True)
class ReportRow:
    """The counts of one group (e.g. one namespace and model) over the report's days.

    `spent_usd` and `saved_usd` sum the calls whose price is known; `unpriced_misses` and
    `unpriced_hits` count the others, whose cost is unknown (not zero). The token counts are
    those of the real calls (misses) and those the hits avoided (``saved_*``); the
    ``cache_*`` ones are the parts of the input tokens the provider read from or wrote to its
    own prompt cache, which it bills at other prices (and which a hit avoids too).
    """

    group: dict[str, str]
    # One counter per ledger metric, each starting at zero (the same shape line after line).
    calls: int = 0
    hits: int = 0
    misses: int = 0
    spent_usd: float = 0.0
    saved_usd: float = 0.0
    spent_s: float = 0.0
    saved_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    saved_input_tokens: int = 0
    saved_output_tokens: int = 0
    unpriced_misses: int = 0
    unpriced_hits: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    saved_cache_read_tokens: int = 0
    saved_cache_write_tokens: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.calls if self.calls else 0.0

    @property
    def spent(self) -> float | None:
        """Money spent on misses, or None when none of the priced-able calls had a price."""
        return None if self.unpriced_misses and not self.spent_usd else self.spent_usd

    @property
    def saved(self) -> float | None:
        """Money saved by hits, or None when none of them had a known price."""
        return None if self.unpriced_hits and not self.saved_usd else self.saved_usd

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.group)
        data.update(calls=self.calls, hits=self.hits, misses=self.misses)
        data["hit_rate"] = self.hit_rate
        data.update(spent_usd=self.spent, saved_usd=self.saved)
        data.update(unpriced_misses=self.unpriced_misses, unpriced_hits=self.unpriced_hits)
        data.update(spent_s=self.spent_s, saved_s=self.saved_s)
        data.update(input_tokens=self.input_tokens, output_tokens=self.output_tokens)
        data.update(
            saved_input_tokens=self.saved_input_tokens,
            saved_output_tokens=self.saved_output_tokens,
        )
        data.update(
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            saved_cache_read_tokens=self.saved_cache_read_tokens,
            saved_cache_write_tokens=self.saved_cache_write_tokens,
        )
        return data


def _summed(group: dict[str, str], rows: Iterable[Mapping[str, Any]]) -> ReportRow:
    totals = dict.fromkeys(_COUNTS + _AMOUNTS, 0.0)
    for row in rows:
        for name in totals:
            totals[name] += float(row.get(name, 0.0))
    counts: dict[str, Any] = {name: round(totals[name]) for name in _COUNTS}
    amounts: dict[str, Any] = {name: totals[name] for name in _AMOUNTS}
    return ReportRow(group, **counts, **amounts)


# -- formatting ------------------------------------------------------------------------------------
# Short headers (numbers never wrap, so neither do their headers); the title says that money
# is spent on misses and saved by hits.
_TOKENS = "tokens saved in/out"
_CACHE_TOKENS = "of which cache r/w"
_UNPRICED = "unpriced"
_HEADERS = (
    "calls",
    "hits",
    "hit rate",
    "spent",
    "saved",
    "time saved",
    _TOKENS,
    _CACHE_TOKENS,  # shown only when some call used the provider's prompt cache
    _UNPRICED,
)
# Left out on a narrow terminal, in this order: the prompt-cache part of the tokens, the
# token counts, the unpriced count when it is zero everywhere, the hit count (the rate
# stays), the time saved.
_OPTIONAL = (_CACHE_TOKENS, _TOKENS, _UNPRICED, "hits", "time saved")
_UNPRICED_NOTE = "unknown / ≥: some calls used models without a known price (set_price)"
_NO_USAGE_NOTE = "-: the calls reported no token usage (e.g. plain functions): nothing to price"
_CACHE_NOTE = (
    "cache r/w: input tokens the provider read from / wrote to its prompt cache, "
    "priced at its cache rates"
)


def _has_usage(row: ReportRow) -> bool:
    return bool(
        row.input_tokens + row.output_tokens + row.saved_input_tokens + row.saved_output_tokens
    )


def _used_prompt_cache(row: ReportRow) -> bool:
    return bool(
        row.cache_read_tokens
        + row.cache_write_tokens
        + row.saved_cache_read_tokens
        + row.saved_cache_write_tokens
    )


def _cells(row: ReportRow) -> dict[str, str]:
    """Every column's text for `row`, by header."""
    has_usage = _has_usage(row)
    unpriced = row.unpriced_misses + row.unpriced_hits
    return {
        "calls": f"{row.calls:,}",
        "hits": f"{row.hits:,}",
        "hit rate": f"{row.hit_rate:.1%}",
        "spent": format_money(row.spent_usd, row.unpriced_misses, has_usage),
        "saved": format_money(row.saved_usd, row.unpriced_hits, has_usage),
        "time saved": format_seconds(row.saved_s),
        _TOKENS: f"{row.saved_input_tokens:,} / {row.saved_output_tokens:,}",
        _CACHE_TOKENS: f"{row.saved_cache_read_tokens:,} / {row.saved_cache_write_tokens:,}",
        # Like the money cells: "-" where there was nothing to price, not "0 unpriced".
        _UNPRICED: f"{unpriced:,}" if has_usage or unpriced else "-",
    }


class Report:
    """Calls, hits, money spent and saved, time saved: per group and in total.

    Attributes:
        rows: one `ReportRow` per group of `by` (e.g. per namespace and model).
        totals: all rows together.
        daily: one row per day from `first_day` to `last_day`, for the savings-over-time plot.
        budgets: the workspace's spend budgets and their use now (`Cache.budgets()`).
    """

    def __init__(
        self,
        workspace: str,
        by: tuple[str, ...],
        first_day: datetime.date,
        last_day: datetime.date,
        rows: list[ReportRow],
        totals: ReportRow,
        daily: list[ReportRow],
        raw: Sequence[Mapping[str, Any]] = (),
        budgets: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        # Constructor arguments kept as attributes (as `Breaker.__init__` keeps its own).
        self.workspace = workspace
        self.by = by
        self.first_day = first_day
        self.last_day = last_day
        self.rows = rows
        self.totals = totals
        self.daily = daily
        # The ledger's rows (one per day, namespace and model), so that `regroup` can show
        # other breakdowns of the very same counts without reading the ledger again.
        self.raw = raw
        self.budgets = list(budgets)

    def regroup(self, by: Sequence[str]) -> list[ReportRow]:
        """The same counts grouped another way (e.g. ``("model",)``), one row per group."""
        groups = tuple(by)
        unknown = [name for name in groups if name not in GROUPS]
        if unknown:
            raise ConfigError(f"regroup() takes names among {GROUPS}, got {groups!r}")
        grouped: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
        for row in self.raw:
            grouped.setdefault(tuple(str(row[name]) for name in groups), []).append(row)
        return [
            _summed(dict(zip(groups, key, strict=True)), grouped[key]) for key in sorted(grouped)
        ]

    # -- text and HTML ------------------------------------------------------------------------
    def title(self) -> str:
        total = self.totals
        head = (
            f"llmcache report, workspace {self.workspace!r}, {self.first_day} to {self.last_day} "
            f"(UTC): {total.calls:,} calls, {total.hit_rate:.1%} hits"
        )
        time_saved = format_seconds(total.saved_s)
        if not (_has_usage(total) or total.unpriced_misses or total.unpriced_hits):
            return f"{head}; saved {time_saved}"  # nothing was priced: no "$0" to mislead
        spent = format_money(total.spent_usd, total.unpriced_misses, True)
        saved = format_money(total.saved_usd, total.unpriced_hits, True)
        return f"{head}; spent {spent} on misses, saved {saved} and {time_saved}"

    def grid(self) -> Grid:
        """The table: one row per group, then the total."""
        first_numeric = len(self.by)
        show_cache = _used_prompt_cache(self.totals)
        headers = [name for name in _HEADERS if name != _CACHE_TOKENS or show_cache]
        cells = [_cells(row) for row in self.rows]
        body = [
            [row.group.get(name, "") for name in self.by] + [texts[h] for h in headers]
            for row, texts in zip(self.rows, cells, strict=True)
        ]
        labels = ["total"] + [""] * (len(self.by) - 1) if self.by else []
        totals = _cells(self.totals)
        notes = []
        unpriced = self.totals.unpriced_misses + self.totals.unpriced_hits
        if unpriced:
            notes.append(_UNPRICED_NOTE)
        if any(
            not _has_usage(row) and "-" in (texts["spent"], texts["saved"])
            for row, texts in zip(self.rows, cells, strict=True)
        ):
            notes.append(_NO_USAGE_NOTE)
        if show_cache:
            notes.append(_CACHE_NOTE)
        notes.extend(budget_line(budget) for budget in self.budgets)
        optional = [
            first_numeric + headers.index(name)
            for name in _OPTIONAL
            if name in headers and (name != _UNPRICED or not unpriced)
        ]
        return Grid(
            self.title(),
            headers=[*self.by, *headers],
            rows=body,
            numeric=frozenset(range(first_numeric, first_numeric + len(headers))),
            optional=optional,
            total=labels + [totals[h] for h in headers],
            notes=notes,
        )

    def __str__(self) -> str:
        """The table as plain text, fitted to the terminal's width (COLUMNS, else 80)."""
        return render_text(self.grid().table(terminal_width()))

    def __repr__(self) -> str:
        return str(self)

    def __rich_console__(self, console: Any, options: Any) -> Any:
        yield self.grid().table(options.max_width)

    def html_body(self, *, charts: bool = True) -> str:
        """The report as the dashboard shows it: headline figures on top, the daily bars,
        then the table (a fragment inside ``<div class=llmcache-report>``)."""
        from .dashboard._report_page import report_body

        return report_body(self, charts=charts)

    def daily_charts(self) -> str:
        """Money (or, when nothing was priced, time) saved and hits, one SVG bar per day."""
        from .dashboard._report_page import daily_charts

        return daily_charts(self)

    def table_html(self) -> str:
        """The table alone, as HTML."""
        from ._render import render_html

        return render_html(self.grid(), css_class="llmcache-table scroll")

    def _repr_html_(self) -> str:
        return self.html_body()

    # -- data ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "first_day": self.first_day.isoformat(),
            "last_day": self.last_day.isoformat(),
            "by": list(self.by),
            "rows": [row.to_dict() for row in self.rows],
            "totals": self.totals.to_dict(),
            "daily": [row.to_dict() for row in self.daily],
            "budgets": [dict(budget) for budget in self.budgets],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_pandas(self) -> Any:
        """The rows as a DataFrame; unknown money is NaN (see the unpriced_* columns)."""
        try:
            import pandas
        except ImportError as error:
            raise MissingDependencyError(
                f"Report.to_pandas() needs pandas; {_NOTEBOOK_HINT}"
            ) from error
        return pandas.DataFrame([row.to_dict() for row in self.rows]).astype(
            {"spent_usd": "float64", "saved_usd": "float64"}, errors="ignore"
        )

    # -- plot ---------------------------------------------------------------------------------
    def plot(self) -> Any:
        """A matplotlib Figure: cumulative money and time saved per day (and money spent).

        The figure is not registered with pyplot (no global state, nothing left open), so in
        Jupyter it shows when it is the cell's value: ``report.plot()``.
        """
        from ._report_plot import plot_report

        return plot_report(self)

    def to_html(self, path: str | Path, *, plot: bool = True) -> Path:
        """Write a standalone HTML report: the headline figures, the daily bars (SVG, so no
        matplotlib and nothing loaded from elsewhere) and the table. `plot=False` leaves the
        bars out."""
        document = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(self.title())}</title>"
            "<style>body { margin: 1.5em; }</style></head>"
            f"<body>{self.html_body(charts=plot)}</body></html>"
        )
        target = Path(path)
        target.write_text(document, encoding="utf-8")
        return target


# -- building ----------------------------------------------------------------------------------
def first_day_of(
    since: datetime.date | datetime.datetime | str | int | None, today: int
) -> int | None:
    """The first epoch day a report covers (None: every day with counts)."""
    if since is None:
        return None
    if isinstance(since, bool):
        raise ConfigError("since= takes a date, a datetime, 'YYYY-MM-DD' or a number of days")
    if isinstance(since, int):
        if since < 0:
            raise ConfigError("since=N means the last N days (today included): use N >= 1")
        return today - max(since, 1) + 1
    if isinstance(since, datetime.datetime):
        if since.tzinfo is not None:
            since = since.astimezone(datetime.UTC)
        return epoch_day_of(since.date())
    if isinstance(since, datetime.date):
        return epoch_day_of(since)
    if isinstance(since, str):
        try:
            return epoch_day_of(datetime.date.fromisoformat(since.strip()))
        except ValueError as error:
            raise ConfigError(f"since={since!r} is not a date like '2025-01-31'") from error
    raise ConfigError("since= takes a date, a datetime, 'YYYY-MM-DD' or a number of days")


def build_report(
    cache: Cache,
    since: datetime.date | datetime.datetime | str | int | None = None,
    by: Sequence[str] = ("namespace", "model"),
) -> Report:
    """The report of `cache`'s workspace since `since` (default: every day with counts).

    Args:
        since: first day: a date, a datetime, "YYYY-MM-DD", or N for the last N days.
        by: group rows by any of "namespace", "model" and "day" (() for one total row).
    """
    groups = (by,) if isinstance(by, str) else tuple(by)
    unknown = [name for name in groups if name not in GROUPS]
    if unknown or len(set(groups)) != len(groups):
        raise ConfigError(f"by= takes distinct names among {GROUPS}, got {tuple(by)!r}")
    cache.flush()  # this process's pending counts go in with everyone else's
    today = int(time.time() // 86400)
    first = first_day_of(since, today)
    days = [
        day
        for day in cache.ledger.recorded_days(cache.read_counters)
        if (first is None or day >= first) and day <= today
    ]
    raw = cache.ledger.rows(cache.read_counters, days)
    grouped: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    daily: dict[str, list[Mapping[str, Any]]] = {}
    for row in raw:
        grouped.setdefault(tuple(str(row[name]) for name in groups), []).append(row)
        daily.setdefault(str(row["day"]), []).append(row)
    # From the first day with counts (or `since`, if later): never thousands of empty days.
    start = min(days) if days else today
    if first is not None:
        start = min(max(first, start), today)
    return Report(
        workspace=cache.workspace,
        by=groups,
        first_day=datetime.date.fromisoformat(day_of(start)),
        last_day=datetime.date.fromisoformat(day_of(today)),
        rows=[
            _summed(dict(zip(groups, key, strict=True)), grouped[key]) for key in sorted(grouped)
        ],
        totals=_summed({}, raw),
        daily=[
            _summed({"day": day_of(day)}, daily.get(day_of(day), []))
            for day in range(start, today + 1)
        ],
        raw=raw,
        budgets=cache.budgets(),
    )


def budget_line(budget: Mapping[str, Any]) -> str:
    """One budget's use, for the report's notes: whose, which period, spent of the limit."""
    scope = "workspace" if budget["scope"] == "*" else f"namespace {budget['scope']}"
    period = str(budget["name"]).replace(":", " ", 1)
    return (
        f"budget of {scope}, {period} (UTC): {format_usd(budget['spent_usd'], 1e-6)} of "
        f"{format_usd(budget['limit_usd'], 1e-6)} spent ({budget['used']:.0%})"
    )
