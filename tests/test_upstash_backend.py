"""The Upstash tier through the real upstash-redis SDK, against a local REST endpoint that
forwards to a real redis-server: contract suite, URLs, the text form read by both adapters,
and an endpoint that errors, hangs or refuses the token."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator

import pytest
from llmcache_redis import RedisBackend
from llmcache_upstash import UpstashBackend

import llmcache
from llmcache import BackendError, ConfigError
from llmcache._resilience import unreachable
from tests.backend_contract import CONTRACT_TIMEOUT, SECRET, BackendContract
from tests.clocks import wait_until
from tests.servers.redis_server import RedisServer
from tests.servers.upstash_rest import UpstashRestServer


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


@pytest.fixture(scope="module")
def rest_server(server: RedisServer) -> Iterator[UpstashRestServer]:
    with UpstashRestServer(server.url) as started:
        yield started


@pytest.fixture
def rest(rest_server: UpstashRestServer) -> Iterator[UpstashRestServer]:
    rest_server.reset()
    yield rest_server
    rest_server.reset()


def upstash_url(rest: UpstashRestServer, **options: str) -> str:
    query = "&".join(["tls=0", *(f"{k}={v}" for k, v in options.items())])
    return f"upstash://{rest.token}@127.0.0.1:{rest.port}?{query}"


@pytest.fixture
def tier(rest: UpstashRestServer) -> Iterator[UpstashBackend]:
    backend = UpstashBackend.from_url(upstash_url(rest))
    yield backend
    backend.close()


class TestUpstashContract(BackendContract):
    @pytest.fixture
    def backend(self, rest: UpstashRestServer) -> Iterator[UpstashBackend]:
        backend = UpstashBackend.from_url(f"{upstash_url(rest)}&{CONTRACT_TIMEOUT}")
        yield backend
        backend.close()

    @pytest.fixture
    def server_pttl(self, server: RedisServer) -> Iterator[Callable[[str], int]]:
        client = server.client()  # the redis-server behind the REST endpoint
        yield client.pttl
        client.close()


# -- URLs ---------------------------------------------------------------------------------------
def test_url_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    tier = UpstashBackend.from_url("upstash://s3cr%3Dt@eu1-x.upstash.io")
    assert (tier.endpoint, tier._token) == ("https://eu1-x.upstash.io", "s3cr=t")
    assert tier.name == "upstash://eu1-x.upstash.io" and "s3cr" not in repr(tier)
    tier.close()
    tier = UpstashBackend.from_url("upstash://default:tok@127.0.0.1:8080?tls=0&timeout=0.1")
    assert (tier.endpoint, tier._token, tier.timeout) == ("http://127.0.0.1:8080", "tok", 0.1)
    assert tier._client._http._client.timeout.read == 0.1  # the SDK's httpx client
    tier.close()
    monkeypatch.setenv("UPSTASH_REDIS_REST_URL", "https://env-db.upstash.io/")
    monkeypatch.setenv("UPSTASH_REDIS_REST_TOKEN", "env-token")
    tier = UpstashBackend.from_url("upstash://")
    assert (tier.endpoint, tier._token) == ("https://env-db.upstash.io", "env-token")
    tier.close()
    cache = llmcache.Cache(workspace="envs", secret=SECRET, tiers=["upstash"])  # bare scheme
    assert isinstance(cache._tiers[0].backend, UpstashBackend)
    cache.close()


@pytest.mark.parametrize(
    "url",
    [
        "upstash://",  # no env either
        "upstash://127.0.0.1:8080",  # no token
        "upstash://t@127.0.0.1:8080?tls=maybe",
        "upstash://t@127.0.0.1:8080?timeout=0",
        "upstash://t@127.0.0.1:8080?retries=3",
    ],
)
def test_bad_urls_are_config_errors(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPSTASH_REDIS_REST_URL", raising=False)
    monkeypatch.delenv("UPSTASH_REDIS_REST_TOKEN", raising=False)
    with pytest.raises(ConfigError):
        UpstashBackend.from_url(url)


def test_sdk_is_configured_to_fail_fast(tier: UpstashBackend) -> None:
    http = tier._client._http
    assert http._retries == 0
    assert http._client.timeout.connect == 0.5 and http._client.timeout.read == 0.25


def test_describe_and_ping(tier: UpstashBackend) -> None:
    tier.ping()
    assert tier.describe()["server"] == "upstash"


# -- the stored form, shared with the Redis adapter --------------------------------------------
def test_entries_are_text_and_readable_by_the_redis_adapter(
    server: RedisServer, rest: UpstashRestServer, tier: UpstashBackend
) -> None:
    payload = bytes(range(256))
    tier.set("llmc:x:upstash-wrote", payload, 60)
    raw = server.client()
    try:
        stored = raw.get("llmc:x:upstash-wrote")
        assert stored is not None and stored.startswith(b"b64:") and stored.isascii()
    finally:
        raw.close()
    for url in (server.url, server.url + "?entry_encoding=base64"):
        reader = RedisBackend.from_url(url)
        assert reader.get("llmc:x:upstash-wrote") == payload
        reader.close()


def test_redis_adapter_text_entries_are_readable_over_rest(
    server: RedisServer, tier: UpstashBackend
) -> None:
    writer = RedisBackend.from_url(server.url + "?entry_encoding=base64")
    payload = bytes(range(255, -1, -1))
    writer.set("llmc:x:redis-wrote", payload, 60)
    writer.close()
    assert tier.get("llmc:x:redis-wrote") == payload


def test_one_cache_entry_shared_by_redis_and_upstash_clients(
    server: RedisServer, rest: UpstashRestServer
) -> None:
    """A process on REST and one on the Redis protocol, same database: hits both ways."""
    calls: list[str] = []

    def make(tier_url: str) -> tuple[llmcache.Cache, object]:
        cache = llmcache.Cache(workspace="mixed", secret=SECRET, tiers=[tier_url])

        @cache.cached(namespace="n")
        def ask(question: str) -> dict[str, str]:
            calls.append(question)
            return {"answer": question * 2}

        return cache, ask

    over_rest, ask_rest = make(upstash_url(rest, timeout="5", connect_timeout="5"))
    over_redis, ask_redis = make(server.patient_url + "&entry_encoding=base64")
    try:
        assert ask_rest("a") == {"answer": "aa"}  # type: ignore[operator]
        assert ask_redis("a") == {"answer": "aa"}  # type: ignore[operator]
        assert ask_redis("b") == {"answer": "bb"}  # type: ignore[operator]
        assert ask_rest("b") == {"answer": "bb"}  # type: ignore[operator]
        assert calls == ["a", "b"]
        assert over_rest._tiers[0].counters.hits == 1 and over_redis._tiers[0].counters.hits == 1
    finally:
        over_rest.close()
        over_redis.close()


def test_binary_entry_from_a_redis_client_is_a_counted_miss_over_rest(
    server: RedisServer, rest: UpstashRestServer
) -> None:
    """A raw (binary) entry cannot cross the text-only REST API: a counted miss, no error."""
    binary_cache = llmcache.Cache(workspace="bin", secret=SECRET, tiers=[server.patient_url])
    rest_cache = llmcache.Cache(
        workspace="bin", secret=SECRET, tiers=[upstash_url(rest, timeout="5", connect_timeout="5")]
    )
    calls: list[int] = []

    def ask(n: int) -> list[int]:
        calls.append(n)
        return [n, n]

    binary_ask = binary_cache.cached(namespace="n")(ask)
    rest_ask = rest_cache.cached(namespace="n")(ask)
    try:
        assert binary_ask(1) == [1, 1]
        assert rest_ask(1) == [1, 1]
        assert calls == [1, 1]
        assert rest_cache._tiers[0].counters.integrity_failures == 1
        assert rest_cache._tiers[0].counters.errors == 0
    finally:
        binary_cache.close()
        rest_cache.close()


def test_several_commands_use_one_request(rest: UpstashRestServer, tier: UpstashBackend) -> None:
    tier.set("llmc:x:m1", b"1", 60)
    rest.reset()
    assert tier.get_many(["llmc:x:m1", "llmc:x:m2"]) == [b"1", None]
    tier.incr_counters("llmc-ledger:x", {"a": 1, "b": 2.5, "c": 3})
    assert rest.requests == 2  # one MGET, one /multi-exec
    assert tier.read_counters("llmc-ledger:x") == {"a": 1.0, "b": 2.5, "c": 3.0}


# -- a failing endpoint: fail open, fast ---------------------------------------------------
@pytest.mark.parametrize("mode", ["error", "hang", "bad_token"])
def test_failing_endpoint_fails_open_and_fast(rest: UpstashRestServer, mode: str) -> None:
    cache = llmcache.Cache(workspace=f"fail-{mode}", secret=SECRET, tiers=[upstash_url(rest)])
    calls: list[str] = []

    @cache.cached(namespace="n")
    def ask(question: str) -> str:
        calls.append(question)
        return question.upper()

    try:
        assert ask("warm") == "WARM"
        rest.mode = mode  # type: ignore[assignment]
        durations = []
        for i in range(6):
            started = time.perf_counter()
            assert ask(f"q{i}") == f"Q{i}"
            assert ask("warm") == "WARM"  # the old entry is not reachable: recomputed
            durations.append(time.perf_counter() - started)
        assert max(durations) < 1.0, durations
        assert sum(durations[3:]) < 0.2, durations  # breaker open: no I/O (a hang is 0.25 s)
        health = {t.name: t for t in cache.health().tiers}[cache._tiers[0].name]
        # A timeout opens the breaker at once (one deadline paid); fast failures take three.
        assert health.state == "open" and health.errors >= (1 if mode == "hang" else 3)
        assert health.last_error and "BackendError" in health.last_error
        assert health.queued_writes > 0  # results paid for while down, kept for later

        rest.mode = "ok"
        # The breaker's cooldown is real time (monotonic): the probe is due when it is over.
        wait_until(lambda: cache._tiers[0].state == "half-open", 5, "the cooldown over")
        assert ask("q5") == "Q5"  # a probe: the tier works again and the queue is replayed
        wait_until(lambda: not cache._tiers[0].queued_writes, 5, "the queue replayed")
        assert cache._tiers[0].state == "closed" and cache._tiers[0].queued_writes == 0
        before = len(calls)
        assert ask("q0") == "Q0"  # written while the endpoint was failing
        assert len(calls) == before
    finally:
        rest.mode = "ok"
        cache.close()


def test_hanging_endpoint_async_fails_open_fast(rest: UpstashRestServer) -> None:
    cache = llmcache.Cache(workspace="async-hang", secret=SECRET, tiers=[upstash_url(rest)])

    @cache.cached(namespace="n")
    async def ask(question: str) -> str:
        return question.upper()

    async def scenario() -> float:
        rest.mode = "hang"
        started = time.perf_counter()
        results = await asyncio.gather(*(ask(f"q{i}") for i in range(20)))
        assert results == [f"Q{i}" for i in range(20)]
        return time.perf_counter() - started

    try:
        assert asyncio.run(scenario()) < 1.0
        assert cache._tiers[0].counters.errors >= 1
    finally:
        rest.mode = "ok"
        cache.close()


def test_async_methods_from_two_loops(tier: UpstashBackend) -> None:
    async def scenario(tag: str) -> None:
        await tier.aset(f"llmc:x:{tag}", tag.encode(), 30)
        assert await tier.aget_many([f"llmc:x:{tag}", "llmc:x:none"]) == [tag.encode(), None]
        token = await tier.atry_lock(f"llmc:x:{tag}:lock", 5)
        assert token and await tier.atry_lock(f"llmc:x:{tag}:lock", 5) is None
        await tier.aunlock(f"llmc:x:{tag}:lock", token)
        assert await tier.atry_lock(f"llmc:x:{tag}:lock", 5)

    asyncio.run(scenario("one"))
    asyncio.run(scenario("two"))
    assert tier._async.clients == {}


def test_errors_are_backend_errors(rest: UpstashRestServer, tier: UpstashBackend) -> None:
    rest.mode = "bad_token"
    with pytest.raises(BackendError, match=re.escape("upstash://127.0.0.1")):
        tier.get("k")
    with pytest.raises(BackendError):
        tier.incr_counters("k", {"a": 1})  # a /multi-exec answered with a non-list body
    rest.mode = "ok"


# The same list is in tests/test_redis_backend.py, for the other adapter: a tier's operations
# are the Backend contract's, and each adapter has its own error translation to check.
# Every operation of the tier, as (name, call): each must run inside the adapter's one error
# translation.
SYNC_OPERATIONS = [
    ("get", lambda t: t.get("llmc:k")),
    ("get_many", lambda t: t.get_many(["llmc:k", "llmc:j"])),
    ("set", lambda t: t.set("llmc:k", b"v", 5)),
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
ASYNC_OPERATIONS = [
    ("aget", lambda t: t.aget("llmc:k")),
    ("aget_many", lambda t: t.aget_many(["llmc:k", "llmc:j"])),
    ("aset", lambda t: t.aset("llmc:k", b"v", 5)),
    ("adelete", lambda t: t.adelete("llmc:k")),
    ("atry_lock", lambda t: t.atry_lock("llmc:lock", 5)),
    ("aunlock", lambda t: t.aunlock("llmc:lock", "token")),
]


def _failures(tier: UpstashBackend) -> dict[str, BackendError]:
    failures: dict[str, BackendError] = {}
    for name, call in SYNC_OPERATIONS:
        with pytest.raises(BackendError, match=re.escape(tier.name)) as info:
            call(tier)
        failures[name] = info.value
    for name, call in ASYNC_OPERATIONS:
        with pytest.raises(BackendError, match=re.escape(tier.name)) as info:
            asyncio.run(call(tier))
        failures[name] = info.value
    return failures


def test_every_operation_on_a_refused_connection_is_an_unreachable_backend_error() -> None:
    """httpx's ConnectError stays the cause: the breakers read it to tell a tier that cannot
    be reached (both directions stop) from one refusing one operation."""
    tier = UpstashBackend.from_url("upstash://tok@127.0.0.1:1?tls=0")  # nothing listens there
    try:
        failures = _failures(tier)
    finally:
        tier.close()
    assert len(failures) == len(SYNC_OPERATIONS) + len(ASYNC_OPERATIONS)
    for name, error in failures.items():
        assert type(error.__cause__).__name__ == "ConnectError", name
        assert unreachable(error), name


def test_every_operation_the_endpoint_refuses_is_a_backend_error_of_a_reachable_tier(
    rest: UpstashRestServer, tier: UpstashBackend
) -> None:
    rest.mode = "error"  # every request answered 500 with an error body
    try:
        failures = _failures(tier)
    finally:
        rest.mode = "ok"
    assert len(failures) == len(SYNC_OPERATIONS) + len(ASYNC_OPERATIONS)
    for name, error in failures.items():
        assert error.__cause__ is not None, name
        assert not unreachable(error), name
    assert tier.get("llmc:k") is None  # the tier serves again once the endpoint does
