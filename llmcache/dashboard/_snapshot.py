"""What the dashboard shows, read at one moment: the ledger's report, health, stats, hours.

It reads what `cache.report()` and `cache.health()` read (the cross-process ledger in the
most shared tier), at most once per `min_interval_s` however many browsers poll.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._hourly import HourBar, HourlyTotals

if TYPE_CHECKING:
    from .._cache import Cache
    from .._report import Report
    from .._stats import CacheStats, Health

__all__ = ["Snapshot", "Snapshots"]


@dataclass(frozen=True)
class Snapshot:
    """The dashboard's data at `taken_at` (seconds since the epoch)."""

    taken_at: float
    report: Report  # every day with counts, by namespace and model
    health: Health  # the tiers as this (the dashboard's) process sees them
    stats: CacheStats
    ledger_integrity_failures: int
    hours: list[HourBar]


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
        self.hourly = HourlyTotals()
        self._lock = threading.Lock()
        self._last: Snapshot | None = None

    def current(self) -> Snapshot:
        with self._lock:  # one reader of the ledger at a time, however many pages poll
            now = self.clock()
            last = self._last
            if last is not None and now - last.taken_at < self.min_interval_s:
                return last
            report = self.cache.report()
            totals = report.totals
            self.hourly.note(now, totals.hits, totals.saved_usd, totals.saved_s)
            self._last = Snapshot(
                taken_at=now,
                report=report,
                health=self.cache.health(),
                stats=self.cache.stats(),
                ledger_integrity_failures=self.cache.ledger.integrity_failures,
                hours=self.hourly.bars(),
            )
            return self._last
