"""Deadlines per operation for redis-py's sync connections, not per socket read.

redis-py's ``socket_timeout`` bounds each ``recv``: a server that sends one byte every
30 ms never trips it, and one ``GET`` can block its caller for minutes. Here the socket of
each connection is wrapped, and every read or write first shrinks the socket's timeout to
what is left of the current operation's deadline. A missed deadline is ``TimeoutError``
(``socket.timeout``), on which redis-py disconnects the connection, so a half-read reply is
never reused.

Where the deadline comes from:

* `operation(budget)` (or setting ``OPERATION.at`` directly, on the hit path) gives every
  command of one backend operation on this thread one deadline, however many round trips
  it takes (a new connection's handshake included).
* Outside such a scope, each ``sendall`` starts a deadline of ``socket_timeout`` for that
  round trip: a command with no scope of its own is still bounded as a whole.

Setting up is not the operation: opening a connection (the TCP connect, TLS, and redis-py's
handshake commands) has a deadline of its own, ``socket_connect_timeout``, and so has a
cluster client's discovery of its nodes (``CLUSTER SLOTS``), see `setting_up`. The time set-up
took is added to the operation's deadline, so an operation that had to connect gets
``connect_timeout + timeout`` in all, and its command the whole ``timeout``.

The asyncio client gets the same rules from `abounded`: one ``asyncio.timeout`` around the
whole operation (waiting for a pooled connection included), suspended while a connection
opens or a cluster is discovered (`asetting_up`), which get ``async_connect_timeout`` of their
own. On cancellation redis-py's asyncio connection disconnects itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import socket
import threading
import time
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import redis
import redis.asyncio

__all__ = [
    "OPERATION",
    "AsyncDeadlineConnection",
    "AsyncDeadlineSSLConnection",
    "DeadlineConnection",
    "DeadlineSSLConnection",
    "abounded",
    "asetting_up",
    "operation",
    "setting_up",
]

_monotonic = time.monotonic
_T = TypeVar("_T")


class _Operation(threading.local):
    """This thread's current operation deadline (monotonic seconds); 0.0 means none."""

    at: float = 0.0


OPERATION = _Operation()


@contextlib.contextmanager
def operation(budget: float) -> Iterator[None]:
    """Bound every command sent by this thread inside the block by one deadline."""
    outer = OPERATION.at
    OPERATION.at = _monotonic() + budget
    try:
        yield
    finally:
        OPERATION.at = outer


@contextlib.contextmanager
def setting_up(budget: float) -> Iterator[None]:
    """Bound set-up work inside the block (opening a connection, discovering a cluster) by
    `budget` of its own, and add the time it took to the enclosing operation's deadline:
    set-up must not eat the time the operation's command is given, nor the reverse. Set-up
    nested inside (discovery opens a connection) pushes this budget back likewise."""
    outer = OPERATION.at
    started = _monotonic()
    OPERATION.at = started + budget
    try:
        yield
    finally:
        OPERATION.at = outer + (_monotonic() - started) if outer else 0.0


class DeadlineSocket:
    """A socket whose reads and writes never outlive the current deadline."""

    __slots__ = ("_round_trip", "_round_trip_at", "_sock", "_timeout")

    def __init__(self, sock: socket.socket, round_trip: float | None) -> None:
        self._sock = sock
        self._timeout = sock.gettimeout()  # what redis-py asked for (None, 0, or seconds)
        self._round_trip = round_trip
        self._round_trip_at = 0.0

    def _bound(self) -> None:
        """Give the real socket the smaller of its own timeout and the time left."""
        at = OPERATION.at or self._round_trip_at
        if not at:
            return
        left = at - _monotonic()
        if left <= 0:
            raise TimeoutError("operation deadline passed")
        timeout = self._timeout
        self._sock.settimeout(left if timeout is None or left < timeout else timeout)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._bound()
        return self._sock.recv_into(buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._bound()
        return self._sock.recv(bufsize, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        if not OPERATION.at and self._round_trip is not None:
            self._round_trip_at = _monotonic() + self._round_trip
        self._bound()
        self._sock.sendall(data, flags)

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._sock.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self._timeout

    def fileno(self) -> int:
        return self._sock.fileno()

    def __getattr__(self, name: str) -> Any:  # shutdown, close, pending, setsockopt, ...
        return getattr(self._sock, name)


class _DeadlineMixin:
    """Wraps the socket that redis-py's `_connect` returns; opening a connection (connect
    and handshake) is set-up, with ``socket_connect_timeout`` of its own."""

    socket_timeout: float | None
    socket_connect_timeout: float | None
    health_check_interval: int
    next_health_check: Any  # redis-py's is an int until the first check
    _sock: Any

    def connect_check_health(self, *args: Any, **kwargs: Any) -> Any:
        if self._sock is not None:  # connected: redis-py calls this on every checkout
            return super().connect_check_health(*args, **kwargs)  # type: ignore[misc]
        with setting_up(self.socket_connect_timeout or self.socket_timeout or 1.0):
            result = super().connect_check_health(*args, **kwargs)  # type: ignore[misc]
        # Just opened: no health-check PING (another round trip) before its first command.
        self.next_health_check = _monotonic() + self.health_check_interval
        return result

    def _connect(self) -> Any:
        return DeadlineSocket(super()._connect(), self.socket_timeout)  # type: ignore[misc]


class DeadlineConnection(_DeadlineMixin, redis.Connection):
    """redis-py's TCP connection with deadlines per operation."""


class DeadlineSSLConnection(_DeadlineMixin, redis.SSLConnection):
    """redis-py's TLS connection with deadlines per operation (the handshake counts as
    connecting: it is bounded per read by the socket timeout, not by the deadline)."""


# The asyncio.timeout of the operation running in this task, for a connect to push back.
_ASYNC_SCOPE: contextvars.ContextVar[asyncio.Timeout | None] = contextvars.ContextVar(
    "llmcache_redis_async_scope", default=None
)


async def abounded(budget: float, awaitable: Awaitable[_T]) -> _T:
    """Await `awaitable` within `budget` seconds (plus the time spent opening a connection);
    TimeoutError when the deadline passes."""
    async with asyncio.timeout(budget) as scope:
        token = _ASYNC_SCOPE.set(scope)
        try:
            return await awaitable
        finally:
            _ASYNC_SCOPE.reset(token)


async def asetting_up(budget: float, awaitable: Awaitable[_T]) -> _T:
    """`setting_up` for asyncio: the operation's ``asyncio.timeout`` (if any) is suspended
    while `awaitable` runs within `budget` of its own, then pushed back by the time it took."""
    loop = asyncio.get_running_loop()
    outer = _ASYNC_SCOPE.get()
    when = None if outer is None or outer.expired() else outer.when()
    if outer is not None and when is not None:
        outer.reschedule(None)
    started = loop.time()
    try:
        async with asyncio.timeout(budget) as scope:
            token = _ASYNC_SCOPE.set(scope)  # what it opens meanwhile pushes this one back
            try:
                return await awaitable
            finally:
                _ASYNC_SCOPE.reset(token)
    finally:
        # Also after a failure: a caller that catches it (a cluster client trying its next
        # node) stays bounded. A time already passed expires the scope at its next await,
        # or never, if the error leaves the scope first.
        if outer is not None and when is not None:
            outer.reschedule(when + loop.time() - started)


class _AsyncDeadlineMixin:
    """Opening an asyncio connection (connect and handshake) is set-up: see `asetting_up`."""

    socket_connect_timeout: float | None
    socket_timeout: float | None
    health_check_interval: float
    next_health_check: float
    is_connected: bool

    async def connect_check_health(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_connected:  # redis-py calls this on every checkout
            return await super().connect_check_health(*args, **kwargs)  # type: ignore[misc]
        budget = self.socket_connect_timeout or self.socket_timeout or 1.0
        opening = super().connect_check_health(*args, **kwargs)  # type: ignore[misc]
        result = await asetting_up(budget, opening)
        # Just opened: no health-check PING (another round trip) before its first command.
        self.next_health_check = asyncio.get_running_loop().time() + self.health_check_interval
        return result


class AsyncDeadlineConnection(_AsyncDeadlineMixin, redis.asyncio.Connection):
    """redis-py's asyncio TCP connection; see `abounded`."""


class AsyncDeadlineSSLConnection(_AsyncDeadlineMixin, redis.asyncio.SSLConnection):
    """redis-py's asyncio TLS connection; see `abounded`."""
