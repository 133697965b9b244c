"""Tier URL → connection settings for redis-py, with fail-fast defaults.

``redis://[user:password@]host[:port][/db][?option=value&...]`` (``rediss://`` for TLS,
``redis+cluster://host:port`` for a Redis Cluster seed node). Our options:

    timeout              deadline of one operation, seconds: the command sent and its whole
                         reply read, however slowly the server sends it (default 0.05;
                         0.25 over TLS); see _deadline
    connect_timeout      deadline of opening a connection (connect, TLS, AUTH, SELECT),
                         seconds, added to the deadline of an operation that opens one: it
                         gets connect_timeout + timeout (default 0.05; 0.5 over TLS). A
                         cluster's discovery of its nodes is set-up too, with a deadline of
                         connect_timeout + 2 x timeout, at least 0.5 s, of its own
    async_timeout        the same for the asyncio client (default: timeout, at least 0.25)
    async_connect_timeout  (default: connect_timeout, at least 0.5)
    health_check_interval  PING a connection idle this long before reuse (default 30)
    max_connections      asyncio connections per event loop, and idle connections the
                         sync client keeps between operations (default 64)
    entry_encoding       binary | base64 | auto (default auto: base64 for *.upstash.io)

A new connection makes no round trip it does not need: RESP2 (``protocol=2``) and no
``CLIENT SETINFO`` (``driver_info=None``) unless the URL asks otherwise, because redis-py 8's
own handshake (HELLO, CLIENT MAINT_NOTIFICATIONS, two CLIENT SETINFO) costs four round trips
on every connection, and a tier opens a new one after each operation that timed out.

Every other query option that redis-py takes (``ssl_cert_reqs``, ``ssl_ca_certs``,
``client_name``, ...) is passed to it as it is, and keyword arguments given to `from_url`
override the URL. A name neither we nor redis-py know is a ConfigError: redis-py would only
fail when it first connects, which leaves the tier silently disabled.

Why these defaults: a cache tier that answers slower than tens of milliseconds is better
skipped, and redis-py's own defaults (5 s timeouts, 10 retries with backoff in redis-py 8)
turn one dead server into seconds of stall per call. A TLS Redis is usually a managed
service across a network, where the handshake alone takes a few round trips: it gets
longer defaults. The breaker in the core skips the tier after a few failures anyway.

The asyncio client gets longer floors because on an event loop a timeout is wall-clock
time in which the loop also runs every other task: with a thousand tasks ready, 50 ms can
pass before a reply that arrived in 100 us is read, and a burst of new connections times
out though the server is fine. A slow reply there delays one task, not the loop; waiting
for a pooled connection counts in the deadline.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from llmcache.ext import ConfigError

__all__ = ["RedisOptions", "parse_options"]

_PLAIN_DEFAULTS = {"timeout": 0.05, "connect_timeout": 0.05}
_TLS_DEFAULTS = {"timeout": 0.25, "connect_timeout": 0.5}
_ENCODINGS = ("auto", "binary", "base64")
# redis-py's own spellings of our options, accepted as aliases.
_ALIASES = {"socket_timeout": "timeout", "socket_connect_timeout": "connect_timeout"}
_OURS = frozenset(
    {
        "timeout",
        "connect_timeout",
        "async_timeout",
        "async_connect_timeout",
        "health_check_interval",
        "max_connections",
        "entry_encoding",
    }
)
_ASYNC_FLOORS = {"async_timeout": 0.25, "async_connect_timeout": 0.5}


@dataclass(frozen=True)
class RedisOptions:
    """What a Redis backend needs from its URL."""

    client_url: str = field(repr=False)  # for redis-py (may hold a password)
    name: str  # for display: no credentials, no options
    tls: bool
    timeout: float
    connect_timeout: float
    async_timeout: float
    async_connect_timeout: float
    health_check_interval: int
    max_connections: int
    base64_entries: bool
    extra: dict[str, Any] = field(default_factory=dict)  # passed to redis-py


def _number(name: str, value: Any, minimum: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number >= minimum:  # also rejects NaN
        raise ConfigError(f"Redis tier option {name}={value!r} must be a number >= {minimum}")
    return number


@functools.cache
def _redis_py_names(cluster: bool) -> frozenset[str]:
    """The option names redis-py's pools and connections take, read from its signatures
    (they change between redis-py versions)."""
    import redis
    import redis.connection

    takers: list[Any] = [
        redis.connection.AbstractConnection.__init__,
        redis.connection.Connection.__init__,
        redis.connection.SSLConnection.__init__,
        redis.ConnectionPool.__init__,
    ]
    if cluster:
        import redis.cluster

        takers.append(redis.cluster.RedisCluster.__init__)
    names = set(getattr(redis.connection, "URL_QUERY_ARGUMENT_PARSERS", {}))
    for taker in takers:
        for parameter in inspect.signature(taker).parameters.values():
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                names.add(parameter.name)
    return frozenset(names - {"self"})


def _check_names(cluster: bool, names: list[str]) -> None:
    known = _OURS | _ALIASES.keys() | _redis_py_names(cluster)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"unknown Redis tier option {name!r}: {hint}"
                f"ours are {', '.join(sorted(_OURS))}; other names must be redis-py's"
            )


def parse_options(url: str, cluster: bool, overrides: dict[str, Any]) -> RedisOptions:
    """Split a tier URL into redis-py's URL and our settings; ConfigError if malformed."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    tls = scheme.startswith("rediss")
    if scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        raise ConfigError(f"not a Redis tier URL: {scheme}:// (use redis://, rediss://, ...)")
    try:
        port = parts.port
    except ValueError as error:
        raise ConfigError(f"bad port in Redis tier URL: {error}") from None
    host = parts.hostname or "127.0.0.1"
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigError(f"the path of a Redis tier URL is a database number, not {db!r}")
    if cluster and db not in ("", "0"):
        raise ConfigError("a Redis Cluster has only database 0: drop the /db from the URL")

    query = parse_qsl(parts.query, keep_blank_values=True)
    _check_names(cluster, [key for key, _ in query] + list(overrides))
    settings: dict[str, Any] = {}
    passthrough: list[tuple[str, str]] = []
    for key, value in query:
        key = _ALIASES.get(key, key)
        if key in _OURS:
            settings[key] = value
        else:
            passthrough.append((key, value))
    extra = {}
    for key, value in overrides.items():
        key = _ALIASES.get(key, key)
        if key in _OURS:
            settings[key] = value
        else:
            extra[key] = value

    defaults = _TLS_DEFAULTS if tls else _PLAIN_DEFAULTS
    encoding = str(settings.get("entry_encoding", "auto")).lower()
    if encoding not in _ENCODINGS:
        raise ConfigError(f"entry_encoding must be one of {', '.join(_ENCODINGS)}")
    if encoding == "auto":
        # Upstash databases are also reached over REST, whose SDK reads text only.
        encoding = "base64" if host.endswith(".upstash.io") else "binary"

    timeout = _number("timeout", settings.get("timeout", defaults["timeout"]), 0.001)
    connect_timeout = _number(
        "connect_timeout", settings.get("connect_timeout", defaults["connect_timeout"]), 0.001
    )
    async_timeout = _number(
        "async_timeout",
        settings.get("async_timeout", max(timeout, _ASYNC_FLOORS["async_timeout"])),
        0.001,
    )
    async_connect_timeout = _number(
        "async_connect_timeout",
        settings.get(
            "async_connect_timeout",
            max(connect_timeout, _ASYNC_FLOORS["async_connect_timeout"]),
        ),
        0.001,
    )
    netloc = parts.netloc
    client_scheme = "rediss" if tls else "redis"
    client_url = urlunsplit((client_scheme, netloc, parts.path, urlencode(passthrough), ""))
    name = f"{scheme}://{host}{'' if port is None else f':{port}'}"
    if db:
        name += f"/{db}"
    return RedisOptions(
        client_url=client_url,
        name=name,
        tls=tls,
        timeout=timeout,
        connect_timeout=connect_timeout,
        async_timeout=async_timeout,
        async_connect_timeout=async_connect_timeout,
        health_check_interval=int(
            _number("health_check_interval", settings.get("health_check_interval", 30), 0)
        ),
        max_connections=int(_number("max_connections", settings.get("max_connections", 64), 1)),
        base64_entries=encoding == "base64",
        extra=extra,
    )
