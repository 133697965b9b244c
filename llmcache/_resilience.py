"""Fail-open wrapper around a tier: circuit breakers, counted errors, and a write-back queue.

Every tier but memory is reached through a `GuardedTier`. A failing tier never raises into
the caller: a failed read is a miss and a failed write is queued. Reads and writes have a
breaker each, because a tier can fail one way only: a Redis at ``maxmemory`` with
``noeviction``, or a full disk, refuses every write and still serves every read, and a tier
that cannot store must keep serving what it has. After `failure_threshold` consecutive
failures one way, that way's breaker opens and those calls are skipped outright (a
monotonic clock read, no I/O), so a dead Redis costs microseconds per call, not a timeout
per call. After a cooldown one probe is let through (half-open); success closes the breaker.

Writes that failed wait in a queue bounded in bytes (and in entries), oldest dropped first
and counted; a background thread replays them once writes work again, so results paid for
while the tier was down are not lost (within that bound).

Deadlines: the adapters bound each sync operation themselves (a thread cannot be
interrupted from outside). Each async operation is bounded here too, by the backend's
``async_deadline`` attribute when it has one (the longest its own deadline allows),
otherwise by ``async_timeout``.

One deadline per call, not one per operation: a miss makes several operations on a tier
(get, try_lock, set, unlock). A tier that stopped answering (hung, paused) would make one
call wait out each of their deadlines until `failure_threshold` failures opened the breaker.
So a timeout (the tier did not answer within a whole deadline) opens both breakers at once,
and the rest of that call, and every other call, skips the tier; a fast refusal (a dead
server refuses a connection in microseconds) still needs `failure_threshold` failures. While
both are open because the tier did not answer, one probe at a time tries it for both: only
the probing call waits for a tier that is still hung.
"""

from __future__ import annotations

import bisect
import collections
import threading
import time
from collections.abc import Awaitable
from typing import Literal, TypeVar

from ._async import _tier_io as _async_io
from ._backend import Backend
from ._sync import _tier_io as _sync_io

__all__ = ["FAILED", "Breaker", "GuardedTier", "TierCounters"]

BreakerState = Literal["closed", "open", "half-open"]
_T = TypeVar("_T")
DEFAULT_QUEUE_BYTES = 32 * 1024 * 1024
# What one queued write costs besides its key and value: the tuple, the deque slot, floats.
_QUEUED_ENTRY_OVERHEAD = 128
# Backend operations that only read; every other one (set, delete, locks, counters) writes.
READ_OPERATIONS = frozenset({"get", "get_many", "read_counters", "size", "describe", "ping"})
_SEVERITY = {"closed": 0, "half-open": 1, "open": 2}


class _Failed:
    """What `GuardedTier.call` returns when the tier is down or the call failed."""

    def __repr__(self) -> str:
        return "FAILED"


FAILED: object = _Failed()


class TierCounters:
    """Plain counters for one tier (attribute increments keep the hit path cheap), like
    `_site.SiteCounters` (per cached function)."""

    __slots__ = ("errors", "hits", "integrity_failures", "misses", "skipped", "writes")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.integrity_failures = 0
        self.writes = 0
        self.skipped = 0  # calls not made because a breaker was open


def unreachable(error: BaseException) -> bool:
    """Whether `error` says the tier could not be reached at all (a timeout, a refused or
    dropped connection), which stops reads and writes alike, rather than the tier refusing
    this one operation (out of memory, disk full, read-only replica)."""
    seen: BaseException | None = error
    for _ in range(8):  # the chain of causes, bounded
        if seen is None:
            return False
        if isinstance(seen, TimeoutError | ConnectionError):
            return True
        # Clients' own classes, which are not the builtins: redis-py's ConnectionError and
        # TimeoutError, httpx's ConnectError, ReadTimeout, ...
        name = type(seen).__name__
        if "Timeout" in name or "Connect" in name:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def timed_out(error: BaseException) -> bool:
    """Whether `error` says the tier did not answer within a whole deadline (a connect or
    an operation timeout), as opposed to refusing at once (a dead server refuses the
    connection in microseconds)."""
    seen: BaseException | None = error
    for _ in range(8):  # the chain of causes, bounded
        if seen is None:
            return False
        # The builtin (socket.timeout and asyncio's are aliases of it), or a client's own
        # class: redis-py's TimeoutError, httpx's ReadTimeout and ConnectTimeout, ...
        if isinstance(seen, TimeoutError) or "Timeout" in type(seen).__name__:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def describe_error(error: BaseException) -> str:
    """One line naming the error, and the error it replaced when it was raised while
    handling another (e.g. "cannot rollback" after "database or disk is full")."""
    text = f"{type(error).__name__}: {error}"
    context = error.__context__
    if error.__cause__ is None and context is not None and not error.__suppress_context__:
        text += f" (while handling {type(context).__name__}: {context})"
    return text[:300]


# Upper bounds, in seconds, of the tier latency histograms' buckets (Prometheus' "le"): from a
# local disk read (~10 us) to a remote tier at its timeout.
LATENCY_BOUNDS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)


class Breaker:
    """The circuit breaker of one direction (reads or writes) of one tier."""

    __slots__ = (
        "_cooldown",
        "_failures",
        "_lock",
        "_open_until",
        "_probing",
        "base_cooldown",
        "counters",
        "failure_threshold",
        "last_error",
        "last_error_at",
        "max_cooldown",
        "quiet",
        "sibling",
        "unreachable",
    )

    def __init__(
        self,
        counters: TierCounters,
        failure_threshold: int,
        cooldown: float,
        max_cooldown: float,
        lock: threading.Lock | None = None,
    ) -> None:
        # Constructor arguments kept as attributes (as `Report.__init__` keeps its own).
        self.counters = counters
        self.failure_threshold = failure_threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self._cooldown = cooldown
        self._failures = 0
        self._open_until = 0.0  # monotonic time; 0 means closed
        self._probing = False
        self._lock = lock or threading.Lock()  # shared with `sibling`, if it has one
        # The other direction of the same tier: while both are open because the tier did
        # not answer, one probe at a time tries it for both (see `allowed`).
        self.sibling: Breaker | None = None
        self.quiet = True  # closed, and no failure since the last success
        self.unreachable = False  # the last failure was the tier not answering at all
        self.last_error: str | None = None
        self.last_error_at: float | None = None

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
            sibling = self.sibling
            if self._probing or (self.unreachable and sibling is not None and sibling._probing):
                self.counters.skipped += 1
                return False
            self._probing = True
            return True

    @property
    def cooldown(self) -> float:
        """How long the breaker stays open after its next failure (it backs off)."""
        return self._cooldown

    def is_open(self) -> bool:
        """Open and still cooling down (no probe due yet); counts nothing."""
        return self._open_until != 0.0 and time.monotonic() < self._open_until

    def end_probe(self) -> None:
        """A probe that made no call after all: let the next one through."""
        self._probing = False

    def after_fork_in_child(self, lock: threading.Lock) -> None:
        """In a forked child: a lock no thread holds, and no probe (its prober is gone)."""
        self._lock = lock
        self._probing = False

    def succeeded(self) -> bool:
        """Record a success; True if the breaker was open or counting failures until now."""
        if self._open_until == 0.0 and not self._failures:
            return False
        with self._lock:
            self._failures = 0
            self._open_until = 0.0
            self._probing = False
            self._cooldown = self.base_cooldown
            self.quiet = True
        return True

    def failed(
        self,
        error: BaseException,
        count: bool = True,
        unreachable: bool = False,
        open_now: bool = False,
    ) -> None:
        """Record a failure; the breaker opens after `failure_threshold` of them in a row, at
        once if `open_now`, and again (backed off) when the failure was its probe."""
        self.counters.errors += count
        self.unreachable = unreachable
        self.last_error = describe_error(error)
        self.last_error_at = time.time()
        with self._lock:
            self.quiet = False
            self._failures += 1
            if open_now or self._probing or self._failures >= self.failure_threshold:
                if self._probing:  # a failed probe: back off further
                    self._cooldown = min(self._cooldown * 2, self.max_cooldown)
                self._open_until = time.monotonic() + self._cooldown
                self._probing = False


class GuardedTier:
    """A backend behind two circuit breakers, with error accounting and queued writes."""

    def __init__(
        self,
        backend: Backend,
        *,
        failure_threshold: int = 3,
        cooldown: float = 1.0,
        max_cooldown: float = 15.0,
        queue_size: int = 10_000,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        async_timeout: float | None = None,
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.counters = TierCounters()
        # One lock for both breakers: a probe for one direction is seen by the other.
        lock = threading.Lock()
        self.reads = Breaker(self.counters, failure_threshold, cooldown, max_cooldown, lock)
        self.writes = Breaker(self.counters, failure_threshold, cooldown, max_cooldown, lock)
        self.reads.sibling, self.writes.sibling = self.writes, self.reads
        declared = backend.async_deadline
        self.async_timeout = (
            async_timeout
            if async_timeout is not None
            else float(declared)
            if isinstance(declared, int | float) and declared > 0
            else 1.0
        )
        self.latency_ms: float | None = None  # moving average of successful calls
        # Latency histograms of timed successful operations ("read" / "write"): counts per
        # bucket of LATENCY_BOUNDS (the last, over every bound) and the seconds summed. Reads
        # are timed one in 32 on the hit path (see `_tier_io.get`), writes every time.
        self.latency_counts = {op: [0] * (len(LATENCY_BOUNDS) + 1) for op in ("read", "write")}
        self.latency_sums = {"read": 0.0, "write": 0.0}
        self.max_queue_entries = queue_size
        self.max_queue_bytes = queue_bytes
        self.queued_bytes = 0
        self.dropped_writes = 0
        self._queue: collections.deque[tuple[str, bytes, float | None, int]] = collections.deque()
        self._queue_lock = threading.Lock()
        self._flushing = False
        self._untimed = 1  # reads left before the next timed one (the first is timed)

    def after_fork_in_child(self) -> None:
        """In a forked child: locks no thread holds, and no flush or probe under way (the
        threads that held them, or ran them, did not come along). The queued writes are
        kept and replayed here too: a parent that never calls the tier again would never
        replay them, and writing an entry twice is harmless."""
        lock = threading.Lock()
        self.reads.after_fork_in_child(lock)
        self.writes.after_fork_in_child(lock)
        self._queue_lock = threading.Lock()
        self._flushing = False
        # A thread may have stopped between appending and counting: count again.
        self.queued_bytes = sum(item[3] for item in self._queue)

    # -- state, for health() -------------------------------------------------------------------
    @property
    def failure_threshold(self) -> int:
        return self.reads.failure_threshold

    @property
    def base_cooldown(self) -> float:
        return self.reads.base_cooldown

    @property
    def cooldown(self) -> float:
        """The longer of the two breakers' current cooldowns (they back off apart)."""
        return max(self.reads.cooldown, self.writes.cooldown)

    @property
    def state(self) -> BreakerState:
        """The worse of the read and the write breakers' states."""
        read, write = self.reads.state, self.writes.state
        return read if _SEVERITY[read] >= _SEVERITY[write] else write

    @property
    def last_error(self) -> str | None:
        return self._latest_breaker().last_error

    @property
    def last_error_at(self) -> float | None:
        return self._latest_breaker().last_error_at

    def _latest_breaker(self) -> Breaker:
        reads, writes = self.reads, self.writes
        return reads if (reads.last_error_at or 0.0) >= (writes.last_error_at or 0.0) else writes

    def _succeeded(self, started: float, operation: str = "write") -> None:
        elapsed = time.perf_counter() - started
        elapsed_ms = elapsed * 1000
        latency = self.latency_ms
        self.latency_ms = elapsed_ms if latency is None else latency * 0.9 + elapsed_ms * 0.1
        # Unlocked increments: a lost one under a race only blurs a histogram.
        self.latency_counts[operation][bisect.bisect_left(LATENCY_BOUNDS, elapsed)] += 1
        self.latency_sums[operation] += elapsed

    def _failed(self, breaker: Breaker, error: BaseException) -> None:
        """Count a failure against `breaker`, and against the other direction too when the
        tier was unreachable. A timeout opens both at once: the tier did not answer within a
        whole deadline, and each further operation of this call (or another) that tried it
        would wait as long again."""
        if unreachable(error):
            now = timed_out(error)
            breaker.failed(error, unreachable=True, open_now=now)
            other = self.writes if breaker is self.reads else self.reads
            other.failed(error, count=False, unreachable=True, open_now=now)
        else:
            breaker.failed(error)

    def _read_succeeded(self, started: float) -> None:
        self._succeeded(started, "read")
        self.reads.succeeded()
        writes = self.writes
        if writes.unreachable and not writes.quiet:
            writes.succeeded()  # it failed only because the tier did not answer; now it does
        if self._queue:
            self._start_flush()  # the tier answers: see whether it takes writes again

    def _write_succeeded(self, started: float) -> None:
        self.counters.writes += 1
        self._wrote(started)

    def _wrote(self, started: float) -> None:
        """A write (or another writing operation) succeeded."""
        self._succeeded(started)
        reads = self.reads
        if reads.unreachable and not reads.quiet:
            reads.succeeded()  # the tier answers again
        if self.writes.succeeded() or self._queue:
            self._start_flush()

    # -- reads, writes and other operations: written once, in _async/_tier_io.py ------------
    # (sync and async names bound side by side, as `_hot.sync_wrapper` binds its names)
    get = _sync_io.get
    aget = _async_io.aget
    set = _sync_io.set
    aset = _async_io.aset
    call = _sync_io.call
    acall = _async_io.acall

    async def _bounded(self, awaitable: Awaitable[_T]) -> _T:
        import asyncio  # the caller's event loop has loaded it (not `import llmcache`)

        # asyncio.timeout, not wait_for: in Python 3.11 wait_for runs the awaitable as a new
        # Task, which costs a Task and two extra trips through a busy event loop per call.
        async with asyncio.timeout(self.async_timeout):
            return await awaitable

    # -- the write-retry queue, bounded in bytes ------------------------------------------------
    def _enqueue(self, key: str, value: bytes, ttl: float | None) -> None:
        # When the entry expires by the backend's clock: a replay later sets only what is left.
        expires = None if ttl is None else self.backend.clock() + ttl
        size = len(key) + len(value) + _QUEUED_ENTRY_OVERHEAD
        with self._queue_lock:
            if size > self.max_queue_bytes:
                self.dropped_writes += 1  # larger than the whole queue: never kept
                return
            queue = self._queue
            # Make room: the oldest queued writes are dropped (and counted) first.
            while queue and (
                self.queued_bytes + size > self.max_queue_bytes
                or len(queue) >= self.max_queue_entries
            ):
                self.queued_bytes -= queue.popleft()[3]
                self.dropped_writes += 1
            queue.append((key, value, expires, size))
            self.queued_bytes += size

    @property
    def queued_writes(self) -> int:
        return len(self._queue)

    def _start_flush(self) -> None:
        if not self._queue or self._flushing or self.writes.is_open():
            return
        with self._queue_lock:
            if self._flushing:
                return
            self._flushing = True
        threading.Thread(
            target=self._flush_in_background, name="llmcache-flush", daemon=True
        ).start()

    def _flush_in_background(self) -> None:
        try:
            if self.writes.allowed():  # closed, or this flush is the half-open probe
                self.flush()
        finally:
            self._flushing = False

    def flush(self) -> int:
        """Replay queued writes while the backend accepts them; return how many landed."""
        landed = 0
        try:
            while self._queue:
                # Peek, write, then pop: a write that fails stays where it was, and the queue
                # never looks shorter than the writes it still owes.
                try:
                    item = self._queue[0]
                except IndexError:
                    break
                key, value, expires, _ = item
                ttl = None if expires is None else expires - self.backend.clock()
                if ttl is None or ttl > 0:
                    started = time.perf_counter()
                    try:
                        self.backend.set(key, value, ttl)
                    except Exception as error:
                        self._failed(self.writes, error)
                        break
                    landed += 1
                    self.counters.writes += 1
                    self._succeeded(started)
                    self.writes.succeeded()
                with self._queue_lock:
                    # `_enqueue` may have dropped this item meanwhile to make room.
                    if self._queue and self._queue[0] is item:
                        self._queue.popleft()
                        self.queued_bytes -= item[3]
        finally:
            self.writes.end_probe()
        return landed

    # -- other operations, all fail-open --------------------------------------------------------
    def _breaker(self, operation: str) -> Breaker:
        return self.reads if operation in READ_OPERATIONS else self.writes
