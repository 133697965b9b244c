"""Hits and savings per hour, the last 48 hours, from the ledger's hourly totals.

The ledger keeps the workspace's totals per UTC hour (`Cache.report_hours`), counted by every
process and flushed to the shared tier with the daily counts, so the bars cover calls made
before the dashboard started, in any process. Bars start at the first hour with counts in
the window (no invented zeros before the data, e.g. from before the ledger kept hours) and
run to the current hour; an hour in between without calls is a zero bar.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SHOWN_HOURS", "HourBar", "hour_bars"]

SHOWN_HOURS = 48


@dataclass(frozen=True)
class HourBar:
    """What one hour (UTC) counted: calls, hits, dollars saved and seconds saved."""

    hour: str  # "14:00"
    when: str  # "2026-12-02 14:00 UTC"
    calls: int
    hits: int
    saved_usd: float
    saved_s: float


def hour_bars(rows: Sequence[Mapping[str, Any]], now: float) -> list[HourBar]:
    """One bar per hour from the first row's to the hour of `now` (rows: `report_hours`)."""
    if not rows:
        return []
    by_hour = {int(row["epoch_hour"]): row for row in rows}
    last = max(int(now // 3600), max(by_hour))
    bars = []
    for epoch_hour in range(min(by_hour), last + 1):
        row = by_hour.get(epoch_hour, {})
        moment = datetime.datetime.fromtimestamp(epoch_hour * 3600, datetime.UTC)
        bars.append(
            HourBar(
                hour=moment.strftime("%H:00"),
                when=moment.strftime("%Y-%m-%d %H:00 UTC"),
                calls=round(row.get("calls", 0)),
                hits=round(row.get("hits", 0)),
                saved_usd=float(row.get("saved_usd", 0.0)),
                saved_s=float(row.get("saved_s", 0.0)),
            )
        )
    return bars
