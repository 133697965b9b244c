"""A local Upstash Redis REST endpoint backed by a real ``redis-server``.

:class:`UpstashRestServer` speaks the HTTP protocol of Upstash Redis well enough for the real
``upstash_redis.Redis`` / ``upstash_redis.asyncio.Redis`` clients to work end to end, and
forwards every command to a real Redis (``redis://127.0.0.1:PORT/0``) with redis-py, byte for
byte. It listens on 127.0.0.1 only.

Protocol (as used by upstash-redis 1.8):

* ``POST /`` with a JSON array body (``["SET", "k", "v", "EX", 60]``) runs one command and
  answers ``{"result": ...}``, or HTTP 400 ``{"error": "ERR ..."}`` for a Redis error.
* ``POST /pipeline`` and ``POST /multi-exec`` take an array of such arrays and answer an array of
  ``{"result": ...}`` / ``{"error": ...}`` entries, one per command; ``/multi-exec`` runs them in
  ``MULTI``/``EXEC``. If the transaction is aborted at queue time (e.g. unknown command), every
  entry is an error (the command's own error, or the EXECABORT message).
* The REST "path style" (``GET /set/foo/bar``, ``POST /set/foo`` with the value as the body) is
  supported too, although the Python SDK never uses it.
* ``Authorization: Bearer TOKEN`` (or ``?_token=TOKEN``); anything else is HTTP 401
  ``{"error": "Unauthorized"}``.
* With the ``Upstash-Encoding: base64`` request header (the SDK's default) every string in the
  result, at any nesting depth, is base64 of the raw bytes, except the status reply ``OK``,
  which is sent as plain ``"OK"`` like the real service does (the SDK special-cases it; since
  redis-py cannot tell a ``+OK`` status from a stored bulk value ``OK`` both are sent plain,
  which decodes identically). Integers stay integers, nil is ``null``.

Fault injection, switchable while a test runs (``server.mode = ...``):

* ``"ok"``: normal operation.
* ``"error"``: HTTP 500 with ``{"error": "..."}``.
* ``"hang"``: never answer; the handler sleeps until the mode changes (then it serves the request
  normally, i.e. a slow response), the server is stopped (then the connection is dropped without
  an answer) or ``hang_limit`` seconds pass.
* ``"bad_token"``: HTTP 401 ``{"error": "Unauthorized"}`` whatever the token (a revoked token).

``server.requests`` counts every HTTP request received (in any mode); ``server.commands`` records
every command forwarded to Redis (decoded, for assertions). ``server.latency`` adds a fixed delay
to every request.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal, Self, get_args
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

import redis
from redis.connection import ConnectionPool

from llmcache.testing._loopback import HOST, LoopbackHTTPServer
from tests.servers._lifecycle import ManagedServer

Mode = Literal["ok", "error", "hang", "bad_token"]
_MODES: frozenset[str] = frozenset(get_args(Mode))

#: JSON-compatible result of one Redis command after encoding.
JSONValue = Any


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackHTTPServer
    # HTTP/1.1 keep-alive, like the real service; httpx reuses connections.
    protocol_version = "HTTP/1.1"
    # The reply goes out as two writes (headers, then body): with Nagle's algorithm on, the
    # body waits for the client's delayed ACK of the headers, ~40 ms per request.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self.server.owner._handle(self)

    def do_GET(self) -> None:
        self.server.owner._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean


def _error_text(exc: BaseException) -> str:
    """Redis' own error line: redis-py strips the leading code (``ERR``) into ``status_code``."""
    code = getattr(exc, "status_code", None)
    message = str(exc)
    return f"{code} {message}" if code else message


def _to_arg(value: Any) -> bytes:
    """One JSON command element as the bytes sent to Redis."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool | int | float):
        return json.dumps(value).encode()  # 1 -> b"1", 1.5 -> b"1.5", true -> b"true"
    raise ValueError(f"unsupported command argument {value!r}")


def _encode(value: Any, b64: bool) -> JSONValue:
    """Turn a raw redis-py reply into the JSON the REST API returns."""
    if isinstance(value, bytes):
        if b64 and value != b"OK":
            return base64.b64encode(value).decode("ascii")
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, list | tuple):
        return [_encode(item, b64) for item in value]
    if isinstance(value, redis.ResponseError):  # an error nested in an array reply
        return _error_text(value)
    return str(value)


def _entry(reply: Any, b64: bool) -> dict[str, JSONValue]:
    """A pipeline / multi-exec entry."""
    if isinstance(reply, redis.ResponseError):
        return {"error": _error_text(reply)}
    return {"result": _encode(reply, b64)}


class UpstashRestServer(ManagedServer):
    """Upstash-compatible REST endpoint on ``http://127.0.0.1:PORT`` in front of a real Redis.

    Args:
        redis_url: the Redis to forward to, e.g. ``RedisServer().url``.
        token: the bearer token clients must send (random when ``None``).
        port: port to listen on (a free one when ``None``); kept across stop()/start().
        start: start listening immediately (default).
        hang_limit: longest time, in seconds, a request may hang in ``"hang"`` mode.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        token: str | None = None,
        port: int | None = None,
        start: bool = True,
        hang_limit: float = 60.0,
    ) -> None:
        self.redis_url = redis_url
        self.token: str = token if token is not None else secrets.token_urlsafe(16)
        self.port: int = port or 0
        self.hang_limit = hang_limit
        #: Extra seconds slept before answering each request.
        self.latency: float = 0.0
        #: Number of HTTP requests received since start (or since a test reset it to 0).
        self.requests: int = 0
        #: Every command forwarded to Redis, decoded as text (``["SET", "k", "v"]``).
        self.commands: list[list[str]] = []
        self._mode: Mode = "ok"
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: LoopbackHTTPServer | None = None
        # RESP2, whose reply shapes the REST API mirrors: redis-py 8 defaults to RESP3, where
        # HGETALL is a map (and ZSCORE a double) that _encode would turn into "{...}" text.
        self._pool = ConnectionPool.from_url(
            redis_url, socket_connect_timeout=2.0, socket_timeout=10.0, protocol=2
        )
        if start:
            self.start()

    # ------------------------------------------------------------------ control

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, value: Mode) -> None:
        if value not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, not {value!r}")
        self._mode = value

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def reset(self) -> None:
        """Back to ``mode="ok"``, no latency, counters cleared."""
        self.mode = "ok"
        self.latency = 0.0
        with self._lock:
            self.requests = 0
            self.commands = []

    def start(self) -> Self:
        """Start serving (again on the same port after stop())."""
        if self._httpd is None:
            self._stopping.clear()
            self._httpd = LoopbackHTTPServer(_Handler, self, port=self.port)
            self.port = self._httpd.port
            self._register_for_exit()
        return self

    def stop(self) -> None:
        """Stop serving: new connections are refused, open ones (even hanging) are cut."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            self._stopping.set()  # wakes "hang" handlers
            httpd.stop()

    def close(self) -> None:
        """stop() and close the connections to Redis."""
        super().close()
        self._pool.disconnect()

    def __repr__(self) -> str:
        return f"<UpstashRestServer {self.url} -> {self.redis_url} mode={self.mode}>"

    # ------------------------------------------------------------------ HTTP

    def _handle(self, req: _Handler) -> None:
        with self._lock:
            self.requests += 1
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""

        if self.latency > 0 and self._stopping.wait(self.latency):
            req.close_connection = True
            return
        if self.mode == "hang" and not self._hang():
            req.close_connection = True  # drop the connection without any answer
            return
        mode = self.mode
        if mode == "bad_token":
            return self._reply(req, 401, {"error": "Unauthorized"})
        if mode == "error":
            return self._reply(req, 500, {"error": "ERR injected failure (mode='error')"})

        url = urlsplit(req.path)
        query = parse_qs(url.query)
        token = query.get("_token", [""])[0]
        auth = req.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth.removeprefix("Bearer ").strip()
        if not secrets.compare_digest(token.encode(), self.token.encode()):
            return self._reply(req, 401, {"error": "Unauthorized"})

        b64 = req.headers.get("Upstash-Encoding", "").lower() == "base64"
        path = "/" + url.path.strip("/")
        try:
            if path in ("/pipeline", "/multi-exec"):
                batch = json.loads(body) if body else []
                if not isinstance(batch, list) or not all(isinstance(c, list) for c in batch):
                    raise ValueError("pipeline body must be an array of commands")
                commands = [[_to_arg(a) for a in command] for command in batch]
                if path == "/pipeline":
                    replies = self._pipeline(commands)
                else:
                    replies = self._transaction(commands)
                return self._reply(req, 200, [_entry(r, b64) for r in replies])
            if path == "/":
                command = json.loads(body)
                if not isinstance(command, list) or not command:
                    raise ValueError("command body must be a non-empty array")
                args = [_to_arg(a) for a in command]
            else:  # path style: /set/foo/bar, the POST body (if any) is the last argument
                args = [unquote_to_bytes(p) for p in url.path.strip("/").split("/")]
                if body:
                    args.append(body)
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            return self._reply(req, 400, {"error": f"ERR failed to parse command: {exc}"})
        except redis.RedisError as exc:
            return self._reply(req, 500, {"error": f"ERR redis unavailable: {exc}"})

        try:
            (reply,) = self._pipeline([args])
        except redis.RedisError as exc:
            return self._reply(req, 500, {"error": f"ERR redis unavailable: {exc}"})
        if isinstance(reply, redis.ResponseError):
            return self._reply(req, 400, {"error": _error_text(reply)})
        return self._reply(req, 200, {"result": _encode(reply, b64)})

    def _hang(self) -> bool:
        """Sleep while in "hang" mode. False if the server stopped (or hang_limit passed)."""
        deadline = time.monotonic() + self.hang_limit
        while self.mode == "hang":
            if self._stopping.wait(0.02) or time.monotonic() > deadline:
                return False
        return True

    def _reply(self, req: _Handler, status: int, payload: JSONValue) -> None:
        data = json.dumps(payload).encode()
        try:
            req.send_response(status)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            req.wfile.write(data)
        except OSError:  # the client gave up (timeout) or we are shutting down
            req.close_connection = True

    # ------------------------------------------------------------------ Redis

    def _record(self, commands: list[list[bytes]]) -> None:
        decoded = [[a.decode("utf-8", "replace") for a in c] for c in commands]
        with self._lock:
            self.commands.extend(decoded)

    def _send(self, commands: list[list[bytes]]) -> list[Any]:
        """Send commands on one raw connection and read one reply each.

        Raw connection I/O bypasses redis-py's response callbacks (which would turn ``SET``'s
        ``OK`` into ``True`` etc.), so replies are exactly what Redis sent: bytes, ints, None,
        lists, or ``ResponseError`` instances for error replies.
        """
        conn = self._pool.get_connection()
        try:
            conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response(disable_decoding=True))
                except redis.ResponseError as exc:
                    replies.append(exc)
            return replies
        except BaseException:
            conn.disconnect()
            raise
        finally:
            self._pool.release(conn)

    def _pipeline(self, commands: list[list[bytes]]) -> list[Any]:
        if not commands:
            return []
        self._record(commands)
        return self._send(commands)

    def _transaction(self, commands: list[list[bytes]]) -> list[Any]:
        if not commands:
            return []
        self._record(commands)
        replies = self._send([[b"MULTI"], *commands, [b"EXEC"]])
        queued, result = replies[1:-1], replies[-1]
        if isinstance(result, redis.ResponseError):  # EXECABORT: nothing ran
            return [q if isinstance(q, redis.ResponseError) else result for q in queued]
        assert isinstance(result, list)
        return result
