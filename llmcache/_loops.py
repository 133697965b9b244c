"""One asyncio client per running event loop, closed when that loop shuts down.

Part of the extension interface (`llmcache.PerLoop`): our Redis and Upstash adapters use it,
and so can any backend with a native asyncio client.

An asyncio connection (Redis, HTTP) belongs to the loop that opened it; using it from another loop
fails or hangs. A Cache, though, may be used from several loops: a Jupyter kernel's loop and
an ``asyncio.run`` in a script, or one loop per worker thread. So each loop gets its own
client, created on first use in that loop.

Closing: next to each client we start a tiny async generator that only waits. Event loops
track live async generators, and ``asyncio.run`` (like ``loop.shutdown_asyncgens()``) closes
them before it closes the loop, which runs the generator's ``finally`` inside the still
running loop: there the client is closed properly. Dropping the generator (``close_all``)
makes the loop's finalizer hook close it the same way on its own thread. A loop closed
without that step leaves its client to the garbage collector; such entries are dropped the
next time a client is created.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import asyncio

__all__ = ["PerLoop"]

_C = TypeVar("_C")


class PerLoop(Generic[_C]):
    """Clients made by `factory`, one per event loop, closed with `closer`."""

    def __init__(self, factory: Callable[[], _C], closer: Callable[[_C], Awaitable[object]]):
        self._factory = factory
        self._closer = closer
        self.clients: dict[asyncio.AbstractEventLoop, _C] = {}
        self._guards: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}

    async def create(self) -> _C:
        """The running loop's client, made now (call when `clients` has none for it)."""
        import asyncio  # the caller's event loop has loaded it (not `import llmcache`)

        loop = asyncio.get_running_loop()
        client = self.clients.get(loop)
        if client is not None:
            return client
        for stale in [known for known in self.clients if known.is_closed()]:
            self.clients.pop(stale, None)
            self._guards.pop(stale, None)
        client = self._factory()
        guard = self._guard(loop, client)
        # Run the guard to its `yield`. It has no await before that, so this does not
        # suspend, and no other task on this loop can make a second client meanwhile.
        await guard.asend(None)
        self.clients[loop] = client
        self._guards[loop] = guard  # held, or its finalizer would close the client now
        return client

    async def _guard(
        self, loop: asyncio.AbstractEventLoop, client: _C
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            # The loop may have a newer client by now (after close_all): leave that one.
            if self.clients.get(loop) is client:
                del self.clients[loop]
                self._guards.pop(loop, None)
            with contextlib.suppress(Exception):
                await self._closer(client)

    async def close_current(self) -> None:
        """Close the running loop's client, if it has one."""
        import asyncio  # the caller's event loop has loaded it (not `import llmcache`)

        loop = asyncio.get_running_loop()
        guard = self._guards.pop(loop, None)
        if guard is not None:
            await guard.aclose()

    def close_all(self) -> None:
        """Let every loop close its client (on that loop, soon) and forget them all."""
        self.clients.clear()
        # Dropping a guard hands it to its loop's finalizer hook, which schedules
        # `aclose()` on that loop (thread-safely, and only if the loop is not closed).
        self._guards.clear()
