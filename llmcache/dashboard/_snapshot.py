"""What the dashboard shows, read at one moment: the ledger's report, health, stats, hours.

It reads what `cache.report()`, `cache.report_hours()` and `cache.health()` read (the
cross-process ledger in the most shared tier), at most once per `min_interval_s` however
many browsers poll. The hours are one counter record each: the current and the previous
hour are read every time, the older ones (which change only when a process flushes late)
at most every `SETTLED_REREAD_S`, so a refresh is a few reads, not 48.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._hourly import SHOWN_HOURS, HourBar, hour_bars

if TYPE_CHECKING:
    from .._cache import Cache
    from .._report import Report
    from .._stats import CacheStats, Health

__all__ = ["SETTLED_REREAD_S", "Snapshot", "Snapshots"]

SETTLED_REREAD_S = 30.0
_RECENT_HOURS = 2  # read at every snapshot: the current hour and the one before


@dataclass(frozen=True)
class Snapshot:
    """The dashboard's data at `taken_at` (seconds since the epoch)."""

    taken_at: float
    report: Report  # every day with counts, by namespace and model
    health: Health  # the tiers as this (the dashboard's) process sees them
    stats: CacheStats
    ledger_integrity_failures: int
    hours: list[HourBar]  # the last `SHOWN_HOURS`, from the ledger's hourly totals


class Snapshots:
    """Takes snapshots of `cache`, reusing the last one for `min_interval_s`."""

    def __init__(
        self,
        cache: Cache,
        *,
        min_interval_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.min_interval_s = min_interval_s
        self.clock = clock
        self._lock = threading.Lock()
        self._last: Snapshot | None = None
        # Hours before the recent ones: (read at, the last of them, their rows).
        self._settled: tuple[float, int, list[dict[str, Any]]] | None = None

    def _hour_rows(self, now: float) -> list[dict[str, Any]]:
        """`cache.report_hours(SHOWN_HOURS)`, the settled hours reused for a while."""
        last_settled = int(self.cache.clock() // 3600) - _RECENT_HOURS
        settled = self._settled
        if settled is None or settled[1] != last_settled or now - settled[0] >= SETTLED_REREAD_S:
            rows = self.cache.report_hours(SHOWN_HOURS)
            old = [row for row in rows if row["epoch_hour"] <= last_settled]
            self._settled = (now, last_settled, old)
            return rows
        recent = range(last_settled + 1, last_settled + 1 + _RECENT_HOURS)
        return settled[2] + self.cache.ledger.hour_rows(self.cache.read_counters, recent)

    def current(self) -> Snapshot:
        with self._lock:  # one reader of the ledger at a time, however many pages poll
            now = self.clock()
            last = self._last
            if last is not None and now - last.taken_at < self.min_interval_s:
                return last
            report = self.cache.report()  # flushes this process's counts first
            hours = hour_bars(self._hour_rows(now), self.cache.clock())
            self._last = Snapshot(
                taken_at=now,
                report=report,
                health=self.cache.health(),
                stats=self.cache.stats(),
                ledger_integrity_failures=self.cache.ledger.integrity_failures,
                hours=hours,
            )
            return self._last
