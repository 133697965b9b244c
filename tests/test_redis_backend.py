"""The Redis tier on a real redis-server: the contract suite, URLs, the stored form, async.

Cross-process, multi-tenant and outage behaviour of shared tiers is in test_shared_tiers.py.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from llmcache_redis import RedisBackend

import llmcache
from llmcache import BackendError, ConfigError
from llmcache._resilience import unreachable
from tests.backend_contract import CONTRACT_TIMEOUT, SECRET, BackendContract
from tests.servers.redis_server import RedisServer


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    client = server.client()
    yield client
    client.close()


class TestRedisContract(BackendContract):
    @pytest.fixture
    def backend(self, server: RedisServer) -> Iterator[RedisBackend]:
        tier = RedisBackend.from_url(f"{server.url}?{CONTRACT_TIMEOUT}")
        yield tier
        tier.close()

    @pytest.fixture
    def server_pttl(self, raw: redis.Redis) -> Callable[[str], int]:
        return raw.pttl


class TestRedisBase64Contract(BackendContract):
    """The same contract when entries are written in the text form Upstash can read."""

    @pytest.fixture
    def backend(self, server: RedisServer) -> Iterator[RedisBackend]:
        tier = RedisBackend.from_url(f"{server.url}?entry_encoding=base64&{CONTRACT_TIMEOUT}")
        yield tier
        tier.close()

    @pytest.fixture
    def server_pttl(self, raw: redis.Redis) -> Callable[[str], int]:
        return raw.pttl


# -- URLs and registration -------------------------------------------------------------------
def test_registered_for_its_schemes(server: RedisServer) -> None:
    cache = llmcache.Cache(workspace="reg", secret=SECRET, tiers=["memory", server.patient_url])
    try:
        assert isinstance(cache._tiers[0].backend, RedisBackend)
        assert cache._tiers[0].name == f"redis://127.0.0.1:{server.port}/0"
    finally:
        cache.close()


def test_url_options_and_display_name() -> None:
    tier = RedisBackend.from_url(
        "redis://user:hunter2@127.0.0.1:6390/3?timeout=0.2&connect_timeout=0.3"
        "&max_connections=5&client_name=llmc"
    )
    assert tier.name == "redis://127.0.0.1:6390/3"  # no credentials, no options
    assert "hunter2" not in repr(tier) and "hunter2" not in repr(tier.options)
    assert (tier.options.timeout, tier.options.connect_timeout) == (0.2, 0.3)
    assert tier.options.max_connections == 5
    kwargs = tier._redis.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.2
    assert kwargs["client_name"] == "llmc"  # other options reach redis-py untouched
    assert kwargs["retry"].get_retries() == 0  # no retry storm
    tier.close()


def test_fail_fast_defaults() -> None:
    plain = RedisBackend.from_url("redis://127.0.0.1:6390")
    assert plain.options.timeout <= 0.1 and plain.options.connect_timeout <= 0.1
    assert plain.options.base64_entries is False
    tls = RedisBackend.from_url("rediss://default:pw@eu1-x.upstash.io:6379")
    assert tls.options.tls and tls.options.timeout <= 0.5
    assert tls.options.base64_entries is True  # Upstash may be read over REST too
    plain.close()
    tls.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/zero",
        "redis://127.0.0.1:6379/0?timeout=soon",
        "redis://127.0.0.1:6379/0?timeout=-1",
        "redis://127.0.0.1:6379/0?entry_encoding=rot13",
        "redis://127.0.0.1:port/0",
    ],
)
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        RedisBackend.from_url(url)


def test_down_server_fails_fast_with_backend_error() -> None:
    tier = RedisBackend.from_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        with pytest.raises(BackendError, match=re.escape("redis://127.0.0.1:1/0")):
            tier.get("k")
        with pytest.raises(BackendError):
            asyncio.run(tier.aget("k"))
    finally:
        tier.close()


# The same list is in tests/test_upstash_backend.py, for the other adapter: a tier's operations
# are the Backend contract's, and each adapter has its own error translation to check.
# Every operation of the tier, as (name, call): each must run inside the adapter's one
# error translation.
SYNC_OPERATIONS: list[tuple[str, Any]] = [
    ("get", lambda t: t.get("llmc:k")),
    ("get_many", lambda t: t.get_many(["llmc:k", "llmc:j"])),
    ("set", lambda t: t.set("llmc:k", b"v", None)),
    ("set_ttl", lambda t: t.set("llmc:k", b"v", 5)),
    ("delete", lambda t: t.delete("llmc:k")),
    ("delete_prefix", lambda t: t.delete_prefix("llmc:")),
    ("incr_counters", lambda t: t.incr_counters("llmc:c", {"a": 1})),
    ("read_counters", lambda t: t.read_counters("llmc:c")),
    ("try_lock", lambda t: t.try_lock("llmc:lock", 5)),
    ("unlock", lambda t: t.unlock("llmc:lock", "token")),
    ("renew_lock", lambda t: t.renew_lock("llmc:lock", "token", 5)),
    ("describe", lambda t: t.describe()),
    ("ping", lambda t: t.ping()),
]
ASYNC_OPERATIONS: list[tuple[str, Any]] = [
    ("aget", lambda t: t.aget("llmc:k")),
    ("aget_many", lambda t: t.aget_many(["llmc:k", "llmc:j"])),
    ("aset", lambda t: t.aset("llmc:k", b"v", 5)),
    ("adelete", lambda t: t.adelete("llmc:k")),
    ("atry_lock", lambda t: t.atry_lock("llmc:lock", 5)),
    ("aunlock", lambda t: t.aunlock("llmc:lock", "token")),
]


def test_every_operation_on_a_down_server_is_an_unreachable_backend_error() -> None:
    """redis-py's ConnectionError stays the cause: the breakers read it to tell a tier that
    cannot be reached (both directions stop) from one refusing one operation."""
    tier = RedisBackend.from_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
    failures: dict[str, BaseException] = {}
    try:
        for name, call in SYNC_OPERATIONS:
            with pytest.raises(BackendError, match=re.escape("redis://127.0.0.1:1/0")) as info:
                call(tier)
            failures[name] = info.value
        for name, call in ASYNC_OPERATIONS:
            with pytest.raises(BackendError, match=re.escape("redis://127.0.0.1:1/0")) as info:
                asyncio.run(call(tier))
            failures[name] = info.value
    finally:
        tier.close()
    assert len(failures) == len(SYNC_OPERATIONS) + len(ASYNC_OPERATIONS)
    for name, error in failures.items():
        assert isinstance(error.__cause__, redis.ConnectionError), name
        assert unreachable(error), name


def test_a_refused_operation_is_a_backend_error_that_leaves_the_tier_reachable(
    server: RedisServer, raw: redis.Redis
) -> None:
    """A server's refusal (here WRONGTYPE) is translated too, with its own cause, and does not
    read as an unreachable tier."""
    raw.set("llmc:not-a-hash", b"text")
    tier = RedisBackend.from_url(server.patient_url)
    try:
        with pytest.raises(BackendError, match="WRONGTYPE") as info:
            tier.read_counters("llmc:not-a-hash")
        assert isinstance(info.value.__cause__, redis.ResponseError)
        assert not unreachable(info.value)
        assert tier.get("llmc:not-a-hash") == b"text"  # the hit path's connection is fine
    finally:
        tier.close()
        raw.delete("llmc:not-a-hash")


def test_an_error_that_is_not_the_clients_passes_through(server: RedisServer) -> None:
    """Only redis-py's errors become BackendError: a bug in our own code stays visible."""
    tier = RedisBackend.from_url(server.patient_url)
    try:
        with pytest.raises(ValueError, match="could not convert"):
            tier.incr_counters("llmc:c", {"a": "x"})  # type: ignore[dict-item]
    finally:
        tier.close()


# -- the hit path's connection stack --------------------------------------------------------------
def test_idle_connections_past_the_cap_are_closed_on_release(
    server: RedisServer, raw: redis.Redis
) -> None:
    tier = RedisBackend.from_url(server.patient_url + "&max_connections=3")
    stack = tier._connections
    assert stack is not None
    try:
        # A burst: eight connections in use at once, each connected by a command.
        burst = [stack.acquire() for _ in range(8)]
        ids = []
        for connection in burst:
            connection.send_command("CLIENT", "ID")
            ids.append(connection.read_response())
        for connection in burst:
            stack.release(connection)
        assert len(stack._idle) == 3
        kept = {id(connection) for connection, _ in stack._idle}
        closed = [c for c in burst if id(c) not in kept]
        assert len(closed) == 5
        assert all(c._sock is None for c in closed)  # disconnected, not left to the GC
        assert all(c._sock is not None for c in burst if id(c) in kept)
        # The server sees the five go (it notices a closed socket on its next loop turn).
        closed_ids = {ids[burst.index(c)] for c in closed}
        kept_ids = set(ids) - closed_ids
        for _ in range(500):
            listed = {int(client["id"]) for client in raw.client_list()}
            if not closed_ids & listed:
                break
            threading.Event().wait(0.01)
        assert not closed_ids & listed
        assert kept_ids <= listed
        # The kept ones serve the next operations, and the stack stays within its cap.
        tier.set("llmc:cap", b"v", 30)
        for _ in range(10):
            assert tier.get("llmc:cap") == b"v"
        assert len(stack._idle) == 3
    finally:
        tier.close()
    assert stack._idle == type(stack._idle)()  # close() disconnected and dropped them


def test_the_default_cap_is_the_pool_size_option(server: RedisServer) -> None:
    tier = RedisBackend.from_url(server.patient_url)
    try:
        assert tier._connections is not None
        assert tier._connections._max_idle == tier.options.max_connections == 64
    finally:
        tier.close()


def test_describe_and_ping(server: RedisServer) -> None:
    tier = RedisBackend.from_url(server.patient_url)
    try:
        tier.ping()
        facts = tier.describe()
        assert facts["redis_version"] and facts["mode"] == "standalone"
        assert facts["parser"] == "hiredis"
        assert facts["location"] == tier.name
    finally:
        tier.close()


# -- what is stored -----------------------------------------------------------------------------
def test_binary_by_default_and_text_form_on_request(server: RedisServer, raw: redis.Redis) -> None:
    binary = RedisBackend.from_url(server.patient_url)
    text = RedisBackend.from_url(server.patient_url + "&entry_encoding=base64")
    try:
        binary.set("llmc:form:bin", b"\x01\x00raw", 60)
        text.set("llmc:form:txt", b"\x01\x00raw", 60)
        assert raw.get("llmc:form:bin") == b"\x01\x00raw"
        assert raw.get("llmc:form:txt") == b"b64:AQByYXc="
        for reader in (binary, text):  # each reads both forms
            assert reader.get_many(["llmc:form:bin", "llmc:form:txt"]) == [b"\x01\x00raw"] * 2
        # A raw value that looks like the text form is stored in the text form: exact reads.
        binary.set("llmc:form:tricky", b"b64:AQByYXc=", 60)
        assert binary.get("llmc:form:tricky") == b"b64:AQByYXc="
        # Damaged text is handed on as is (the core's MAC check counts it), not an error.
        raw.set("llmc:form:damaged", b"b64:AQByY")
        assert binary.get("llmc:form:damaged") == b"b64:AQByY"
    finally:
        binary.close()
        text.close()


def test_ttl_is_set_in_milliseconds(server: RedisServer, raw: redis.Redis) -> None:
    tier = RedisBackend.from_url(server.patient_url)
    try:
        tier.set("llmc:ttl:ms", b"v", 1.5)
        assert 1400 <= raw.pttl("llmc:ttl:ms") <= 1500
        tier.set("llmc:ttl:none", b"v", None)
        assert raw.pttl("llmc:ttl:none") == -1
    finally:
        tier.close()


def test_delete_prefix_treats_glob_characters_literally(
    server: RedisServer, raw: redis.Redis
) -> None:
    tier = RedisBackend.from_url(server.patient_url)
    try:
        for key in ("glob*[a]?:1", "glob*[a]?:2", "globX[a]?:1", "glob*a?:1", "glob*[a]!:1"):
            raw.set(key, b"v")
        assert tier.delete_prefix("glob*[a]?:") == 2
        assert sorted(raw.keys("glob*")) == [b"glob*[a]!:1", b"glob*a?:1", b"globX[a]?:1"]
        with pytest.raises(ValueError):
            tier.delete_prefix("")
    finally:
        tier.close()


def test_delete_prefix_in_batches(server: RedisServer, raw: redis.Redis) -> None:
    tier = RedisBackend.from_url(server.patient_url)
    try:
        raw.mset({f"llmc:batch:{i}": b"v" for i in range(2500)})
        raw.set("llmc:batchX", b"keep")
        assert tier.delete_prefix("llmc:batch:") == 2500
        assert raw.get("llmc:batchX") == b"keep"
    finally:
        tier.close()


def test_unlock_only_with_the_holders_token(server: RedisServer, raw: redis.Redis) -> None:
    tier = RedisBackend.from_url(server.patient_url)
    try:
        token = tier.try_lock("llmc:lock:x", 5)
        assert token is not None and raw.get("llmc:lock:x") == token.encode()
        raw.set("llmc:lock:x", b"someone-else", px=5000)  # ours expired and was retaken
        tier.unlock("llmc:lock:x", token)
        assert raw.get("llmc:lock:x") == b"someone-else"
    finally:
        tier.close()


# -- asyncio --------------------------------------------------------------------------------------
def test_async_from_several_loops_and_threads(server: RedisServer) -> None:
    """The same backend from asyncio.run twice, and from loops in other threads at once."""
    tier = RedisBackend.from_url(server.patient_url)
    errors: list[BaseException] = []

    async def work(tag: str) -> None:
        await tier.aset(f"llmc:loops:{tag}", tag.encode(), 30)
        assert await tier.aget(f"llmc:loops:{tag}") == tag.encode()
        token = await tier.atry_lock(f"llmc:loops:{tag}:lock", 5)
        assert token is not None
        assert await tier.atry_lock(f"llmc:loops:{tag}:lock", 5) is None
        await tier.aunlock(f"llmc:loops:{tag}:lock", token)
        await tier.adelete(f"llmc:loops:{tag}")
        assert await tier.aget_many([f"llmc:loops:{tag}"]) == [None]

    def in_thread(tag: str) -> None:
        try:
            asyncio.run(work(tag))
        except BaseException as error:
            errors.append(error)

    try:
        asyncio.run(work("first"))
        assert tier._async.clients == {}  # closed when its loop shut down
        asyncio.run(work("second"))
        threads = [threading.Thread(target=in_thread, args=(f"t{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert tier._async.clients == {}
    finally:
        tier.close()


def test_aclose_and_close_release_async_clients(server: RedisServer) -> None:
    tier = RedisBackend.from_url(server.patient_url)

    async def scenario() -> Any:
        await tier.aset("llmc:aclose", b"v", 30)
        client = tier._async.clients[asyncio.get_running_loop()]
        await tier.aclose()
        return client

    client = asyncio.run(scenario())
    assert client.connection_pool._in_use_connections == set()
    assert tier._async.clients == {}
    with pytest.raises(BackendError, match="closed"):
        tier.get("llmc:aclose")


def test_async_cache_hits_through_redis(server: RedisServer) -> None:
    cache = llmcache.Cache(workspace="asynchits", secret=SECRET, tiers=[server.patient_url])
    calls: list[str] = []

    @cache.cached(namespace="a")
    async def ask(question: str) -> str:
        calls.append(question)
        return question[::-1]

    async def scenario() -> list[str]:
        return await asyncio.gather(*(ask(f"q{i % 5}") for i in range(50)))

    try:
        first = asyncio.run(scenario())
        second = asyncio.run(scenario())  # a new loop: a new asyncio client, same entries
        assert first == second == [f"q{i % 5}"[::-1] for i in range(50)]
        assert sorted(calls) == [f"q{i}" for i in range(5)]
        assert cache._tiers[0].counters.hits >= 50
        assert cache._tiers[0].counters.errors == 0
    finally:
        cache.close()


def test_missing_client_library_names_the_extra_to_install() -> None:
    """Without redis-py (or upstash-redis) a tier URL says which extra to install."""
    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in ("redis", "upstash_redis"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
import llmcache
for url in ("redis://127.0.0.1:6379", "redis+cluster://127.0.0.1:7000", "upstash://t@h"):
    try:
        llmcache.Cache(workspace="w", secret="x" * 32, tiers=[url])
    except llmcache.MissingDependencyError as error:
        print(error)
"""
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    lines = completed.stdout.splitlines()
    assert len(lines) == 3, completed.stdout + completed.stderr
    assert "pip install 'llmcache[redis]'" in lines[0] and "redis-py" in lines[0]
    assert "pip install 'llmcache[redis]'" in lines[1]
    assert "pip install 'llmcache[upstash]'" in lines[2]
