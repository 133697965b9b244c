"""Time in tests, without waiting for it.

* `FakeClock`: wall-clock seconds that move only when a test says so. Given to
  `llmcache.Cache(clock=...)` (the core and every tier that keeps time) or to one backend's
  `clock`, it lets a TTL run out in no time, and exactly: an entry is checked just before and
  just after its expiry, which a real wait cannot do.
* `wait_until`: poll a condition that another thread or process makes true, with a deadline.
  For what no event can signal (a real server's cooldown, a child process's progress); the
  deadline is generous, since the suite must pass beside a busy core, and a condition met
  early ends the wait at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["FakeClock", "wait_until"]


class FakeClock:
    """A `time.time` replacement that stands still until `advance` moves it.

    It starts at the real time, so that what is derived from it (the ledger's day buckets, a
    report of today) is what it would be with the real clock.
    """

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:  # two threads moving it both count
            self.now += seconds


def wait_until(
    condition: Callable[[], object], timeout: float = 10.0, what: str = "", interval: float = 0.005
) -> None:
    """Return once `condition()` is true; fail (AssertionError) if it is not within `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout} s: {what or condition}")
        time.sleep(interval)
