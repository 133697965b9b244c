"""`RedisBackend`: llmcache's Backend over redis-py, sync and asyncio, for one Redis server.

Entries are plain string keys set with ``PX`` (millisecond TTL); a lookup is one ``GET``.
Locks are ``SET NX PX`` with a random token, released by a compare-and-delete script, so a
leader whose lock expired cannot release the lock of the next leader. Counters (ledger and
namespace generations) are hashes updated with ``HINCRBYFLOAT`` in one Lua script.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Self

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from llmcache.ext import Backend, BackendError, PerLoop, window_scripts

from ._connections import ConnectionStack
from ._deadline import (
    OPERATION,
    AsyncDeadlineConnection,
    AsyncDeadlineSSLConnection,
    DeadlineConnection,
    DeadlineSSLConnection,
    abounded,
    operation,
)
from ._errors import REDIS_ERRORS, RedisErrors, backend_error
from ._options import RedisOptions, parse_options
from ._stored import from_stored, to_stored

__all__ = ["RedisBackend"]

# The three Lua scripts are also in llmcache_upstash/_backend.py, which speaks the same
# protocol over REST: adapters import only llmcache's public names, never each other (the
# Upstash adapter must not need redis-py), and the core knows no backend's protocol. Change
# both copies together.
#
# Adds each delta to its field of one hash, atomically. A field holding something that is not
# a number (written by someone else) would make HINCRBYFLOAT fail, and with it every later
# flush: such a field is set to the delta instead (what it held was not a count).
INCR_COUNTERS_SCRIPT = """
for i = 1, #ARGV, 2 do
    local added = redis.pcall('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
    if type(added) == 'table' and added.err then
        redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    end
end
return 0
"""
# Delete the lock only if it still holds our token (it may have expired and been retaken).
UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""
# Extend the lock only if it still holds our token: a lock that lapsed and was retaken by
# another process is left to that process.
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_TAKE_SHA, _SETTLE_SHA = (
    window_scripts.sha1(window_scripts.TAKE_SCRIPT),
    window_scripts.sha1(window_scripts.SETTLE_SCRIPT),
)
_monotonic = time.monotonic
SCAN_COUNT = 1000  # keys per SCAN step: big steps, few round trips, no long server stall
UNLINK_BATCH = 500


def no_retry() -> Retry:
    """redis-py 8 retries 10 times with backoff by default; a cache tier must not."""
    return Retry(NoBackoff(), 0)


def milliseconds(ttl: float) -> int:
    return max(1, round(ttl * 1000))


def glob_escape(text: str) -> str:
    """`text` as a literal in a SCAN MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\^" else c for c in text)


def decode_counters(raw: Mapping[Any, Any]) -> dict[str, float]:
    """Counter fields as floats; a value that is not a number reads as NaN (the reader skips
    and counts it), so one bad field does not hide the others."""
    return {(k.decode() if isinstance(k, bytes) else str(k)): _number(v) for k, v in raw.items()}


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def flat_deltas(deltas: Mapping[str, float]) -> list[str]:
    """field, delta, field, delta, ... as INCR_COUNTERS_SCRIPT takes them."""
    return [part for field, delta in deltas.items() for part in (field, repr(float(delta)))]


class RedisBackend(Backend):
    """A tier on one Redis server: ``redis://host:port/db`` or ``rediss://`` (TLS).

    See `llmcache_redis._options` for the URL options (timeouts, entry encoding, pool
    size). `size()` is not reported: ``DBSIZE`` counts every workspace's keys, and counting
    ours would be a full SCAN.
    """

    shared: ClassVar[bool] = True
    persistent: ClassVar[bool] = True
    supports_locks: ClassVar[bool] = True
    supports_windows: ClassVar[bool] = True
    cluster: ClassVar[bool] = False

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", **options: Any) -> None:
        self.options: RedisOptions = parse_options(url, self.cluster, options)
        self.name = self.options.name
        self._as_text = self.options.base64_entries
        self._errors = RedisErrors(self.name)  # every operation runs inside it
        o = self.options
        # The longest one operation may take: its deadline, plus opening a connection.
        self.deadline = o.timeout + o.connect_timeout
        self.async_deadline = o.async_timeout + o.async_connect_timeout
        self._redis: Any = self._make_client()  # None once closed (cluster: until connected)
        self._connections = (
            None
            if self._redis is None
            else ConnectionStack(self._redis.connection_pool, o.max_connections)
        )
        self._async: PerLoop[Any] = PerLoop(self._make_async_client, _close_async_client)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        return cls(url, **options)

    # -- clients -------------------------------------------------------------------------
    def _connection_settings(self, asynchronous: bool = False) -> dict[str, Any]:
        o = self.options
        if asynchronous:
            connection_class: type = (
                AsyncDeadlineSSLConnection if o.tls else AsyncDeadlineConnection
            )
        else:
            connection_class = DeadlineSSLConnection if o.tls else DeadlineConnection
        return {
            "connection_class": connection_class,
            "socket_timeout": o.async_timeout if asynchronous else o.timeout,
            "socket_connect_timeout": (
                o.async_connect_timeout if asynchronous else o.connect_timeout
            ),
            "health_check_interval": o.health_check_interval,
            # No handshake round trips on a new connection unless asked for: redis-py 8
            # sends HELLO 3, CLIENT MAINT_NOTIFICATIONS and two CLIENT SETINFO, one round
            # trip each, on every connection it opens, and the cache opens a new one after
            # every timed-out operation. RESP2 serves every command a tier sends.
            "protocol": 2,
            "driver_info": None,
            **o.extra,
        }

    def _make_client(self) -> Any:
        # No I/O here: redis-py connects on first use, so a Redis that is down when the
        # Cache is built costs nothing until the breaker probes it.
        pool = redis.ConnectionPool.from_url(
            self.options.client_url, retry=no_retry(), **self._connection_settings()
        )
        return redis.Redis.from_pool(pool)

    def _make_async_client(self) -> Any:
        # A bounded pool: a thousand concurrent tasks share a few dozen connections instead
        # of opening one each. Waiting for a free connection is bounded too.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self.options.client_url,
            max_connections=self.options.max_connections,
            timeout=self.options.async_timeout,  # the operation's deadline bounds it anyway
            retry=no_retry(),
            **self._connection_settings(asynchronous=True),
        )
        return redis.asyncio.Redis.from_pool(pool)

    def _sync_client(self) -> Any:
        client = self._redis
        if client is None:
            raise BackendError(f"{self.name}: the tier is closed")
        return client

    def _operation(self) -> contextlib.AbstractContextManager[None]:
        """One deadline (the ``timeout`` option) for every command sent inside the block."""
        return operation(self.options.timeout)

    def _command(self, *args: Any) -> Any:
        with operation(self.options.timeout):
            return self._sync_client().execute_command(*args)

    async def _acommand(self, client: Any, *args: Any) -> Any:
        return await abounded(self.options.async_timeout, client.execute_command(*args))

    # -- the sync contract ---------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        # The hit path: one GET on a connection of our own stack (see _connections), not
        # through Redis.execute_command, whose pool checkout costs as much as a cache hit.
        stack = self._connections
        if stack is None:
            raise BackendError(f"{self.name}: the tier is closed")
        # One deadline for the whole GET (see _deadline), set inline: this is the hit path.
        OPERATION.at = _monotonic() + self.options.timeout
        try:
            connection = stack.acquire()
            try:
                connection.send_command("GET", key)
                data = connection.read_response()
            except BaseException:
                connection.disconnect()  # a reply may be pending or half read
                stack.release(connection)
                raise
        except REDIS_ERRORS as error:
            # self._errors' translation, written out: entering the context manager costs
            # two calls, about 0.2 us of a 12 us hit on loopback.
            raise backend_error(self.name, error) from error
        finally:
            OPERATION.at = 0.0
        stack.release(connection)
        return None if data is None else from_stored(data)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        with self._errors:
            found = self._command("MGET", *keys)
        return [None if data is None else from_stored(data) for data in found]

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        stored = to_stored(value, self._as_text)
        with self._errors:
            if ttl is None:
                self._command("SET", key, stored)
            else:
                self._command("SET", key, stored, "PX", milliseconds(ttl))

    def delete(self, key: str) -> None:
        with self._errors:
            self._command("UNLINK", key)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            raise ValueError("delete_prefix needs a prefix: it never empties the whole store")
        with self._errors:
            return self._delete_matching(glob_escape(prefix) + "*")

    def _delete_matching(self, pattern: str) -> int:
        """SCAN + UNLINK in batches: never KEYS, never FLUSHDB."""
        client = self._sync_client()
        removed = 0
        batch: list[bytes] = []
        # No deadline for the whole scan (it grows with the keyspace): each round trip
        # gets its own, from the connection (see _deadline).
        for key in client.scan_iter(match=pattern, count=SCAN_COUNT):
            batch.append(key)
            if len(batch) >= UNLINK_BATCH:
                removed += client.unlink(*batch)
                batch.clear()
        if batch:
            removed += client.unlink(*batch)
        return removed

    def scan(self, prefix: str) -> Iterator[str]:
        if not prefix:
            raise ValueError("scan needs a prefix: it never lists the whole store")
        with self._errors:  # each round trip has its own deadline, as in delete_prefix
            for key in self._scan_matching(glob_escape(prefix) + "*"):
                yield key.decode() if isinstance(key, bytes) else key

    def _scan_matching(self, pattern: str) -> Iterator[bytes | str]:
        """SCAN MATCH, a batch per round trip (never KEYS)."""
        yield from self._sync_client().scan_iter(match=pattern, count=SCAN_COUNT)

    def incr_counters(self, key: str, deltas: Mapping[str, float]) -> None:
        if not deltas:
            return
        with self._errors:
            # One hash per record, so one slot even on a cluster; one script makes the
            # fields of one flush land together.
            client = self._sync_client()
            with self._operation():
                client.eval(INCR_COUNTERS_SCRIPT, 1, key, *flat_deltas(deltas))

    def read_counters(self, key: str) -> dict[str, float]:
        with self._errors, self._operation():
            raw = self._sync_client().hgetall(key)
        return decode_counters(raw)

    def try_lock(self, key: str, ttl: float) -> str | None:
        token = secrets.token_hex(16)
        with self._errors:
            taken = self._command("SET", key, token, "NX", "PX", milliseconds(ttl))
        return token if taken else None

    def unlock(self, key: str, token: str) -> None:
        with self._errors, self._operation():
            self._sync_client().eval(UNLOCK_SCRIPT, 1, key, token)

    def renew_lock(self, key: str, token: str, ttl: float) -> bool:
        with self._errors:
            renewed = self._sync_client().eval(RENEW_SCRIPT, 1, key, token, milliseconds(ttl))
        return bool(renewed)

    # -- rate limits' sliding windows (see _windows) -----------------------------------
    def window_take(
        self, key: str, window_s: float, limit: float, cost: float, member: str
    ) -> float:
        args = window_scripts.take_args(window_s, limit, cost, member)
        return int(self._script(window_scripts.TAKE_SCRIPT, _TAKE_SHA, key, args)) / 1_000_000

    def window_settle(self, key: str, member: str, taken: float, cost: float | None) -> None:
        self._script(
            window_scripts.SETTLE_SCRIPT,
            _SETTLE_SHA,
            key,
            window_scripts.settle_args(member, taken, cost),
        )

    def _script(self, script: str, sha: str, key: str, args: list[str]) -> Any:
        """EVALSHA, then EVAL if the server does not have the script (yet, or any more).

        On a connection of our own stack, as `get` does (a miss with a limit makes one or
        two of these): redis-py's pool checkout costs a quarter of the round trip."""
        stack = self._connections
        with self._errors, self._operation():  # one deadline for both
            if stack is None:  # the cluster's client routes by key (or the tier is closed)
                client = self._sync_client()
                try:
                    return client.execute_command("EVALSHA", sha, 1, key, *args)
                except redis.exceptions.NoScriptError:
                    return client.execute_command("EVAL", script, 1, key, *args)
            connection = stack.acquire()
            try:
                try:
                    connection.send_command("EVALSHA", sha, 1, key, *args)
                    reply = connection.read_response()
                except redis.exceptions.NoScriptError:  # its reply was read whole
                    connection.send_command("EVAL", script, 1, key, *args)
                    reply = connection.read_response()
            except BaseException:
                connection.disconnect()  # a reply may be pending or half read
                stack.release(connection)
                raise
            stack.release(connection)
            return reply

    def describe(self) -> dict[str, Any]:
        with self._errors, self._operation():
            info = self._sync_client().info()
        return {**self._settings(), **server_facts(info)}

    def _settings(self) -> dict[str, Any]:
        o = self.options
        return {
            "location": self.name,
            "timeout_s": o.timeout,
            "connect_timeout_s": o.connect_timeout,
            "entry_encoding": "base64" if o.base64_entries else "binary",
            "parser": "hiredis" if redis.utils.HIREDIS_AVAILABLE else "python",
        }

    def ping(self) -> None:
        with self._errors, self._operation():
            self._sync_client().ping()

    def close(self) -> None:
        self._async.close_all()
        stack, self._connections = self._connections, None
        if stack is not None:
            stack.close()
        client, self._redis = self._redis, None
        if client is not None:
            client.close()

    # -- asyncio: one client per running loop --------------------------------------------
    async def _aclient(self) -> Any:
        client = self._async.clients.get(asyncio.get_running_loop())
        return client if client is not None else await self._async.create()

    async def aget(self, key: str) -> bytes | None:
        client = self._async.clients.get(asyncio.get_running_loop())
        if client is None:
            client = await self._async.create()
        with self._errors:
            data = await self._acommand(client, "GET", key)
        return None if data is None else from_stored(data)

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        client = await self._aclient()
        with self._errors:
            found = await self._acommand(client, "MGET", *keys)
        return [None if data is None else from_stored(data) for data in found]

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        stored = to_stored(value, self._as_text)
        client = await self._aclient()
        with self._errors:
            if ttl is None:
                await self._acommand(client, "SET", key, stored)
            else:
                await self._acommand(client, "SET", key, stored, "PX", milliseconds(ttl))

    async def adelete(self, key: str) -> None:
        client = await self._aclient()
        with self._errors:
            await self._acommand(client, "UNLINK", key)

    async def atry_lock(self, key: str, ttl: float) -> str | None:
        token = secrets.token_hex(16)
        client = await self._aclient()
        with self._errors:
            taken = await self._acommand(client, "SET", key, token, "NX", "PX", milliseconds(ttl))
        return token if taken else None

    async def aunlock(self, key: str, token: str) -> None:
        client = await self._aclient()
        with self._errors:
            await abounded(self.options.async_timeout, client.eval(UNLOCK_SCRIPT, 1, key, token))

    async def awindow_take(
        self, key: str, window_s: float, limit: float, cost: float, member: str
    ) -> float:
        args = window_scripts.take_args(window_s, limit, cost, member)
        return (
            int(await self._ascript(window_scripts.TAKE_SCRIPT, _TAKE_SHA, key, args)) / 1_000_000
        )

    async def awindow_settle(self, key: str, member: str, taken: float, cost: float | None) -> None:
        await self._ascript(
            window_scripts.SETTLE_SCRIPT,
            _SETTLE_SHA,
            key,
            window_scripts.settle_args(member, taken, cost),
        )

    async def _ascript(self, script: str, sha: str, key: str, args: list[str]) -> Any:
        client = await self._aclient()
        with self._errors:
            return await abounded(
                self.options.async_timeout, _aevalsha(client, script, sha, key, args)
            )

    async def aclose(self) -> None:
        """Close this loop's client now; the sync client and other loops' too."""
        await self._async.close_current()
        self.close()


async def _close_async_client(client: Any) -> None:
    await client.aclose()


async def _aevalsha(client: Any, script: str, sha: str, key: str, args: list[str]) -> Any:
    try:
        return await client.execute_command("EVALSHA", sha, 1, key, *args)
    except redis.exceptions.NoScriptError:
        return await client.execute_command("EVAL", script, 1, key, *args)


def server_facts(info: Mapping[str, Any]) -> dict[str, Any]:
    """The INFO fields that matter for a cache: version, memory limit, eviction policy."""
    policy = info.get("maxmemory_policy")
    facts = {
        "server": "redis",
        "redis_version": info.get("redis_version"),
        "mode": info.get("redis_mode"),
        "used_memory": info.get("used_memory_human"),
        "maxmemory": info.get("maxmemory"),
        "maxmemory_policy": policy,
    }
    if policy == "noeviction":
        facts["warning"] = (
            "maxmemory-policy is noeviction: when Redis is full, writes fail instead of "
            "evicting old entries; allkeys-lru suits a cache"
        )
    return facts
