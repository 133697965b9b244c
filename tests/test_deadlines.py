"""Every tier operation ends within its deadline, whatever the server does (issue 9 item 7,
issue 15 item 4).

A real redis-server (and the Upstash REST test server in front of it) is reached through
`DripProxy`, which forwards replies one byte every 50 ms (no single socket read waits long,
so a timeout per read never trips) or accepts connections and never answers (a hang, a
SIGSTOP, a CLIENT PAUSE). Each operation must come back as a miss, a queued write or
FAILED within the configured deadline (`timeout`, plus `connect_timeout` when it opens a
connection) and a margin for a busy machine, and a cached call must return its result,
never an exception.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from llmcache_redis import RedisBackend
from llmcache_upstash import UpstashBackend

import llmcache
from llmcache._resilience import FAILED, GuardedTier
from tests.servers.drip_proxy import DripProxy
from tests.servers.redis_server import RedisServer
from tests.servers.upstash_rest import UpstashRestServer

SECRET = "deadline-secret-0123456789abcdef"
TIMEOUT = 0.1
CONNECT_TIMEOUT = 0.1
DEADLINE = TIMEOUT + CONNECT_TIMEOUT  # the longest one operation may take
MARGIN = 0.5  # scheduling on a busy machine, not part of the promise
BIG = b"v" * 2000  # dripped at 50 ms a byte, its reply alone would take 100 s


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


@pytest.fixture(scope="module")
def rest(server: RedisServer) -> Iterator[UpstashRestServer]:
    with UpstashRestServer(server.url) as started:
        yield started


def redis_url(port: int) -> str:
    return (
        f"redis://127.0.0.1:{port}/0?timeout={TIMEOUT}&connect_timeout={CONNECT_TIMEOUT}"
        f"&async_timeout={TIMEOUT}&async_connect_timeout={CONNECT_TIMEOUT}"
    )


def upstash_url(rest: UpstashRestServer, port: int) -> str:
    return (
        f"upstash://{rest.token}@127.0.0.1:{port}?tls=0&timeout={TIMEOUT}"
        f"&connect_timeout={CONNECT_TIMEOUT}"
    )


@pytest.fixture(params=["redis", "upstash"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# One byte per interval: each read waits less than a per-read timeout would allow, yet even
# the shortest reply (":0\r\n", 4 bytes, 3 intervals) takes longer than a deadline.
DRIP_INTERVAL = TIMEOUT / 2


@pytest.fixture
def proxy(kind: str, server: RedisServer, rest: UpstashRestServer) -> Iterator[DripProxy]:
    target = server.port if kind == "redis" else rest.port
    with DripProxy(target, drip_interval=DRIP_INTERVAL) as started:
        yield started


def tier_url(kind: str, proxy: DripProxy, rest: UpstashRestServer) -> str:
    return redis_url(proxy.port) if kind == "redis" else upstash_url(rest, proxy.port)


def make_backend(url: str) -> Any:
    return RedisBackend.from_url(url) if url.startswith("redis") else UpstashBackend.from_url(url)


def finishes_within(seconds: float, work: Callable[[], object]) -> tuple[bool, object, float]:
    """Run `work` in a thread; (finished in time, its result, seconds taken). A call that
    never returns (the bug) fails the test at once instead of blocking the suite."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as error:  # the caller must never see one: record it
            outcome.append(error)

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    return (not worker.is_alive(), outcome[0] if outcome else None, time.monotonic() - started)


def seeded(backend: Any) -> None:
    """Data whose replies are long: a dripped reply of any of them takes a minute."""
    backend.set("llmc:deadline:big", BIG, 60)
    backend.delete("llmc:deadline:hash")
    backend.incr_counters("llmc:deadline:hash", {f"field-{i:04d}": i for i in range(100)})


def sync_operations(tier: GuardedTier) -> dict[str, Callable[[], object]]:
    return {
        "get": lambda: tier.get("llmc:deadline:big"),
        "get_many": lambda: tier.call("get_many", ["llmc:deadline:big", "llmc:deadline:big"]),
        "read_counters": lambda: tier.call("read_counters", "llmc:deadline:hash"),
        "set": lambda: tier.set("llmc:deadline:new", b"x" * 100, 60),
        "incr_counters": lambda: tier.call("incr_counters", "llmc:deadline:hash", {"a": 1}),
        "try_lock": lambda: tier.call("try_lock", "llmc:deadline:lock", 5.0),
        "unlock": lambda: tier.call("unlock", "llmc:deadline:lock", "token"),
        "delete": lambda: tier.call("delete", "llmc:deadline:new"),
    }


FAILED_RESULT = {"get": None, "set": False}


def closed_again(tier: GuardedTier) -> int:
    """Close both breakers (a timeout opens them at once), so that the next operation really
    reaches the slow server; the tier's error count, to check that it did."""
    tier.reads.succeeded()
    tier.writes.succeeded()
    return tier.counters.errors


@pytest.mark.parametrize("mode", ["drip", "hang"])
def test_every_sync_operation_ends_within_its_deadline(
    kind: str, proxy: DripProxy, rest: UpstashRestServer, mode: str
) -> None:
    backend = make_backend(tier_url(kind, proxy, rest))
    seeded(backend)
    tier = GuardedTier(backend)
    proxy.mode = mode  # type: ignore[assignment]
    try:
        for name, operation in sync_operations(tier).items():
            errors = closed_again(tier)
            done, result, took = finishes_within(DEADLINE + MARGIN, operation)
            assert done, f"{kind} {name} still blocked after {took:.2f}s ({mode})"
            assert result is FAILED_RESULT.get(name, FAILED), (name, result)
            assert took < DEADLINE + MARGIN, (name, took)
            assert tier.counters.errors == errors + 1, name  # it reached the server
        assert tier.queued_writes == 1  # the failed set waits for the tier to come back
    finally:
        proxy.mode = "pass"
    # No connection that missed its deadline is reused: its half-read reply would answer
    # the next command.
    assert backend.get("llmc:deadline:big") == BIG
    assert backend.read_counters("llmc:deadline:hash")["field-0099"] == 99
    backend.close()


@pytest.mark.parametrize("mode", ["drip", "hang"])
def test_every_async_operation_ends_within_its_deadline(
    kind: str, proxy: DripProxy, rest: UpstashRestServer, mode: str
) -> None:
    backend = make_backend(tier_url(kind, proxy, rest))
    seeded(backend)
    tier = GuardedTier(backend)

    async def scenario() -> dict[str, tuple[object, float]]:
        operations = {
            "aget": lambda: tier.aget("llmc:deadline:big"),
            "aset": lambda: tier.aset("llmc:deadline:new", b"x" * 100, 60),
            "atry_lock": lambda: tier.acall("try_lock", "llmc:deadline:lock", 5.0),
            "aunlock": lambda: tier.acall("unlock", "llmc:deadline:lock", "token"),
            "aget_many": lambda: tier.acall("get_many", ["llmc:deadline:big"]),
            "adelete": lambda: tier.acall("delete", "llmc:deadline:new"),
        }
        timings = {}
        for name, operation in operations.items():
            errors = closed_again(tier)
            started = time.monotonic()
            result = await operation()
            timings[name] = (result, time.monotonic() - started)
            assert tier.counters.errors == errors + 1, name  # it reached the server
        # Many at once share the pool: waiting for a connection counts in the deadline.
        closed_again(tier)
        started = time.monotonic()
        results = await asyncio.gather(*(tier.aget("llmc:deadline:big") for _ in range(100)))
        timings["100 concurrent aget"] = (
            all(result is None for result in results),
            time.monotonic() - started,
        )
        await backend.aclose()
        return timings

    proxy.mode = mode  # type: ignore[assignment]
    try:
        done, timings, took = finishes_within(
            8 * (DEADLINE + MARGIN), lambda: asyncio.run(scenario())
        )
        assert done and isinstance(timings, dict), (took, timings)
    finally:
        proxy.mode = "pass"
    expected = {"aget": None, "aset": False, "100 concurrent aget": True}
    for name, (result, seconds) in timings.items():
        assert result is expected.get(name, FAILED), (name, result)
        assert seconds < DEADLINE + MARGIN, (kind, mode, name, seconds)
    fresh = make_backend(tier_url(kind, proxy, rest))
    assert asyncio.run(fresh.aget("llmc:deadline:big")) == BIG
    fresh.close()


@pytest.mark.parametrize("mode", ["drip", "hang"])
def test_cached_calls_return_their_result_within_the_deadlines(
    kind: str, proxy: DripProxy, rest: UpstashRestServer, mode: str
) -> None:
    """Through the public API, sync and async, first namespace load included: the caller
    gets its answer, never an exception, after at most a few deadlines (until the
    breakers open, one per tier operation of a miss)."""
    cache = llmcache.Cache(
        workspace=f"deadline-{kind}-{mode}", secret=SECRET, tiers=[tier_url(kind, proxy, rest)]
    )
    real_calls: list[str] = []

    @cache.cached(namespace="n")
    def ask(question: str) -> str:
        real_calls.append(question)
        return question.upper() + "!" * 2000

    @cache.cached(namespace="a")
    async def aask(question: str) -> str:
        real_calls.append(question)
        return question.upper() + "?" * 2000

    try:
        assert ask("seeded").startswith("SEEDED")
        asyncio.run(aask("seeded"))
        proxy.mode = mode  # type: ignore[assignment]
        budget = 8 * DEADLINE + 2 * MARGIN
        for question in ("seeded", "new one"):
            done, result, took = finishes_within(budget, lambda q=question: ask(q))  # type: ignore[misc]
            assert done, f"{question!r} still blocked after {took:.2f}s"
            assert result == question.upper() + "!" * 2000, result
            done, result, took = finishes_within(
                budget,
                lambda q=question: asyncio.run(aask(q)),  # type: ignore[misc]
            )
            assert done, f"async {question!r} still blocked after {took:.2f}s"
            assert result == question.upper() + "?" * 2000, result
    finally:
        proxy.mode = "pass"
        cache.close()
