"""Hits and savings per hour, as far as the dashboard has watched them.

The ledger counts per day, not per hour, so the dashboard keeps hours itself: at every
refresh it notes the workspace's running totals, and an hour's bar is what the totals grew
by during that hour. Hours before the dashboard started are unknown and not drawn (no
invented zeros); the first hour counts from the start. The totals are noted when the
dashboard starts and whenever a page asks for figures: calls made while no page was open
count in the next hour one was.
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass

__all__ = ["HourBar", "HourlyTotals"]

_KEPT_HOURS = 24


@dataclass(frozen=True)
class HourBar:
    """What one hour (UTC) added: hits, dollars saved and seconds saved."""

    hour: str  # "14:00"
    hits: int
    saved_usd: float
    saved_s: float


class HourlyTotals:
    """Running totals noted over time, turned into per-hour increments."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._baseline: tuple[int, float, float] | None = None
        # Epoch hour -> the last totals noted in it (hits, saved_usd, saved_s).
        self._last: dict[int, tuple[int, float, float]] = {}

    def note(self, now: float, hits: int, saved_usd: float, saved_s: float) -> None:
        hour = int(now // 3600)
        with self._lock:
            if self._baseline is None:
                self._baseline = (hits, saved_usd, saved_s)
            self._last[hour] = (hits, saved_usd, saved_s)
            for old in [h for h in self._last if h <= hour - _KEPT_HOURS]:
                del self._last[old]

    def bars(self) -> list[HourBar]:
        """One bar per hour from the first noted (at most the last day) to the last."""
        with self._lock:
            if self._baseline is None:
                return []
            hours = sorted(self._last)
            previous = self._baseline
            bars = []
            for hour in range(hours[0], hours[-1] + 1):
                # An hour with no refresh in it (the machine slept) adds nothing yet.
                current = self._last.get(hour, previous)
                label = datetime.datetime.fromtimestamp(hour * 3600, datetime.UTC)
                bars.append(
                    HourBar(
                        hour=label.strftime("%H:00"),
                        hits=current[0] - previous[0],
                        saved_usd=current[1] - previous[1],
                        saved_s=current[2] - previous[2],
                    )
                )
                previous = current
            return bars
