"""What differs between the sync and the async flow, named so that one source serves both.

The async flow (`llmcache/_async/`) is the source; `scripts/unasync.py` writes the sync one
(`llmcache/_sync/`) by dropping ``async`` / ``await`` (and the deadline around an awaited
tier call, ``await self._bounded(...)``), and renaming ``asleep`` to ``sleep``,
``running_loop`` to ``no_loop``, ``async_name`` to ``sync_name``, ``AsyncCompute`` to
``Compute``, and the tiers' ``aget``, ``aset``, ``acall`` and the cache's ``aload`` to their
sync names. Each pair here is the one place where the two really differ.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

__all__ = [
    "AsyncCompute",
    "Compute",
    "asleep",
    "async_name",
    "await_future",
    "no_loop",
    "running_loop",
    "sleep",
    "sync_name",
    "wait_future",
]

_T = TypeVar("_T")
Compute = Callable[[], _T]  # the real call, made by a sync caller
AsyncCompute = Callable[[], Awaitable[_T]]  # the real call, awaited by an async caller


def sleep(seconds: float) -> None:
    time.sleep(seconds)


async def asleep(seconds: float) -> None:
    import asyncio  # the caller's event loop has loaded it (not `import llmcache`)

    await asyncio.sleep(seconds)


def no_loop() -> asyncio.AbstractEventLoop | None:
    """A sync caller's event loop: none (it waits for a flight on a threading.Event)."""
    return None


def running_loop() -> asyncio.AbstractEventLoop:
    """An async caller's event loop (it waits for a flight on a future of that loop)."""
    import asyncio

    return asyncio.get_running_loop()


def sync_name(operation: str) -> str:
    """The backend method a sync call of `operation` runs: the same name."""
    return operation


def async_name(operation: str) -> str:
    """The backend method an async call of `operation` runs ("try_lock" → "atry_lock")."""
    return "a" + operation


def wait_future(future: concurrent.futures.Future[None], timeout: float) -> bool:
    """Wait (a thread) for work running elsewhere: whether it finished without error."""
    try:
        future.result(timeout=timeout)
    except Exception:  # late (TimeoutError) or failed
        return False
    return True


async def await_future(future: concurrent.futures.Future[None], timeout: float) -> bool:
    """`wait_future` without blocking the running loop."""
    import asyncio

    waiter = asyncio.wrap_future(future)
    done, _ = await asyncio.wait((waiter,), timeout=timeout)
    return bool(done) and waiter.exception() is None
