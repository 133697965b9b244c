"""Opening a connection and discovering a cluster have deadlines of their own, apart from the
operation's (issue 15, item 4's deadlines; the cluster contract failed on a busy machine).

A real redis-server (and a real three-node Redis Cluster) is reached through `LatencyProxy`,
which holds every reply for `DELAY` before forwarding it: a slow link where each round trip
takes most of a deadline, never all of it. An operation that must first open a connection
(AUTH on a password-protected server) or discover the cluster (CLUSTER SLOTS from the seed)
makes two such round trips: it must succeed, because set-up has ``connect_timeout`` of its own
and the command then gets its whole ``timeout``, and still end within those deadlines. When
set-up shared the operation's one deadline, both round trips had to fit in ``timeout``.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
from llmcache_redis import RedisBackend, RedisClusterBackend

from tests.servers.drip_proxy import DripProxy
from tests.servers.redis_server import RedisCluster, RedisServer

TIMEOUT = 1.0  # timeout and connect_timeout, sync and async
DELAY = 0.65 * TIMEOUT  # one round trip: most of a deadline, two of them more than one
MARGIN = 0.5  # a busy machine's scheduling, not part of the promise
PASSWORD = "setup-deadline-password"


class LatencyProxy(DripProxy):
    """Forwards every reply whole, `delay` seconds after the server sent it."""

    def __init__(self, target_port: int, delay: float) -> None:
        super().__init__(target_port)
        self.delay = delay

    def _forward_reply(self, data: bytes, sink: socket.socket) -> None:
        time.sleep(self.delay)
        sink.sendall(data)


def options(url: str) -> str:
    return (
        f"{url}?timeout={TIMEOUT}&connect_timeout={TIMEOUT}"
        f"&async_timeout={TIMEOUT}&async_connect_timeout={TIMEOUT}"
    )


@pytest.fixture(scope="module")
def protected() -> Iterator[RedisServer]:
    with RedisServer() as started:
        admin = started.client()
        admin.config_set("requirepass", PASSWORD)  # after start: its readiness PING has none
        admin.close()
        yield started


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster(join="meet") as started:
        yield started


def test_a_command_on_a_new_authenticated_connection_gets_its_whole_timeout(
    protected: RedisServer,
) -> None:
    with LatencyProxy(protected.port, DELAY) as proxy:
        backend = RedisBackend.from_url(options(f"redis://:{PASSWORD}@127.0.0.1:{proxy.port}/0"))
        try:
            started = time.monotonic()
            backend.set("llmc:setup:sync", b"value", 60)  # AUTH, then SET: two round trips
            took = time.monotonic() - started
            assert took < backend.deadline + MARGIN, took
            assert asyncio.run(backend.aget("llmc:setup:sync")) == b"value"  # a new loop's
        finally:
            backend.close()


def test_the_first_operation_on_a_cluster_gets_its_whole_timeout_after_discovery(
    cluster: RedisCluster,
) -> None:
    seed = cluster.ports[0]
    with LatencyProxy(seed, DELAY) as proxy:
        # Only the seed is slow: the nodes it names are reached directly.
        backend = RedisClusterBackend.from_url(options(f"redis+cluster://127.0.0.1:{proxy.port}"))
        try:
            started = time.monotonic()
            backend.set("llmc:setup:cluster", b"value", 60)
            took = time.monotonic() - started
            assert took < backend.deadline + MARGIN, took
            assert backend.get("llmc:setup:cluster") == b"value"
            assert proxy.connections >= 1  # discovery did go through the slow seed

            async def first_async_operation() -> tuple[bytes | None, float]:
                started = time.monotonic()
                found = await backend.aget("llmc:setup:cluster")
                return found, time.monotonic() - started

            found, took = asyncio.run(first_async_operation())
            assert found == b"value"
            assert took < backend.async_deadline + MARGIN, took
        finally:
            backend.close()
