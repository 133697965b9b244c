"""The backend contract: what a tier must do to hold llmcache entries.

A backend stores opaque bytes under string keys with a TTL. It knows nothing of entries,
MACs or codecs; the core signs and verifies everything it reads. Backends raise on failure
(any exception); the core's resilience layer turns failures into misses, so a backend need
not be defensive. Only `get`, `set`, `delete`, `delete_prefix`, `incr_counters`,
`read_counters` and `close` must be written (`scan`, which export needs, is optional); the
async methods default to running the sync ones on a small thread pool (never on the event
loop), and a backend with a native async client overrides them.

Third-party backends are written exactly like ours: subclass `Backend`, implement
`from_url`, and register the class under the ``llmcache.backends`` entry point group with the
URL scheme as the name.
"""

from __future__ import annotations

import abc
import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    import concurrent.futures

__all__ = ["Backend"]

_T = TypeVar("_T")
_EXECUTOR: concurrent.futures.ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _EXECUTOR
    if _EXECUTOR is None:
        import concurrent.futures  # on the first async tier call, not at `import llmcache`

        with _EXECUTOR_LOCK:
            if _EXECUTOR is None:
                _EXECUTOR = concurrent.futures.ThreadPoolExecutor(
                    max_workers=8, thread_name_prefix="llmcache-io"
                )
    return _EXECUTOR


async def run_in_thread(function: Callable[..., _T], *args: Any) -> _T:
    """Run blocking I/O off the event loop, on llmcache's own bounded pool."""
    import asyncio  # the caller's event loop has loaded it (not `import llmcache`)

    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(function, *args))


class Backend(abc.ABC):
    """A tier that stores bytes under string keys, with a TTL in seconds (None: no expiry)."""

    #: Visible to other processes or machines: such a tier needs an explicit secret.
    shared: ClassVar[bool] = False
    #: Survives the process (disk, Redis): generations and the ledger are kept here.
    persistent: ClassVar[bool] = True
    #: Can take a cross-process lock (`try_lock`), for single-flight across processes.
    supports_locks: ClassVar[bool] = False
    #: Keeps rate limits' sliding windows (`window_take`, `window_settle`) atomically for
    #: every process that uses it; without it, limits are enforced per process.
    supports_windows: ClassVar[bool] = False

    #: A display name without credentials, e.g. ``redis://127.0.0.1:6379/0``.
    name: str = "backend"

    #: The longest one async operation of this backend may take, in seconds, when its own
    #: timeouts bound it (e.g. connect + read timeout); the core then bounds each awaited
    #: call by it instead of its default (1 s). None: the default.
    async_deadline: float | None = None

    #: Wall-clock seconds (like `time.time`) for a backend that keeps time itself (the memory
    #: and disk tiers expire entries by it). `Cache(clock=...)` sets it on every tier, as
    #: `cachetools.TTLCache(timer=...)` does, so that tests can move time instead of waiting.
    #: Backends whose server expires entries (Redis, Upstash) go by the server's clock.
    clock: Callable[[], float] = staticmethod(time.time)

    @classmethod
    @abc.abstractmethod
    def from_url(cls, url: str, **options: Any) -> Backend:
        """Build the backend from a tier URL; raise ConfigError for a bad URL."""

    # -- required -------------------------------------------------------------------------
    @abc.abstractmethod
    def get(self, key: str) -> bytes | None:
        """The bytes stored under `key`, or None."""

    @abc.abstractmethod
    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store `value` under `key` for `ttl` seconds (None: until evicted)."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key` if present."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every key that starts with `prefix` (never the whole store); return count."""

    @abc.abstractmethod
    def incr_counters(self, key: str, deltas: Mapping[str, float]) -> None:
        """Atomically add `deltas` to the numeric fields of the counter record `key`."""

    @abc.abstractmethod
    def read_counters(self, key: str) -> dict[str, float]:
        """All fields of the counter record `key` ({} if absent)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files."""

    # -- optional -------------------------------------------------------------------------
    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Bytes for each key, in order (None where absent)."""
        return [self.get(key) for key in keys]

    def try_lock(self, key: str, ttl: float) -> str | None:
        """Take a lock that expires after `ttl` seconds; a token if taken, else None."""
        return None

    def unlock(self, key: str, token: str) -> None:  # noqa: B027 - optional, no-op by default
        """Release a lock taken with `try_lock`, only if `token` still holds it."""

    def renew_lock(self, key: str, token: str, ttl: float) -> bool:
        """Make the lock `key` live `ttl` seconds from now, only if `token` still holds it.

        True if renewed. Override it together with `try_lock`: the core then holds locks as
        short leases that a live leader keeps renewing. Without it (this default) locks are
        taken for a long fixed time instead, so a crashed leader blocks the others longer.
        """
        return False

    def scan(self, prefix: str) -> Iterator[str]:
        """Every key that starts with `prefix` (never the whole store: `prefix` is not empty),
        lazily, in batches: a store of any size is walked in bounded memory.

        Keys present for the whole walk are yielded at least once (a Redis SCAN may yield one
        twice; callers that care deduplicate); keys written or removed meanwhile may or may
        not be. What `llmcache export` walks a namespace's entries with. Optional: the
        default raises NotImplementedError, and export then says which tier cannot be read.
        """
        raise NotImplementedError(f"{type(self).__qualname__} cannot list its keys (scan)")

    def window_take(
        self, key: str, window_s: float, limit: float, cost: float, member: str
    ) -> float:
        """Take `cost` from the sliding window `key` if what the last `window_s` seconds
        took, plus `cost`, stays within `limit`: 0.0 when taken (recorded under `member`, a
        name unique to the call), else the seconds until enough of it has slid out.

        Atomic for every process of every machine that uses the tier (a rate limit's
        slot is never given twice); times are the tier's own clock. The window expires
        once `window_s` passes without a take. Set `supports_windows` with it.
        """
        raise NotImplementedError

    def window_settle(self, key: str, member: str, taken: float, cost: float | None) -> None:
        """Replace what `member` took from the window `key` (`taken`, the cost it took) by
        `cost` (its real usage), keeping when it was taken; None removes it. Nothing if it
        is no longer there."""
        raise NotImplementedError

    def size(self) -> tuple[int, int] | None:
        """(entries, bytes) held, if the backend can tell cheaply."""
        return None

    def describe(self) -> dict[str, Any]:
        """Facts for `llmcache doctor`: server version, location, limits."""
        return {}

    def ping(self) -> None:
        """Raise if the backend is unusable; the default reads one key."""
        self.get("llmc-ping")

    # -- async (defaults run the sync methods on a thread pool) ---------------------------
    async def aget(self, key: str) -> bytes | None:
        return await run_in_thread(self.get, key)

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await run_in_thread(self.get_many, keys)

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        await run_in_thread(self.set, key, value, ttl)

    async def adelete(self, key: str) -> None:
        await run_in_thread(self.delete, key)

    async def atry_lock(self, key: str, ttl: float) -> str | None:
        return await run_in_thread(self.try_lock, key, ttl)

    async def aunlock(self, key: str, token: str) -> None:
        await run_in_thread(self.unlock, key, token)

    async def awindow_take(
        self, key: str, window_s: float, limit: float, cost: float, member: str
    ) -> float:
        return await run_in_thread(self.window_take, key, window_s, limit, cost, member)

    async def awindow_settle(self, key: str, member: str, taken: float, cost: float | None) -> None:
        await run_in_thread(self.window_settle, key, member, taken, cost)

    async def aclose(self) -> None:
        await run_in_thread(self.close)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
