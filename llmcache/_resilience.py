"""Fail-open wrapper around a tier: circuit breaker, counted errors, and a write-back queue.

Every tier but memory is reached through a `GuardedTier`. A failing tier never raises into
the caller: a failed read is a miss and a failed write is queued. After `failure_threshold`
consecutive failures the breaker opens and the tier is skipped outright (a monotonic clock
read, no I/O), so a dead Redis costs microseconds per call, not a timeout per call. After a
cooldown one probe is let through (half-open); success closes the breaker and a background
thread replays the queued writes, so results paid for while the tier was down are not lost.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

from ._backend import Backend

__all__ = ["FAILED", "GuardedTier", "TierCounters"]

BreakerState = Literal["closed", "open", "half-open"]
_TIME_ONE_READ_IN = 32
_T = TypeVar("_T")


class _Failed:
    """What `GuardedTier.call` returns when the tier is down or the call failed."""

    def __repr__(self) -> str:
        return "FAILED"


FAILED: object = _Failed()


class TierCounters:
    """Plain counters for one tier (attribute increments keep the hit path cheap)."""

    __slots__ = ("errors", "hits", "integrity_failures", "misses", "skipped", "writes")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.integrity_failures = 0
        self.writes = 0
        self.skipped = 0  # calls not made because the breaker was open


class GuardedTier:
    """A backend behind a circuit breaker, with error accounting and queued writes."""

    def __init__(
        self,
        backend: Backend,
        *,
        failure_threshold: int = 3,
        cooldown: float = 1.0,
        max_cooldown: float = 15.0,
        queue_size: int = 10_000,
        async_timeout: float = 1.0,
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.counters = TierCounters()
        self.failure_threshold = failure_threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.async_timeout = async_timeout
        self._cooldown = cooldown
        self._failures = 0
        self._open_until = 0.0  # monotonic time; 0 means closed
        self._probing = False
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.latency_ms: float | None = None  # moving average of successful calls
        self._queue: collections.deque[tuple[str, bytes, float | None]] = collections.deque(
            maxlen=queue_size
        )
        self.dropped_writes = 0
        self._flushing = False
        self._quiet = True  # closed, and no failure since the last success
        self._untimed = 1  # reads left before the next timed one (the first is timed)

    # -- breaker -----------------------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        if self._open_until == 0.0:
            return "closed"
        return "open" if time.monotonic() < self._open_until else "half-open"

    def allowed(self) -> bool:
        """Whether to call the backend now; while open, only one probe per cooldown."""
        if self._open_until == 0.0:
            return True
        if time.monotonic() < self._open_until:
            self.counters.skipped += 1
            return False
        with self._lock:
            if self._probing:
                self.counters.skipped += 1
                return False
            self._probing = True
            return True

    def succeeded(self, started: float) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        latency = self.latency_ms
        self.latency_ms = elapsed_ms if latency is None else latency * 0.9 + elapsed_ms * 0.1
        if self._open_until != 0.0 or self._failures:
            with self._lock:
                self._failures = 0
                self._open_until = 0.0
                self._probing = False
                self._cooldown = self.base_cooldown
                self._quiet = True
            self._start_flush()

    def failed(self, error: BaseException) -> None:
        self.counters.errors += 1
        self.last_error = f"{type(error).__name__}: {error}"[:300]
        self.last_error_at = time.time()
        with self._lock:
            self._quiet = False
            self._failures += 1
            if self._probing or self._failures >= self.failure_threshold:
                if self._probing:  # a failed probe: back off further
                    self._cooldown = min(self._cooldown * 2, self.max_cooldown)
                self._open_until = time.monotonic() + self._cooldown
                self._probing = False

    # -- reads -------------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        if self._quiet:
            # The hit path (closed, no recent failure): time one read in 32, which is
            # enough for the moving average. `> 0`, not truthiness: threads racing on the
            # decrement may take it below zero, and that must still lead to a timed read.
            self._untimed -= 1
            if self._untimed > 0:
                try:
                    return self.backend.get(key)
                except Exception as error:
                    self.failed(error)
                    return None
            self._untimed = _TIME_ONE_READ_IN
        elif not self.allowed():  # open: skip the call
            return None
        started = time.perf_counter()
        try:
            data = self.backend.get(key)
        except Exception as error:
            self.failed(error)
            return None
        self.succeeded(started)
        return data

    async def aget(self, key: str) -> bytes | None:
        if not self.allowed():
            return None
        started = time.perf_counter()
        try:
            data = await self._bounded(self.backend.aget(key))
        except Exception as error:
            self.failed(error)
            return None
        self.succeeded(started)
        return data

    async def _bounded(self, awaitable: Awaitable[_T]) -> _T:
        # asyncio.timeout, not wait_for: in Python 3.11 wait_for runs the awaitable as a new
        # Task, which costs a Task and two extra trips through a busy event loop per call.
        async with asyncio.timeout(self.async_timeout):
            return await awaitable

    # -- writes ------------------------------------------------------------------------------
    def set(self, key: str, value: bytes, ttl: float | None) -> bool:
        """Store, or queue for later; True if the backend took it now."""
        if not self.allowed():
            self._enqueue(key, value, ttl)
            return False
        started = time.perf_counter()
        try:
            self.backend.set(key, value, ttl)
        except Exception as error:
            self.failed(error)
            self._enqueue(key, value, ttl)
            return False
        self.counters.writes += 1
        self.succeeded(started)
        return True

    async def aset(self, key: str, value: bytes, ttl: float | None) -> bool:
        if not self.allowed():
            self._enqueue(key, value, ttl)
            return False
        started = time.perf_counter()
        try:
            await self._bounded(self.backend.aset(key, value, ttl))
        except Exception as error:
            self.failed(error)
            self._enqueue(key, value, ttl)
            return False
        self.counters.writes += 1
        self.succeeded(started)
        return True

    def _enqueue(self, key: str, value: bytes, ttl: float | None) -> None:
        expires = None if ttl is None else time.time() + ttl
        if len(self._queue) == self._queue.maxlen:
            self.dropped_writes += 1  # the oldest queued write is pushed out
        self._queue.append((key, value, expires))

    @property
    def queued_writes(self) -> int:
        return len(self._queue)

    def _start_flush(self) -> None:
        if not self._queue or self._flushing:
            return
        self._flushing = True
        threading.Thread(target=self.flush, name="llmcache-flush", daemon=True).start()

    def flush(self) -> int:
        """Replay queued writes while the backend accepts them; return how many landed."""
        landed = 0
        try:
            while self._queue:
                # Peek, write, then pop: a write that fails stays where it was, and the queue
                # never looks shorter than the writes it still owes.
                key, value, expires = self._queue[0]
                ttl = None if expires is None else expires - time.time()
                if ttl is None or ttl > 0:
                    try:
                        self.backend.set(key, value, ttl)
                    except Exception as error:
                        self.failed(error)
                        break
                    landed += 1
                    self.counters.writes += 1
                self._queue.popleft()
        finally:
            self._flushing = False
        return landed

    # -- other operations, all fail-open --------------------------------------------------------
    def call(self, operation: str, *args: object) -> Any:
        """Run a rarely used backend method by name; FAILED if the tier is down or fails."""
        if not self.allowed():
            return FAILED
        started = time.perf_counter()
        try:
            result = getattr(self.backend, operation)(*args)
        except Exception as error:
            self.failed(error)
            return FAILED
        self.succeeded(started)
        return result

    async def acall(self, operation: str, *args: object) -> Any:
        """`call` for the backend's async method of that name (e.g. "try_lock" → atry_lock)."""
        if not self.allowed():
            return FAILED
        started = time.perf_counter()
        try:
            result = await self._bounded(getattr(self.backend, "a" + operation)(*args))
        except Exception as error:
            self.failed(error)
            return FAILED
        self.succeeded(started)
        return result
