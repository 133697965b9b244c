"""What `cache.stats()` and `cache.health()` return: pydantic models that print as tables."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel

__all__ = ["CacheStats", "Health", "TierHealth", "TierStats", "render_table"]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with aligned columns."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def render_html(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        f"<div class='llmcache'><strong>{html.escape(title)}</strong>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


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


class CacheStats(BaseModel):
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

    _HEADERS = ("tier", "hits", "misses", "errors", "integrity", "writes", "entries", "bytes")

    def _rows(self) -> list[list[object]]:
        return [
            [t.name, t.hits, t.misses, t.errors, t.integrity_failures, t.writes, t.entries, t.bytes]
            for t in self.tiers
        ]

    def _title(self) -> str:
        state = "" if self.enabled else " (disabled)"
        return (
            f"llmcache workspace {self.workspace!r}{state}: {self.calls} calls, {self.hits} hits, "
            f"{self.misses} misses, hit rate {self.hit_rate:.1%}, {self.coalesced} coalesced"
        )

    def __str__(self) -> str:
        return self._title() + "\n" + render_table(self._HEADERS, self._rows())

    def _repr_html_(self) -> str:
        return render_html(self._HEADERS, self._rows(), self._title())


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


class Health(BaseModel):
    """Every tier's state; `ok` is True when no breaker is open.

    `pending_invalidations`: invalidations applied in this process that the shared tier has
    not taken yet (it was down); they are re-published until it does.
    """

    ok: bool
    tiers: list[TierHealth]
    pending_invalidations: int = 0

    _HEADERS = ("tier", "state", "latency ms", "queued", "errors", "last error")

    def _rows(self) -> list[list[object]]:
        return [
            [t.name, t.state, t.latency_ms, t.queued_writes, t.errors, t.last_error]
            for t in self.tiers
        ]

    def __str__(self) -> str:
        title = "llmcache health: " + ("ok" if self.ok else "DEGRADED")
        if self.pending_invalidations:
            title += f" ({self.pending_invalidations} invalidation(s) not yet published)"
        return title + "\n" + render_table(self._HEADERS, self._rows())

    def _repr_html_(self) -> str:
        return render_html(self._HEADERS, self._rows(), "llmcache health")
