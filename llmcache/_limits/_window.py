"""Sliding windows kept in this process: the memory tier's, and every cache's fallback.

A sliding log, like the shared tiers' (see `llmcache_redis`): each window keeps what each
call took and when, oldest first, and a take is granted when what the last `window_s`
seconds took, plus its cost, stays within the limit. Exact over every window (a
sliding-window counter would estimate the previous period's share and can let through more
than the limit over some windows), and bounded: a window holds at most one entry per call
in it, and entries that slid out are dropped by the next take.

A take or a settle costs O(1) (plus what slid out); only a refused take walks the oldest
entries. One lock for every window of the process: takes are microseconds and never wait,
so threads and event loops alike see each take whole. After `os.fork` a child starts with
empty windows of its own (its parent's calls are not its own).
"""

from __future__ import annotations

import collections
import os
import threading
import time
import weakref
from collections.abc import Callable

__all__ = ["LocalWindows"]

_ALL: weakref.WeakSet[LocalWindows] = weakref.WeakSet()


class _Entry:
    __slots__ = ("at", "cost", "member")

    def __init__(self, at: float, member: str, cost: float) -> None:
        self.at = at
        self.member = member
        self.cost = cost  # a settle replaces it by the real usage


class _Window:
    __slots__ = ("entries", "members", "total")

    def __init__(self) -> None:
        self.entries: collections.deque[_Entry] = collections.deque()  # oldest first
        self.members: dict[str, _Entry] = {}  # the same entries by member, for settling
        self.total = 0.0  # their costs added up


class LocalWindows:
    """Sliding windows by key, for this process only; `clock` in seconds (monotonic)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        _ALL.add(self)

    def take(self, key: str, window_s: float, limit: float, cost: float, member: str) -> float:
        """0.0 if `cost` fits in the window now (and is taken), else the seconds until it
        would fit, were nothing else taken meanwhile."""
        with self._lock:
            now = self.clock()
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window()
            entries = window.entries
            since = now - window_s
            while entries and entries[0].at <= since:
                gone = entries.popleft()
                window.total -= gone.cost
                if window.members.get(gone.member) is gone:  # not a later take's, retried
                    del window.members[gone.member]
            if not entries:
                window.total = 0.0  # no float drift carried over
            if window.total + cost <= limit:
                entry = window.members[member] = _Entry(now, member, cost)
                entries.append(entry)
                window.total += cost
                return 0.0
            # The oldest entries slide out first: wait until enough of them have.
            needed = window.total + cost - limit
            for entry in entries:
                needed -= entry.cost
                if needed <= 0:
                    return max(entry.at + window_s - now, 1e-6)
            return window_s  # pragma: no cover - cost > limit: the caller clamps it

    def settle(self, key: str, member: str, taken: float, cost: float | None) -> None:
        """`member`'s take (of `taken`) becomes `cost` (None: given back), if it is still in
        the window. A take given back stays in it at no cost until it slides out."""
        with self._lock:
            window = self._windows.get(key)
            entry = window.members.get(member) if window is not None else None
            if window is None or entry is None:
                return
            new = 0.0 if cost is None else cost
            window.total += new - entry.cost
            entry.cost = new

    def forget(self) -> None:
        """Start over, with a new lock (after a fork: no thread of the parent holds it)."""
        self._lock = threading.Lock()
        self._windows = {}


def _reset_in_child() -> None:
    for windows in list(_ALL):
        windows.forget()


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork
    os.register_at_fork(after_in_child=_reset_in_child)
