"""A deadline per request for the SDK's httpx clients, not per socket read.

httpx's timeouts bound each phase (connect, each read, each write, a pool wait) apart: a
server that sends its response one byte every 30 ms never trips the read timeout, and one
request can block its caller for as long as the body lasts. Here the connections come from
a network backend whose streams cap every read and write by what is left of the current
request's deadline, which `UpstashBackend` sets before each request (`SYNC_DEADLINE` for
this thread, `ASYNC_DEADLINE` for this task). A missed deadline is httpx's own
``ReadTimeout`` / ``WriteTimeout``, after which httpcore closes the connection (its
response was not read to the end), so a half-read response is never reused.

Opening a connection (TCP, then TLS) is bounded by the connect timeout; the time it took is
added to the request's deadline, so a request that had to connect gets ``connect_timeout +
timeout`` in all.
"""

from __future__ import annotations

import contextvars
import ssl
import threading
import time
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

__all__ = ["ASYNC_DEADLINE", "SYNC_DEADLINE", "async_transport", "sync_transport"]

_monotonic = time.monotonic
# httpx's default limits, which the SDK's own client used.
_MAX_CONNECTIONS = 100
_MAX_KEEPALIVE = 20
_KEEPALIVE_EXPIRY = 5.0


class _Deadline(threading.local):
    """This thread's current request deadline (monotonic seconds); 0.0 means none."""

    at: float = 0.0


SYNC_DEADLINE = _Deadline()
ASYNC_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar(
    "llmcache_upstash_deadline", default=0.0
)


def _capped(at: float, timeout: float | None, expired: type[Exception]) -> float | None:
    """The smaller of httpx's timeout for this read or write and the time left."""
    if not at:
        return timeout
    left = at - _monotonic()
    if left <= 0:
        raise expired("the request's deadline passed")
    return left if timeout is None or left < timeout else timeout


class _SyncStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        timeout = _capped(SYNC_DEADLINE.at, timeout, httpcore.ReadTimeout)
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        timeout = _capped(SYNC_DEADLINE.at, timeout, httpcore.WriteTimeout)
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        started = _monotonic()
        stream = self._stream.start_tls(ssl_context, server_hostname, timeout)
        if SYNC_DEADLINE.at:  # the handshake is part of connecting
            SYNC_DEADLINE.at += _monotonic() - started
        return _SyncStream(stream)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _SyncBackend(httpcore.NetworkBackend):
    # `_AsyncBackend` below is its twin: httpcore's sync and async network backends are two
    # interfaces, and each of ours extends the deadline of its own kind (thread / task).
    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        started = _monotonic()
        stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        if SYNC_DEADLINE.at:
            SYNC_DEADLINE.at += _monotonic() - started
        return _SyncStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


# The asyncio twins of _SyncStream and _SyncBackend: httpcore has one interface for each, and
# they differ in every line (await, the deadline in a ContextVar instead of a thread-local).
class _AsyncStream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        timeout = _capped(ASYNC_DEADLINE.get(), timeout, httpcore.ReadTimeout)
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        timeout = _capped(ASYNC_DEADLINE.get(), timeout, httpcore.WriteTimeout)
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        started = _monotonic()
        stream = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        _extend_async(_monotonic() - started)
        return _AsyncStream(stream)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _extend_async(seconds: float) -> None:
    at = ASYNC_DEADLINE.get()
    if at:
        ASYNC_DEADLINE.set(at + seconds)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    # The twin of `_SyncBackend` (see there), for httpcore's async interface.
    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        started = _monotonic()
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        _extend_async(_monotonic() - started)
        return _AsyncStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


# httpx has no public way to give its pool a network backend: the pool each transport builds
# by default is replaced by the same one (same TLS context and limits) with ours.
def _pool_settings() -> dict[str, Any]:
    return {
        "ssl_context": httpx.create_ssl_context(),
        "max_connections": _MAX_CONNECTIONS,
        "max_keepalive_connections": _MAX_KEEPALIVE,
        "keepalive_expiry": _KEEPALIVE_EXPIRY,
    }


def sync_transport() -> httpx.HTTPTransport:
    """httpx's transport with httpx's defaults, on connections that keep deadlines."""
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.ConnectionPool(network_backend=_SyncBackend(), **_pool_settings())
    return transport


def async_transport() -> httpx.AsyncHTTPTransport:
    """`sync_transport` for ``httpx.AsyncClient``."""
    transport = httpx.AsyncHTTPTransport()
    transport._pool = httpcore.AsyncConnectionPool(
        network_backend=_AsyncBackend(), **_pool_settings()
    )
    return transport
