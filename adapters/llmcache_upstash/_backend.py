"""`UpstashBackend`: llmcache's Backend over the upstash-redis REST SDK, sync and asyncio.

URL: ``upstash://TOKEN@host[:port][?tls=0&timeout=0.25&connect_timeout=0.5]`` talks to
``https://host`` (``http://`` with ``tls=0``, for a local test endpoint). A bare
``upstash://`` takes the endpoint and the token from ``UPSTASH_REDIS_REST_URL`` and
``UPSTASH_REDIS_REST_TOKEN``; a URL with a host but no token takes the token from the latter.

Commands are the same as the Redis adapter's (GET/MGET, SET PX, SET NX PX locks released by
a compare-and-delete script, HINCRBYFLOAT counters in one script), and
values are stored in the text form of ``_stored``.

``timeout`` is the deadline of one request as a whole, response body included, however
slowly it arrives (see `_deadline`); ``connect_timeout`` is added when it opens a connection.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import upstash_redis
import upstash_redis.asyncio

from llmcache.ext import Backend, BackendError, ConfigError, PerLoop, window_scripts

from ._deadline import ASYNC_DEADLINE, SYNC_DEADLINE, async_transport, sync_transport
from ._errors import UpstashErrors
from ._stored import from_text, to_text

__all__ = ["UpstashBackend"]

DEFAULT_TIMEOUT = 0.25
DEFAULT_CONNECT_TIMEOUT = 0.5
SCAN_COUNT = 1000
DELETE_BATCH = 500
# The three Lua scripts are also in llmcache_redis/_standalone.py, which speaks the same
# protocol over redis-py: adapters import only llmcache's public names, never each other (this
# adapter must not need redis-py), and the core knows no backend's protocol. Change both
# copies together.
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
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _milliseconds(ttl: float) -> int:
    return max(1, round(ttl * 1000))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\^" else c for c in text)


def _number(name: str, value: str, minimum: float) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number >= minimum:
        raise ConfigError(f"Upstash tier option {name}={value!r} must be a number >= {minimum}")
    return number


def parse_url(url: str) -> tuple[str, str, dict[str, str]]:
    """``upstash://...`` → (REST endpoint URL, token, options); ConfigError if incomplete."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "upstash":
        raise ConfigError(f"not an Upstash tier URL: {url.split('://')[0]}://")
    options = dict(parse_qsl(parts.query))
    token = unquote(parts.password or parts.username or "")
    if parts.hostname:
        tls = options.pop("tls", "1").lower()
        if tls not in _TRUE + _FALSE:
            raise ConfigError("Upstash tier option tls must be 1 or 0")
        scheme = "https" if tls in _TRUE else "http"
        try:
            port = parts.port
        except ValueError as error:
            raise ConfigError(f"bad port in Upstash tier URL: {error}") from None
        endpoint = f"{scheme}://{parts.hostname}{'' if port is None else f':{port}'}"
        endpoint += parts.path.rstrip("/")
    else:
        endpoint = os.environ.get("UPSTASH_REDIS_REST_URL", "").rstrip("/")
    token = token or os.environ.get("UPSTASH_REDIS_REST_TOKEN", "")
    if not endpoint or not token:
        raise ConfigError(
            "the Upstash tier needs its REST URL and token: write upstash://TOKEN@host, or "
            "set UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN and write upstash://"
        )
    if not endpoint.startswith(("https://", "http://")):
        raise ConfigError(f"UPSTASH_REDIS_REST_URL must start with https://, not {endpoint!r}")
    return endpoint, token, options


def _counter_value(value: Any) -> float:
    """A counter value; one that is not a number reads as NaN (the ledger skips and counts it)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class UpstashBackend(Backend):
    """A tier on an Upstash Redis database, over its REST API: ``upstash://TOKEN@host``."""

    shared: ClassVar[bool] = True
    persistent: ClassVar[bool] = True
    supports_locks: ClassVar[bool] = True
    supports_windows: ClassVar[bool] = True

    def __init__(
        self,
        endpoint: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self.endpoint = endpoint
        self._token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        # The longest one request may take: `timeout` for the whole request and its
        # response (see _deadline), plus opening a connection when it needs one.
        self.deadline = self.async_deadline = timeout + connect_timeout
        self.name = "upstash://" + endpoint.split("://", 1)[1]
        self._errors = UpstashErrors(self.name)  # every request runs inside it
        self._client: Any = self._bounded(
            upstash_redis.Redis(endpoint, token, **self._sdk_settings())
        )
        self._async: PerLoop[Any] = PerLoop(self._make_async_client, _close_async_client)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> UpstashBackend:
        endpoint, token, query = parse_url(url)
        settings = {**query, **{k: str(v) for k, v in options.items()}}
        unknown = set(settings) - {"timeout", "connect_timeout"}
        if unknown:
            raise ConfigError(f"unknown Upstash tier option(s): {', '.join(sorted(unknown))}")
        return cls(
            endpoint,
            token,
            timeout=_number("timeout", settings.get("timeout", str(DEFAULT_TIMEOUT)), 0.001),
            connect_timeout=_number(
                "connect_timeout",
                settings.get("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT)),
                0.001,
            ),
        )

    # -- the SDK, configured to fail fast ----------------------------------------------------
    @staticmethod
    def _sdk_settings() -> dict[str, Any]:
        return {
            # Values are our own ASCII text form, so the SDK's base64 transport encoding
            # would only encode and decode them a second time.
            "rest_encoding": None,
            # The SDK retries a failed request once after 3 s by default: a dead endpoint
            # would stall each call for seconds. The core's breaker decides about retries.
            "rest_retries": 0,
            "rest_retry_interval": 0,
            "allow_telemetry": False,  # no SDK/platform headers sent on our users' behalf
            # Read-your-writes sends a sync token header that the SDK updates in a shared
            # dict on every request; a cache tolerates a stale read (a miss at worst).
            "read_your_writes": False,
        }

    def _bounded(self, client: Any) -> Any:
        """Give the SDK an HTTP client with our timeouts and deadlines.

        upstash-redis has no timeout option: it builds ``httpx.Client(timeout=None)`` (or
        ``AsyncClient``) as ``client._http._client``, so a hanging endpoint would block a
        call forever. We replace that client by one with our timeouts, whose connections
        also keep a deadline per request (see _deadline): httpx's timeouts alone are per
        read, which a slowly dripping response never trips. If a future SDK moves it, we
        refuse to run rather than run without timeouts.
        """
        holder: Any = getattr(client, "_http", None)
        http = getattr(holder, "_client", None)
        if not isinstance(http, httpx.Client | httpx.AsyncClient):
            raise ConfigError(
                f"upstash-redis {getattr(upstash_redis, '__version__', '?')} no longer keeps "
                f"its httpx client where llmcache sets its timeouts; pin upstash-redis<2 "
                f"or upgrade llmcache"
            )
        timeout = httpx.Timeout(self.timeout, connect=self.connect_timeout)
        if isinstance(http, httpx.Client):
            http.close()
            holder._client = httpx.Client(timeout=timeout, transport=sync_transport())
        else:  # never used yet: nothing to close
            holder._client = httpx.AsyncClient(timeout=timeout, transport=async_transport())
        return client

    def _make_async_client(self) -> Any:
        return self._bounded(
            upstash_redis.asyncio.Redis(self.endpoint, self._token, **self._sdk_settings())
        )

    def _run(self, command: list[Any]) -> Any:
        outer = SYNC_DEADLINE.at
        SYNC_DEADLINE.at = _monotonic() + self.timeout
        try:
            with self._errors:
                return self._client.execute(command)
        finally:
            SYNC_DEADLINE.at = outer

    async def _arun(self, command: list[Any]) -> Any:
        client = self._async.clients.get(asyncio.get_running_loop())
        if client is None:
            client = await self._async.create()
        token = ASYNC_DEADLINE.set(_monotonic() + self.timeout)
        try:
            with self._errors:
                return await client.execute(command)
        finally:
            ASYNC_DEADLINE.reset(token)

    # -- the sync contract -------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        text = self._run(["GET", key])
        return None if text is None else from_text(text)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        found = self._run(["MGET", *keys])
        return [None if text is None else from_text(text) for text in found]

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._run(_set_command(key, value, ttl))

    def delete(self, key: str) -> None:
        self._run(["DEL", key])

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            raise ValueError("delete_prefix needs a prefix: it never empties the whole store")
        pattern = _glob_escape(prefix) + "*"
        removed, cursor = 0, 0
        while True:
            cursor, keys = self._run(["SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT])
            for start in range(0, len(keys), DELETE_BATCH):
                removed += int(self._run(["DEL", *keys[start : start + DELETE_BATCH]]))
            if int(cursor) == 0:
                return removed

    def scan(self, prefix: str) -> Iterator[str]:
        if not prefix:
            raise ValueError("scan needs a prefix: it never lists the whole store")
        pattern = _glob_escape(prefix) + "*"
        cursor = 0
        while True:  # one REST request per batch, each with its own deadline
            cursor, keys = self._run(["SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT])
            yield from (str(key) for key in keys)
            if int(cursor) == 0:
                return

    def incr_counters(self, key: str, deltas: Mapping[str, float]) -> None:
        if not deltas:
            return
        outer = SYNC_DEADLINE.at
        SYNC_DEADLINE.at = _monotonic() + self.timeout
        try:
            with self._errors:
                # One script: the fields of one flush land together.
                flat = [part for item in deltas.items() for part in (item[0], repr(float(item[1])))]
                self._client.eval(INCR_COUNTERS_SCRIPT, [key], flat)
        finally:
            SYNC_DEADLINE.at = outer

    def read_counters(self, key: str) -> dict[str, float]:
        found = self._run(["HGETALL", key]) or {}
        return {str(field): _counter_value(value) for field, value in found.items()}

    def try_lock(self, key: str, ttl: float) -> str | None:
        token = secrets.token_hex(16)
        taken = self._run(["SET", key, token, "NX", "PX", _milliseconds(ttl)])
        return token if taken else None

    def unlock(self, key: str, token: str) -> None:
        self._run(["EVAL", UNLOCK_SCRIPT, 1, key, token])

    def renew_lock(self, key: str, token: str, ttl: float) -> bool:
        return bool(self._run(["EVAL", RENEW_SCRIPT, 1, key, token, _milliseconds(ttl)]))

    # -- rate limits' sliding windows (see _windows): EVALSHA, else EVAL -----------------
    def window_take(
        self, key: str, window_s: float, limit: float, cost: float, member: str
    ) -> float:
        args = window_scripts.take_args(window_s, limit, cost, member)
        try:
            waited = self._run(["EVALSHA", _TAKE_SHA, 1, key, *args])
        except BackendError as error:
            if "NOSCRIPT" not in str(error):
                raise
            waited = self._run(["EVAL", window_scripts.TAKE_SCRIPT, 1, key, *args])
        return int(waited) / 1_000_000

    def window_settle(self, key: str, member: str, taken: float, cost: float | None) -> None:
        args = window_scripts.settle_args(member, taken, cost)
        try:
            self._run(["EVALSHA", _SETTLE_SHA, 1, key, *args])
        except BackendError as error:
            if "NOSCRIPT" not in str(error):
                raise
            self._run(["EVAL", window_scripts.SETTLE_SCRIPT, 1, key, *args])

    def ping(self) -> None:
        self._run(["PING"])

    def describe(self) -> dict[str, Any]:
        self.ping()
        return {
            "server": "upstash",
            "location": self.name,
            "timeout_s": self.timeout,
            "connect_timeout_s": self.connect_timeout,
            "entry_encoding": "base64",
            "sdk": f"upstash-redis {getattr(upstash_redis, '__version__', '?')}",
        }

    def close(self) -> None:
        self._async.close_all()
        self._client.close()

    # -- asyncio -----------------------------------------------------------------------------
    async def aget(self, key: str) -> bytes | None:
        text = await self._arun(["GET", key])
        return None if text is None else from_text(text)

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        found = await self._arun(["MGET", *keys])
        return [None if text is None else from_text(text) for text in found]

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        await self._arun(_set_command(key, value, ttl))

    async def adelete(self, key: str) -> None:
        await self._arun(["DEL", key])

    async def atry_lock(self, key: str, ttl: float) -> str | None:
        token = secrets.token_hex(16)
        taken = await self._arun(["SET", key, token, "NX", "PX", _milliseconds(ttl)])
        return token if taken else None

    async def aunlock(self, key: str, token: str) -> None:
        await self._arun(["EVAL", UNLOCK_SCRIPT, 1, key, token])

    async def awindow_take(
        self, key: str, window_s: float, limit: float, cost: float, member: str
    ) -> float:
        args = window_scripts.take_args(window_s, limit, cost, member)
        try:
            waited = await self._arun(["EVALSHA", _TAKE_SHA, 1, key, *args])
        except BackendError as error:
            if "NOSCRIPT" not in str(error):
                raise
            waited = await self._arun(["EVAL", window_scripts.TAKE_SCRIPT, 1, key, *args])
        return int(waited) / 1_000_000

    async def awindow_settle(self, key: str, member: str, taken: float, cost: float | None) -> None:
        args = window_scripts.settle_args(member, taken, cost)
        try:
            await self._arun(["EVALSHA", _SETTLE_SHA, 1, key, *args])
        except BackendError as error:
            if "NOSCRIPT" not in str(error):
                raise
            await self._arun(["EVAL", window_scripts.SETTLE_SCRIPT, 1, key, *args])

    async def aclose(self) -> None:
        await self._async.close_current()
        self.close()


def _set_command(key: str, value: bytes, ttl: float | None) -> list[Any]:
    if ttl is None:
        return ["SET", key, to_text(value)]
    return ["SET", key, to_text(value), "PX", _milliseconds(ttl)]


async def _close_async_client(client: Any) -> None:
    await client.close()
