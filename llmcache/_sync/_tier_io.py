# Written by scripts/unasync.py from llmcache/_async/_tier_io.py:
# edit that file, then run `python scripts/unasync.py`. CI fails when this copy is
# not current.
"""A `GuardedTier`'s reads, writes and other operations, written once (async).

`scripts/unasync.py` writes the sync copy, `llmcache/_sync/_tier_io.py`, from this file. Each
function is the `GuardedTier` method of its name (assigned in the class body), kept here so
that the sync and the async way of calling a tier cannot drift apart.
Each async call is bounded by the tier's deadline (`GuardedTier._bounded`); a sync call is
bounded by the backend itself (a thread cannot be interrupted from outside).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .._io import sync_name

if TYPE_CHECKING:
    from .._resilience import GuardedTier

__all__ = ["call", "get", "set"]

_TIME_ONE_READ_IN = 32


def get(self: GuardedTier, key: str) -> bytes | None:
    """The bytes under `key`, or None: a miss, a failure (counted) or an open breaker."""
    reads = self.reads
    if reads.quiet:
        # The hit path (closed, no recent failure): time one read in 32, which is enough
        # for the moving average. `> 0`, not truthiness: threads racing on the decrement
        # may take it below zero, and that must still lead to a timed read.
        self._untimed -= 1
        if self._untimed > 0:
            try:
                return self.backend.get(key)
            except Exception as error:
                self._failed(reads, error)
                return None
        self._untimed = _TIME_ONE_READ_IN
    elif not reads.allowed():  # open: skip the call
        return None
    started = time.perf_counter()
    try:
        data = self.backend.get(key)
    except Exception as error:
        self._failed(reads, error)
        return None
    self._read_succeeded(started)
    return data


def set(self: GuardedTier, key: str, value: bytes, ttl: float | None) -> bool:
    """Store, or queue for later; True if the backend took it now."""
    if not self.writes.allowed():
        self._enqueue(key, value, ttl)
        return False
    started = time.perf_counter()
    try:
        _ = self.backend.set(key, value, ttl)
    except Exception as error:
        self._failed(self.writes, error)
        self._enqueue(key, value, ttl)
        return False
    self._write_succeeded(started)
    return True


def call(self: GuardedTier, operation: str, *args: object) -> Any:
    """Run a rarely used backend method by name; FAILED if the tier is down or fails.

    The async call runs the backend's async method of that name ("try_lock" → atry_lock).
    """
    from .._resilience import FAILED

    breaker = self._breaker(operation)
    if not breaker.allowed():
        return FAILED
    started = time.perf_counter()
    try:
        result = getattr(self.backend, sync_name(operation))(*args)
    except Exception as error:
        self._failed(breaker, error)
        return FAILED
    if breaker is self.reads:
        self._read_succeeded(started)
    else:
        self._wrote(started)
    return result
