"""How llmcache shows numbers and tables to people: one renderer (rich), fitted to the width.

Every table (`cache.report()`, `cache.stats()`, `cache.health()`, `llmcache.info(...)`, and
the command line's) is built here as a rich `Table`. The command line prints it to the
terminal; `str()` renders it as plain text at the terminal's width (COLUMNS, else 80). When
the columns cannot fit, the ones marked optional are left out, last first, and a note says
so; what still does not fit wraps between words.

rich is imported only when something is rendered, not when llmcache is imported.
"""

from __future__ import annotations

import functools
import html
import io
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

__all__ = [
    "Grid",
    "format_field",
    "format_money",
    "format_seconds",
    "format_usd",
    "format_value",
    "render_html",
    "render_text",
    "terminal_width",
]

# Below a hundredth of a cent, digits are noise to a reader: "<$0.0001".
_SMALLEST_USD = 0.0001
# A column of text (names, errors) wraps rather than push numbers out below this width.
_TEXT_WIDTH = 32
# Spaces between two columns.
_GAP = 2


@functools.cache
def _box() -> Any:
    """No frame: a rule under the header and above the total, blanks between columns."""
    from rich.box import Box

    return Box("    \n    \n ── \n    \n ── \n ── \n    \n    \n")


# -- numbers ---------------------------------------------------------------------------------
def format_usd(value: float, smallest: float = _SMALLEST_USD) -> str:
    """Money for people: "$1,234.56" from a dollar up, two significant digits below
    ("$0.42", "$0.012", "$0.00046"), "<$0.0001" below `smallest`, and "$0" for nothing."""
    if value == 0:
        return "$0"
    sign, amount = ("-" if value < 0 else ""), abs(value)
    if amount >= 1:
        return f"{sign}${amount:,.2f}"
    if amount < smallest:
        return f"{sign}<${smallest:f}".rstrip("0")
    rounded = float(f"{amount:.2g}")  # 0.0995 -> 0.1, so the digits count from the rounded
    if rounded >= 1:
        return f"{sign}${rounded:,.2f}"
    decimals = max(2, 1 - math.floor(math.log10(rounded)))
    digits = f"{rounded:.{decimals}f}"
    if decimals > 2:  # "$0.00004", not "$0.000040"; but "$0.50", as money is written
        digits = digits.rstrip("0")
    return f"{sign}${digits}"


def format_money(value: float, unpriced: int, has_usage: bool) -> str:
    """A money cell: "unknown" when none of its calls had a price, "≥ $x" when only some had
    ("> $0" when that part is below a hundredth of a cent), "-" when its calls reported no
    usage at all (plain functions: nothing to price)."""
    if unpriced and not value:
        return "unknown"
    if not value and not has_usage:
        return "-"
    shown = format_usd(value)
    if unpriced:
        # At least the priced part; "≥ <$0.0001" would say nothing, "> $0" says that much.
        return "> $0" if shown.startswith("<") else f"≥ {shown}"
    return shown


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds else "0 s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_value(value: object) -> str:
    """Any cell whose meaning is not known from its name: counts with separators."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def format_field(name: str, value: object) -> str:
    """A value named by a model field: money and durations by their unit suffix, so one
    amount reads the same wherever it appears (a hit's saving and a miss's)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return format_value(value)
    if name.endswith("_usd"):
        return format_usd(float(value))
    if name.endswith("_ms"):
        return f"{value:,.2f} ms"
    if name.endswith("_s"):
        return format_seconds(float(value))
    return format_value(value)


def header_of(name: str) -> str:
    """A field name as a column header: "last_error_age_s" -> "last error age"."""
    for unit in ("_usd", "_ms", "_s"):
        if name.endswith(unit):
            name = name[: -len(unit)]
            break
    return name.replace("_", " ")


# -- tables ----------------------------------------------------------------------------------
@dataclass
class Grid:
    """A table's content: headers, text rows, which columns are numbers, which may go.

    `optional` lists column indexes that may be left out on a narrow terminal, the first
    one first. `total` is a last row set apart by a rule. `notes` are printed below.
    """

    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    numeric: frozenset[int] = frozenset()
    optional: Sequence[int] = ()
    total: Sequence[str] | None = None
    notes: list[str] = field(default_factory=list)

    def table(self, width: int) -> RenderableType:
        """The renderable fitted to `width` columns: the title, the table and its notes."""
        from rich.console import Group
        from rich.text import Text

        dropped: list[int] = []
        for index in self.optional:
            if self._needed(dropped) <= width:
                break
            dropped.append(index)
        for index in reversed(dropped[:-1]):  # one dropped later may have made room
            if self._needed([i for i in dropped if i != index]) <= width:
                dropped.remove(index)
        table = self._table(dropped)
        notes = list(self.notes)
        if dropped:
            hidden = ", ".join(self.headers[i] for i in sorted(dropped))
            notes.append(f"not shown at this width: {hidden} (widen the terminal, or use JSON)")
        parts: list[RenderableType] = [Text(self.title)] if self.title else []
        parts.append(table)
        parts.extend(Text(note, style="dim") for note in notes)
        return Group(*parts)

    def _needed(self, dropped: Sequence[int]) -> int:
        """The width the table takes without `dropped` when numbers stay whole and text
        wraps at about `_TEXT_WIDTH` columns."""
        from rich.cells import cell_len

        keep = [i for i in range(len(self.headers)) if i not in dropped]
        lines = [*self.rows, *([self.total] if self.total is not None else [])]
        needed = _GAP * (len(keep) - 1)
        return needed + sum(self._width_of(i, lines, cell_len) for i in keep)

    def _width_of(
        self, i: int, lines: Sequence[Sequence[str]], cell_len: Callable[[str], int]
    ) -> int:
        """Column `i`'s width: numbers (and their header) whole, text up to `_TEXT_WIDTH`."""
        widest = max([cell_len(self.headers[i]), *(cell_len(line[i]) for line in lines)])
        return widest if i in self.numeric else min(widest, _TEXT_WIDTH)

    def _table(self, dropped: Sequence[int]) -> Table:
        from rich.cells import cell_len
        from rich.table import Table

        keep = [i for i in range(len(self.headers)) if i not in dropped]
        lines = [*self.rows, *([self.total] if self.total is not None else [])]
        table = Table(
            box=_box(),
            padding=(0, _GAP - 1, 0, 0),  # with the box's blank rule: _GAP spaces between
            pad_edge=False,
            show_edge=False,
            expand=False,
        )
        for i in keep:
            numeric = i in self.numeric
            table.add_column(
                self.headers[i],
                justify="right" if numeric else "left",
                no_wrap=numeric,  # "1,234" and "$0.42" never break; names and text may
                overflow="fold",
                # Names are not squeezed to a few letters to make room for the rest.
                min_width=None if numeric else self._width_of(i, lines, cell_len),
            )
        for n, row in enumerate(self.rows):
            end_section = self.total is not None and n == len(self.rows) - 1
            table.add_row(*(row[i] for i in keep), end_section=end_section)
        if self.total is not None:
            table.add_row(*(self.total[i] for i in keep), style="bold")
        return table


def terminal_width() -> int:
    """The terminal's columns (COLUMNS when set, as in a pipe; else 80)."""
    return shutil.get_terminal_size(fallback=(80, 24)).columns


def render_text(renderable: RenderableType, width: int | None = None) -> str:
    """Plain text (no colour codes) of `renderable` at `width` (default: the terminal's)."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width or terminal_width(), color_system=None, highlight=False
    )
    console.print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def render_html(grid: Grid, *, css_class: str = "llmcache") -> str:
    """The grid as an HTML table (Jupyter): every column, numbers right-aligned."""

    def cells(values: Sequence[str], tag: str) -> str:
        return "".join(
            f"<{tag}{' class=num' if i in grid.numeric else ''}>{html.escape(v)}</{tag}>"
            for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in grid.rows)
    if grid.total is not None:
        body += f"<tr class=total>{cells(grid.total, 'td')}</tr>"
    notes = "".join(f"<p><small>{html.escape(note)}</small></p>" for note in grid.notes)
    return (
        f"<div class='{css_class}'><table><caption>{html.escape(grid.title)}</caption>"
        f"<thead><tr>{cells(grid.headers, 'th')}</tr></thead>"
        f"<tbody>{body}</tbody></table>{notes}</div>"
    )
