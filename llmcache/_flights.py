"""In-flight real calls of one process, shared by threads and by every event loop.

One registry per cache maps a fingerprint to the `Flight` making that call. Whoever finds a
flight waits for it: a thread on a `threading.Event`, an asyncio task on a future of its own
loop that the leader resolves with `loop.call_soon_threadsafe`, so a task never blocks its
loop and a flight led from any thread or loop can be joined from any other.

A leader that is cancelled (or interrupted) abandons its flight: the flight leaves the
registry before its waiters wake, so the first waiter to look again leads a new flight and
the others join that one; one real call replaces the abandoned one, not one per waiter.
A caller never waits for a flight led from its own thread, unless both are tasks of the same
loop: waiting would block the very thread that has to finish the call.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = ["Flight", "Flights"]


class Flight:
    """One real call in progress; its outcome is a value, an error, or being abandoned."""

    __slots__ = (
        "_lock",
        "_waiters",
        "abandoned",
        "done",
        "error",
        "loop",
        "record",
        "thread",
        "value",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.record: Any = None
        self.value: Any = None
        self.abandoned = False
        self.thread = threading.get_ident()
        self.loop = loop  # the leader's event loop; None for a sync leader
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def joinable(self, loop: asyncio.AbstractEventLoop | None) -> bool:
        """Whether a caller on this thread (in `loop`, if async) may wait for this flight."""
        return self.thread != threading.get_ident() or (loop is not None and loop is self.loop)

    def landed(self, timeout: float | None = None) -> None:
        """Wait (a thread) until the leader has finished, or for `timeout` seconds."""
        self.done.wait(timeout)

    async def alanded(self, timeout: float | None = None) -> None:
        """Wait, without blocking the running loop, until the leader has finished (or for
        `timeout` seconds)."""
        if self.done.is_set():
            return
        import asyncio  # the caller's event loop has loaded it (not `import llmcache`)

        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self.done.is_set():
                return
            self._waiters.append((loop, future))
        # A cancelled waiter raises here; the leader skips a future that is done. On a
        # timeout, `wait` leaves the future pending: the leader resolves it later, harmlessly.
        if timeout is None:
            await future
        else:
            await asyncio.wait((future,), timeout=timeout)

    def finish(self) -> None:
        """Wake every waiter, in threads and in any loop."""
        with self._lock:
            self.done.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            # A waiter's loop may have closed meanwhile: then nobody is left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Flights:
    """The in-flight calls of one cache in this process, by fingerprint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_fingerprint: dict[int, Flight] = {}

    def join(
        self, fingerprint: int, loop: asyncio.AbstractEventLoop | None = None
    ) -> tuple[Flight, bool]:
        """The flight making this call, and whether the caller leads it (it was none)."""
        with self._lock:
            flight = self._by_fingerprint.get(fingerprint)
            if flight is not None:
                return flight, False
            flight = self._by_fingerprint[fingerprint] = Flight(loop)
            return flight, True

    def land(self, fingerprint: int, flight: Flight) -> None:
        """End a flight: forget it first, so that waiters who look again find none."""
        with self._lock:
            if self._by_fingerprint.get(fingerprint) is flight:
                del self._by_fingerprint[fingerprint]
        flight.finish()

    def __len__(self) -> int:
        return len(self._by_fingerprint)
