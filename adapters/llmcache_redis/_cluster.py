"""`RedisClusterBackend`: the Redis tier on a Redis Cluster (``redis+cluster://seed:port``).

Entry keys carry no hash tag, so they spread over every slot and every primary. Every
command touches one key, except the few that need several: those never send a cross-slot
multi-key command. ``get_many`` groups keys by slot (one ``MGET`` per slot, pipelined per
node), and ``delete_prefix`` scans every primary and unlinks one key per command, pipelined.

Discovering the cluster (connecting to the seed, asking it for the slot map and for the
command table, a 90 KB reply) is set-up, like opening a connection: it has a deadline of its
own, `discovery_deadline`, and the operation that triggered it still gets its whole
``timeout`` afterwards (see `_deadline.setting_up`).
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import redis.asyncio.cluster
import redis.cluster

from llmcache.ext import BackendError

from ._deadline import abounded, asetting_up, setting_up
from ._standalone import (
    SCAN_COUNT,
    UNLINK_BATCH,
    RedisBackend,
    no_retry,
    server_facts,
)
from ._stored import from_stored

__all__ = ["RedisClusterBackend", "discovery_deadline"]

# Discovery happens once per process, and again only when the cluster changes. A deadline a
# busy machine can make it miss would leave the tier unusable (every operation would discover
# again, and fail again), while a generous one costs a hung cluster's first caller once: its
# timeout then opens the breaker. Hence a floor, as for the asyncio client's set-up.
DISCOVERY_FLOOR = 0.5


def discovery_deadline(connect_timeout: float, timeout: float) -> float:
    """Connecting to the seed, then two commands (CLUSTER SLOTS, COMMAND); at least the floor."""
    return max(connect_timeout + 2 * timeout, DISCOVERY_FLOOR)


# Every cluster backend, for a forked child to give each a lock no thread holds.
_BACKENDS: weakref.WeakSet[RedisClusterBackend] = weakref.WeakSet()


class _GatedCluster:
    """The asyncio cluster client, initialised once, with at most `limit` commands in flight.

    Two things redis-py's asyncio cluster client does not do for a burst of tasks: its
    lazy first-use initialisation, entered by many tasks at once, drops the connections of
    commands already in flight ("Connection closed by server"); and its pool raises
    MaxConnectionsError when exhausted instead of waiting, as the standalone pool does.
    Either would trip the breaker on a healthy cluster.
    """

    def __init__(self, client: Any, limit: int, setup_timeout: float) -> None:
        self.client = client
        self._setup_timeout = setup_timeout
        self._slots = asyncio.Semaphore(limit)
        self._ready = False
        self._initialising = asyncio.Lock()

    async def _ensure_ready(self) -> None:
        async with self._initialising:
            if not self._ready:
                await asetting_up(self._setup_timeout, self.client.initialize())
                self._ready = True

    async def execute_command(self, *args: Any) -> Any:
        if not self._ready:
            await self._ensure_ready()
        async with self._slots:
            return await self.client.execute_command(*args)

    async def eval(self, script: str, numkeys: int, *args: Any) -> Any:
        if not self._ready:
            await self._ensure_ready()
        async with self._slots:
            return await self.client.eval(script, numkeys, *args)

    async def mget_nonatomic(self, keys: Sequence[str]) -> list[Any]:
        if not self._ready:
            await self._ensure_ready()
        async with self._slots:
            return list(await self.client.mget_nonatomic(keys))

    async def aclose(self) -> None:
        await self.client.aclose()


class RedisClusterBackend(RedisBackend):
    """A tier on a Redis Cluster, found from one seed node: ``redis+cluster://host:port``."""

    cluster = True

    def __init__(self, url: str = "redis+cluster://127.0.0.1:7000", **options: Any) -> None:
        self._connect_lock = threading.Lock()
        self._closed = False
        super().__init__(url, **options)
        _BACKENDS.add(self)
        o = self.options
        # The first operation may also discover the cluster, then connect to the node that
        # holds its key.
        self._discovery = discovery_deadline(o.connect_timeout, o.timeout)
        self._async_discovery = discovery_deadline(o.async_connect_timeout, o.async_timeout)
        self.deadline = self._discovery + o.connect_timeout + o.timeout
        self.async_deadline = self._async_discovery + o.async_connect_timeout + o.async_timeout

    def _make_client(self) -> Any:
        # Building a cluster client asks the seed for the slot map: I/O, and an exception
        # if the cluster is down. Done on first use instead, so a Cache can be built (and
        # serve from its other tiers) while the cluster is unreachable.
        return None

    def _sync_client(self) -> Any:
        client = self._redis
        if client is not None:
            return client
        with self._connect_lock:
            if self._closed:
                raise BackendError(f"{self.name}: the tier is closed")
            if self._redis is None:
                with setting_up(self._discovery):
                    self._redis = redis.cluster.RedisCluster.from_url(
                        self.options.client_url, retry=no_retry(), **self._connection_settings()
                    )
            return self._redis

    def _make_async_client(self) -> Any:
        client = redis.asyncio.cluster.RedisCluster.from_url(
            self.options.client_url,
            retry=no_retry(),
            max_connections=self.options.max_connections,
            **self._connection_settings(asynchronous=True),
        )
        return _GatedCluster(client, self.options.max_connections, self._async_discovery)

    def get(self, key: str) -> bytes | None:
        with self._errors:
            data = self._command("GET", key)
        return None if data is None else from_stored(data)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        with self._errors, self._operation():
            found = self._sync_client().mget_nonatomic(list(keys))
        return [None if data is None else from_stored(data) for data in found]

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        client = await self._aclient()
        with self._errors:
            found = await abounded(self.options.async_timeout, client.mget_nonatomic(list(keys)))
        return [None if data is None else from_stored(data) for data in found]

    def _scan_matching(self, pattern: str) -> Iterator[bytes | str]:
        """SCAN MATCH on every primary in turn: each holds its own slots' keys."""
        client = self._sync_client()
        for node in client.get_primaries():
            yield from client.get_redis_connection(node).scan_iter(match=pattern, count=SCAN_COUNT)

    def _delete_matching(self, pattern: str) -> int:
        """SCAN every primary; UNLINK what each holds, one key per command, pipelined."""
        client = self._sync_client()
        removed = 0
        for node in client.get_primaries():
            node_client = client.get_redis_connection(node)
            batch: list[bytes] = []
            for key in node_client.scan_iter(match=pattern, count=SCAN_COUNT):
                batch.append(key)
                if len(batch) >= UNLINK_BATCH:
                    removed += _unlink_each(node_client, batch)
                    batch.clear()
            if batch:
                removed += _unlink_each(node_client, batch)
        return removed

    def describe(self) -> dict[str, Any]:
        with self._errors:
            client = self._sync_client()
            primaries = client.get_primaries()
            infos = [client.get_redis_connection(node).info() for node in primaries]
        facts = {**self._settings(), **server_facts(infos[0] if infos else {})}
        facts["primaries"] = [f"{node.host}:{node.port}" for node in primaries]
        return facts

    def close(self) -> None:
        with self._connect_lock:
            self._closed = True
        super().close()


def _unlink_each(node_client: Any, keys: list[bytes]) -> int:
    pipe = node_client.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    return sum(pipe.execute())


def _after_fork_in_child() -> None:
    # A thread discovering the cluster when another forked is not in the child: the lock it
    # held would stay held there, and the child's first operation would wait forever.
    for backend in list(_BACKENDS):
        backend._connect_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
