"""What `cache.stats()`, `cache.health()` and `llmcache.info()` return: pydantic models that
print as tables.

Building pydantic models is most of what importing llmcache would cost, so this module is
imported only when one of them is first asked for (`llmcache.CacheStats`, `cache.stats()`...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

from ._render import Grid, format_field, header_of, render_text
from ._render import render_html as grid_html

__all__ = [
    "CacheStats",
    "CallInfo",
    "Health",
    "TierHealth",
    "TierStats",
    "render_fields",
    "render_html",
    "render_table",
]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table (rich's), fitted to the terminal."""
    return render_text(_grid("", headers, rows).table(_width()))


def render_html(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str) -> str:
    return grid_html(_grid(title, headers, rows))


def render_fields(model: BaseModel, title: str) -> Grid:
    """One model's fields as a field/value table, each value formatted by its unit."""
    rows = [[name, format_field(name, getattr(model, name))] for name in type(model).model_fields]
    return Grid(title, ("field", "value"), rows)


def _grid(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> Grid:
    if tuple(headers) == ("field", "value"):
        # A record shown field by field: each value in its field's unit, so an amount reads
        # the same wherever it appears (`llmcache.info`'s saving on a hit and on a miss).
        cells = [[str(name), format_field(str(name), value)] for name, value in rows]
        return Grid(title, ("field", "value"), cells)
    cells = [[format_field(str(h), c) for h, c in zip(headers, row, strict=True)] for row in rows]
    numeric = {
        i
        for i in range(len(headers))
        if all(_is_number(r[i]) or r[i] is None for r in rows)
        and any(_is_number(r[i]) for r in rows)
    }
    return Grid(title, [str(h) for h in headers], cells, numeric=frozenset(numeric))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _width() -> int:
    from ._render import terminal_width

    return terminal_width()


def _per_tier(title: str, tiers: Sequence[BaseModel], essential: int) -> Grid:
    """One row per tier, one column per field (whatever fields the model has, but those no
    tier has a value for).

    The first `essential` fields come first and always show; then the numbers, then text
    such as the last error (which wraps). On a narrow terminal the numbers are left out
    first, the last first, then the text, the last first.
    """
    if not tiers:
        return Grid(title, ["tier"], [])
    # A field no tier has a value for (no error yet) is left out: it would only say "-".
    fields = [
        name
        for n, name in enumerate(type(tiers[0]).model_fields)
        if n < essential or any(getattr(t, name) is not None for t in tiers)
    ]

    def numeric(name: str) -> bool:
        values = [getattr(t, name) for t in tiers]
        return any(_is_number(v) for v in values) and all(
            _is_number(v) or v is None for v in values
        )

    rest = fields[essential:]
    names = (
        fields[:essential] + [n for n in rest if numeric(n)] + [n for n in rest if not numeric(n)]
    )
    numbers = [i for i, n in enumerate(names) if numeric(n)]
    texts = [i for i in range(essential, len(names)) if i not in numbers]
    return Grid(
        title,
        headers=["tier" if n == "name" else header_of(n) for n in names],
        rows=[[format_field(n, getattr(t, n)) for n in names] for t in tiers],
        numeric=frozenset(numbers),
        # Numbers go first, the last first; then text, so the first one (the last error) stays.
        optional=[i for i in reversed(numbers) if i >= essential] + texts[::-1],
    )


class _Table(BaseModel):
    """A model shown as one table: as text (`str`), in rich, and in Jupyter (HTML)."""

    def _grid(self) -> Grid:
        raise NotImplementedError

    def __str__(self) -> str:
        return render_text(self._grid().table(_width()))

    def __rich_console__(self, console: Any, options: Any) -> Any:
        yield self._grid().table(options.max_width)

    def _repr_html_(self) -> str:
        return grid_html(self._grid())


class TierStats(BaseModel):
    """Counters of one tier since the cache was created (this process)."""

    name: str
    hits: int
    misses: int
    errors: int
    integrity_failures: int
    writes: int
    entries: int | None
    bytes: int | None


class CacheStats(_Table):
    """Counters of one cache since it was created (this process)."""

    workspace: str
    enabled: bool
    calls: int
    hits: int
    misses: int
    hit_rate: float
    coalesced: int  # concurrent identical calls that waited for one real call
    bypassed: int
    unstorable: int  # results returned to the caller but not cacheable
    tiers: list[TierStats]

    def _title(self) -> str:
        state = "" if self.enabled else " (disabled)"
        return (
            f"llmcache workspace {self.workspace!r}{state}: {self.calls:,} calls, "
            f"{self.hits:,} hits, {self.misses:,} misses, hit rate {self.hit_rate:.1%}, "
            f"{self.coalesced:,} coalesced"
        )

    def _grid(self) -> Grid:
        return _per_tier(self._title(), self.tiers, essential=3)


class TierHealth(BaseModel):
    """The state of one tier: its breaker, last error, latency and queued writes."""

    name: str
    state: Literal["closed", "open", "half-open"]
    last_error: str | None
    last_error_age_s: float | None
    latency_ms: float | None
    queued_writes: int
    dropped_writes: int
    errors: int
    # Reads and writes have a breaker each: a tier that cannot store (full, OOM) still serves.
    read_state: Literal["closed", "open", "half-open"] = "closed"
    write_state: Literal["closed", "open", "half-open"] = "closed"
    read_error: str | None = None
    read_error_age_s: float | None = None
    write_error: str | None = None
    write_error_age_s: float | None = None
    queued_bytes: int = 0  # held by queued writes, bounded by max_queue_bytes
    max_queue_bytes: int = 0


class Health(_Table):
    """Every tier's state; `ok` is True when no breaker is open.

    `pending_invalidations`: invalidations applied in this process that the shared tier has
    not taken yet (it was down); they are re-published until it does. `notes`: what else
    works degraded, e.g. rate limits enforced per process while the shared tier is down.
    """

    ok: bool
    tiers: list[TierHealth]
    pending_invalidations: int = 0
    # What else runs degraded, in words: e.g. rate limits enforced per process only.
    notes: list[str] = []

    def _grid(self) -> Grid:
        title = "llmcache health: " + ("ok" if self.ok else "DEGRADED")
        if self.pending_invalidations:
            title += f" ({self.pending_invalidations} invalidation(s) not yet published)"
        for note in self.notes:
            title += f"; {note}"
        return _per_tier(title, self.tiers, essential=2)


class CallInfo(BaseModel):
    """How one cached call was served."""

    hit: bool
    tier: str | None  # the tier that served a hit; None for a miss
    key: str | None  # the signed key (None when the result was not stored)
    namespace: str
    age_s: float | None  # how old the entry was when it was served
    model: str | None
    cost_usd: float | None  # what the original (missed) call cost; None if unknown
    saved_cost_usd: float | None  # what this hit saved; 0 for a miss, None if unknown
    saved_time_s: float | None  # the original call's latency, saved by this hit

    def _pairs(self) -> list[tuple[str, object]]:
        return [(name, getattr(self, name)) for name in type(self).model_fields]

    def __str__(self) -> str:
        return render_table(("field", "value"), self._pairs())

    def _repr_html_(self) -> str:
        return render_html(("field", "value"), self._pairs(), "llmcache call info")
