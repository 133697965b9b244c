"""A lock-free stack of idle redis-py connections, for the hit path's ``GET``.

Why not redis-py's pool: checking a connection out of ``redis.ConnectionPool`` and back in
costs about 10 us in redis-py 8 (two locks, two pid checks, a ``poll()`` syscall to see if
the socket has unread data, four observability counters, an event dispatch): a quarter of a
whole ``GET`` round trip on loopback, and more than the rest of a cache hit. ``deque.pop``
and ``deque.append`` are atomic, so threads share this stack without a lock, and redis-py's
own `Connection` still does the protocol, the parser (hiredis) and the health checks.

What the pool's ``poll()`` bought is kept where it matters: a connection that sat idle for
a while is checked for a peer close (a Redis restart) before reuse, so a restart does not
turn every thread's first command into an error.

The stack keeps at most ``max_idle`` connections: a burst of threads opens as many as it
needs, and once it is over, the connections past the cap are closed as they come back
instead of holding a socket (and a server-side client) each for the life of the process.
"""

from __future__ import annotations

import collections
import os
import time
from typing import Any

__all__ = ["ConnectionStack"]

IDLE_CHECK_AFTER = 1.0  # seconds idle before a connection is checked for a peer close
MAX_IDLE = 64  # idle connections kept, as many as the asyncio pool's default max_connections
_fork_epoch = 0


def _after_fork_in_child() -> None:
    global _fork_epoch
    _fork_epoch += 1


# A forked child must not share its parent's sockets: it drops inherited connections.
if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


class ConnectionStack:
    """Idle connections made by `pool.make_connection()`, most recently used on top."""

    def __init__(self, pool: Any, max_idle: int = MAX_IDLE) -> None:
        self._pool = pool
        self._max_idle = max_idle
        self._idle: collections.deque[tuple[Any, float]] = collections.deque()
        self._epoch = _fork_epoch

    def acquire(self) -> Any:
        """A connection for one command (connected lazily by redis-py when it sends)."""
        if self._epoch != _fork_epoch:
            self._idle = collections.deque()  # the parent's: leave them alone
            self._epoch = _fork_epoch
        try:
            connection, released = self._idle.pop()
        except IndexError:
            return self._pool.make_connection()
        # Readable while idle means the server closed it (or sent junk): reconnect.
        if time.monotonic() - released > IDLE_CHECK_AFTER and connection.can_read():
            connection.disconnect()
        return connection

    def release(self, connection: Any) -> None:
        idle = self._idle
        # Not atomic with the append: threads releasing together may keep a few past the
        # cap, never more than one each, which a lock on the hit path would not be worth.
        if len(idle) >= self._max_idle:
            connection.disconnect()
            return
        idle.append((connection, time.monotonic()))

    def close(self) -> None:
        idle, self._idle = self._idle, collections.deque()
        for connection, _ in idle:
            connection.disconnect()
