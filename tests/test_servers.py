"""The real-server test infrastructure works: Redis, Redis Cluster, Upstash REST endpoint."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx
import pytest
import redis
import upstash_redis
import upstash_redis.asyncio
from upstash_redis.errors import UpstashError

from tests.servers import _lifecycle
from tests.servers.drip_proxy import DripProxy
from tests.servers.redis_server import RedisCluster, RedisServer, free_port
from tests.servers.upstash_rest import UpstashRestServer

# Text that would break naive encodings: NUL, newline, quotes, non-ASCII, base64-looking text.
TRICKY = 'héllo\x00wörld\n"quoted" ✓ T0s= {"json": [1, 2]}'


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def rest(redis_server: RedisServer) -> Iterator[UpstashRestServer]:
    """A fresh REST endpoint per test (mode "ok", counters at 0) over an empty Redis."""
    with redis_server.client() as c:
        c.flushdb()
    with UpstashRestServer(redis_server.url) as server:
        yield server


@pytest.fixture
def client(rest: UpstashRestServer) -> Iterator[upstash_redis.Redis]:
    c = upstash_redis.Redis(url=rest.url, token=rest.token, rest_retries=0)
    yield c
    c.close()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One shared raw HTTP client: creating an httpx client builds an SSL context (~50 ms, far
    more under tracing), which would blur the timing assertions below."""
    with httpx.Client() as c:
        yield c


def raw_post(
    http: httpx.Client,
    rest: UpstashRestServer,
    path: str,
    body: object,
    *,
    b64: bool = True,
    timeout: float = 5.0,
) -> httpx.Response:
    """POST like the SDK does, but with plain httpx (and a timeout)."""
    headers = {"Authorization": f"Bearer {rest.token}"}
    if b64:
        headers["Upstash-Encoding"] = "base64"
    return http.post(rest.url + path, json=body, headers=headers, timeout=timeout)


# ---------------------------------------------------------------------------- RedisServer


def test_free_port_is_bindable_loopback_port() -> None:
    port = free_port()
    assert 0 < port < 65536
    with RedisServer(port=port) as server:
        assert server.port == port
        assert server.url == f"redis://127.0.0.1:{port}/0"


def test_redis_server_kill_and_restart_on_same_port() -> None:
    server = RedisServer()
    workdir = server.dir
    try:
        c = server.client()
        assert c.set("k", b"\x00\xffbinary")
        assert c.get("k") == b"\x00\xffbinary"
        assert c.incr("n") == 1

        port, pid = server.port, server.pid
        server.kill()  # SIGKILL: a crash
        assert not server.running
        with pytest.raises(redis.ConnectionError):
            c.ping()

        server.start()
        assert server.port == port and server.pid != pid
        assert c.ping()  # the same client reconnects to the same port
        assert c.get("k") is None  # nothing was persisted

        server.stop()  # graceful
        with pytest.raises(redis.ConnectionError):
            server.client(socket_connect_timeout=0.2).ping()
        server.restart()
        assert server.client().ping()
        c.close()
    finally:
        server.close()
    assert not server.running
    assert not workdir.exists()


def test_servers_leave_the_exit_registry_when_closed(redis_server: RedisServer) -> None:
    rest = UpstashRestServer(redis_server.url)
    proxy = DripProxy(redis_server.port)
    assert {rest, proxy} <= _lifecycle._LIVE
    with proxy, rest:
        pass
    assert not {rest, proxy} & _lifecycle._LIVE
    assert not rest.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2)


def test_a_server_left_running_is_closed_at_exit() -> None:
    # Started off the main thread, so PR_SET_PDEATHSIG is not used: only the at-exit
    # registry can stop this redis-server when the interpreter ends.
    code = (
        "import threading\n"
        "from tests.servers.redis_server import RedisServer\n"
        "servers = []\n"
        "thread = threading.Thread(target=lambda: servers.append(RedisServer()))\n"
        "thread.start(); thread.join()\n"
        "print(servers[0].pid, flush=True)\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    status = Path(f"/proc/{int(done.stdout)}/status")
    assert not status.exists() or "State:\tZ" in status.read_text()


def test_redis_server_is_loopback_only() -> None:
    with RedisServer() as server:
        bind = server.client().config_get("bind")["bind"]
        assert bind == "127.0.0.1"


def test_missing_redis_server_binary_is_an_error_not_a_skip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match="apt-get install redis-server"):
        RedisServer()


def test_startup_failure_reports_the_server_log() -> None:
    with pytest.raises(RuntimeError, match=r"(?s)exited with code.*no-such-directive"):
        RedisServer(extra_args=["--no-such-directive", "1"])


# ---------------------------------------------------------------------------- RedisCluster


@pytest.mark.parametrize("join", ["redis-cli", "meet"])
def test_cluster_spreads_keys_over_three_nodes(join: Literal["redis-cli", "meet"]) -> None:
    with RedisCluster(join=join) as cluster:
        assert len(cluster.ports) == 3
        assert cluster.url == f"redis+cluster://127.0.0.1:{cluster.ports[0]}"
        for node in cluster.nodes:
            with node.client() as c:
                assert c.cluster("INFO")["cluster_state"] == "ok"

        rc = cluster.client()
        for i in range(200):
            rc.set(f"key:{i}", i)
        assert rc.get("key:199") == b"199"
        rc.close()

        sizes = []
        for node in cluster.nodes:
            with node.client() as c:
                sizes.append(c.dbsize())
        assert sum(sizes) == 200
        assert all(size > 0 for size in sizes), sizes
        nodes = list(cluster.nodes)
    assert not any(node.running for node in nodes)


# ---------------------------------------------------------------------------- Upstash REST


def test_upstash_sync_client_round_trip(
    client: upstash_redis.Redis, redis_server: RedisServer
) -> None:
    assert client.set("k", TRICKY, ex=60) is True
    assert client.get("k") == TRICKY
    assert client.get("missing") is None
    assert client.incr("n") == 1 and client.incrby("n", 41) == 42
    assert 0 < client.ttl("k") <= 60
    assert client.ping() == "PONG"
    client.rpush("list", "a", TRICKY)
    assert client.lrange("list", 0, -1) == ["a", TRICKY]  # nested strings decoded too
    # the bytes really are in the real Redis, unmangled
    with redis_server.client() as c:
        assert c.get("k") == TRICKY.encode()


def test_upstash_pipeline_and_transaction(client: upstash_redis.Redis) -> None:
    pipe = client.pipeline()
    pipe.set("a", TRICKY)
    pipe.get("a")
    pipe.incr("counter")
    pipe.mget("a", "nope")
    assert pipe.exec() == [True, TRICKY, 1, [TRICKY, None]]

    tx = client.multi()
    tx.incr("counter")
    tx.get("counter")
    assert tx.exec() == [2, "2"]

    tx = client.multi()
    tx.incr("a")  # not an integer: a runtime error inside EXEC
    with pytest.raises(UpstashError, match="not an integer"):
        tx.exec()


async def test_upstash_async_client(rest: UpstashRestServer) -> None:
    client = upstash_redis.asyncio.Redis(url=rest.url, token=rest.token, rest_retries=0)
    try:
        assert await client.set("k", TRICKY) is True
        assert await client.get("k") == TRICKY
        pipe = client.pipeline()
        pipe.incr("n")
        pipe.get("k")
        assert await pipe.exec() == [1, TRICKY]
        assert rest.requests == 3
    finally:
        await client.close()


def test_upstash_wire_format(rest: UpstashRestServer, http: httpx.Client) -> None:
    r = raw_post(http, rest, "/", ["SET", "k", "v\x00"])
    assert r.status_code == 200 and r.json() == {"result": "OK"}
    r = raw_post(http, rest, "/", ["RPUSH", "l", "x", "y"])
    assert r.json() == {"result": 2}  # ints stay ints
    r = raw_post(http, rest, "/", ["LRANGE", "l", 0, -1])  # int arguments are fine
    assert r.json() == {"result": [base64.b64encode(b"x").decode(), "eQ=="]}
    assert raw_post(http, rest, "/", ["GET", "k"], b64=False).json() == {"result": "v\x00"}

    r = raw_post(http, rest, "/", ["INCR", "k"])
    assert r.status_code == 400
    assert r.json() == {"error": "ERR value is not an integer or out of range"}
    r = raw_post(http, rest, "/pipeline", [["GET", "k"], ["NOSUCHCMD"], ["EXISTS", "k"]])
    assert r.status_code == 200
    body = r.json()
    assert body[0] == {"result": "dgA="} and body[2] == {"result": 1}
    assert body[1]["error"].startswith("ERR unknown command")

    # an aborted transaction runs nothing; every entry is an error
    r = raw_post(http, rest, "/multi-exec", [["SET", "k", "new"], ["NOSUCHCMD"]])
    assert [sorted(e) for e in r.json()] == [["error"], ["error"]]
    assert raw_post(http, rest, "/", ["GET", "k"], b64=False).json() == {"result": "v\x00"}

    # path style, and the token as a query parameter
    r = http.get(f"{rest.url}/set/pk/pv?_token={rest.token}")
    assert r.json() == {"result": "OK"}
    assert raw_post(http, rest, "/get/pk", None, b64=False).json() == {"result": "pv"}
    assert ["set", "pk", "pv"] in rest.commands


def test_upstash_bad_token(rest: UpstashRestServer, http: httpx.Client) -> None:
    with (
        upstash_redis.Redis(url=rest.url, token="wrong", rest_retries=0) as wrong,
        pytest.raises(UpstashError, match="Unauthorized"),
    ):
        wrong.get("k")
    r = http.post(rest.url, json=["GET", "k"], headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json() == {"error": "Unauthorized"}

    rest.mode = "bad_token"  # even the right token is rejected (revoked)
    with upstash_redis.Redis(url=rest.url, token=rest.token, rest_retries=0) as right:
        with pytest.raises(UpstashError, match="Unauthorized"):
            right.get("k")
        rest.mode = "ok"
        assert right.get("k") is None


def test_upstash_error_mode(
    rest: UpstashRestServer, client: upstash_redis.Redis, http: httpx.Client
) -> None:
    rest.mode = "error"
    with pytest.raises(UpstashError):
        client.get("k")
    r = raw_post(http, rest, "/", ["GET", "k"])
    assert r.status_code == 500 and "error" in r.json()
    assert rest.requests == 2
    assert rest.commands == []  # nothing reached Redis
    rest.mode = "ok"
    assert client.set("k", "v") is True
    assert rest.requests == 3

    with pytest.raises(ValueError):
        rest.mode = "broken"  # type: ignore[assignment]


def test_upstash_hang_mode(rest: UpstashRestServer, http: httpx.Client) -> None:
    rest.mode = "hang"
    started = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        raw_post(http, rest, "/", ["GET", "k"], timeout=0.2)
    assert time.monotonic() - started < 1.0

    # The SDK's httpx client has timeout=None; it only times out when one is configured on it.
    with upstash_redis.Redis(url=rest.url, token=rest.token, rest_retries=0) as sdk:
        sdk._http._client.timeout = httpx.Timeout(0.2)
        with pytest.raises(httpx.TimeoutException):
            sdk.get("k")

        rest.mode = "ok"  # hanging is over: the server answers again
        assert sdk.get("k") is None


def test_upstash_stop_and_restart_on_same_port(
    rest: UpstashRestServer, client: upstash_redis.Redis
) -> None:
    assert client.set("k", "v") is True
    port = rest.port
    rest.stop()
    started = time.monotonic()
    with pytest.raises(httpx.ConnectError):  # refused: fails in milliseconds
        client.get("k")
    assert time.monotonic() - started < 0.5

    rest.start()
    assert rest.port == port
    assert client.get("k") == "v"


def test_upstash_stop_releases_hanging_requests(
    rest: UpstashRestServer, http: httpx.Client
) -> None:
    rest.mode = "hang"
    with pytest.raises(httpx.TimeoutException):
        raw_post(http, rest, "/", ["GET", "k"], timeout=0.1)
    started = time.monotonic()
    rest.stop()
    assert time.monotonic() - started < 1.0
