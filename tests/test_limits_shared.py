"""Rate limits through shared tiers: processes hammering one limit on a real redis-server,
a Redis Cluster and the Upstash REST endpoint never exceed it over any window (measured from
the fake provider's request log); workspaces apart; the fallback when Redis dies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llmcache_redis import RedisBackend, RedisClusterBackend
from llmcache_upstash import UpstashBackend

import llmcache
from llmcache import Backend, RateLimited
from llmcache._limits import LimitCheck
from llmcache._limits._window import LocalWindows
from llmcache._resilience import FAILED
from tests.clocks import wait_until
from tests.servers.redis_server import RedisCluster, RedisServer
from tests.servers.upstash_rest import UpstashRestServer

SECRET = "limits-shared-secret-0123456789"
PATIENT = "timeout=5&connect_timeout=5"
LIMIT, WINDOW = 4, 1.0


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster(join="meet") as started:
        yield started


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- processes hammering one limit ------------------------------------------------------------
def _hammer(url: str, workspace: str, log: str, tag: str, ready: Any, go: Any) -> None:
    """One process: distinct calls (never a hit) for 2.5 s, each logged by the provider."""
    cache = llmcache.Cache(
        workspace=workspace, secret=SECRET, tiers=[url], limits={"*": f"{LIMIT}/1s"}
    )

    @cache.cached
    def provider(n: str, model: str = "gpt-4o-mini") -> str:
        # The fake provider's request log: when each request arrived, one write each.
        descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(descriptor, f"{time.time()!r}\n".encode())
        os.close(descriptor)
        return n

    ready.put(os.getpid())
    go.wait(60)
    end, made = time.monotonic() + 2.5, 0
    while time.monotonic() < end:
        provider(f"{tag}-{made}")
        made += 1
    cache.close()


def hammer(url: str, processes: int, tmp_path: Path) -> list[float]:
    """Run `processes` hammering processes; the provider's request times, in order."""
    context = multiprocessing.get_context("spawn")
    ready, go = context.Queue(), context.Event()
    log, workspace = tmp_path / "requests.log", unique("hammer")
    workers = [
        context.Process(target=_hammer, args=(url, workspace, str(log), f"p{i}", ready, go))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=60)
    go.set()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    return sorted(float(line) for line in log.read_text().split())


def assert_within_limit(times: list[float]) -> None:
    # A window holds the most requests when it starts at one: check every such window.
    for start in times:
        inside = sum(1 for t in times if start <= t < start + WINDOW)
        assert inside <= LIMIT, f"{inside} requests within {WINDOW} s of {start}"
    # And the limit was used, not just obeyed: about LIMIT per window over 2.5 s.
    assert len(times) >= 2 * LIMIT


def test_processes_on_redis_never_exceed_the_limit(server: RedisServer, tmp_path: Path) -> None:
    server.client().config_resetstat()
    times = hammer(server.patient_url, 4, tmp_path)
    assert_within_limit(times)
    # Waiting is sleeping until the window says a slot frees, not polling: at most one take
    # per waiting process each time a slot frees (a 1 ms poll would make thousands).
    stats = server.client().info("commandstats")
    takes = sum(stats[name]["calls"] for name in ("cmdstat_evalsha",) if name in stats)
    assert len(times) - 1 <= takes <= 4 * len(times) + 4  # (one take may be the EVAL)


def test_processes_on_a_redis_cluster_never_exceed_the_limit(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    assert_within_limit(hammer(f"{cluster.url}?{PATIENT}", 3, tmp_path))


def test_processes_on_upstash_never_exceed_the_limit(server: RedisServer, tmp_path: Path) -> None:
    with UpstashRestServer(server.url) as rest:
        url = f"upstash://{rest.token}@127.0.0.1:{rest.port}?tls=0&{PATIENT}"
        times = hammer(url, 2, tmp_path)
        assert any(command[0] == "EVALSHA" for command in rest.commands)  # REST scripts
    assert_within_limit(times)


# -- the backends' windows, sync and async ------------------------------------------------------
def backends(server: RedisServer, rest: UpstashRestServer, cluster: RedisCluster) -> list[Any]:
    return [
        RedisBackend(server.patient_url),
        UpstashBackend.from_url(f"upstash://{rest.token}@127.0.0.1:{rest.port}?tls=0&{PATIENT}"),
        RedisClusterBackend(f"{cluster.url}?{PATIENT}"),
    ]


def test_windows_of_every_shared_backend(server: RedisServer, cluster: RedisCluster) -> None:
    with UpstashRestServer(server.url) as rest:
        for tier in backends(server, rest, cluster):
            assert tier.supports_windows
            key = unique("llmc-limit:test")
            redis = cluster.client() if isinstance(tier, RedisClusterBackend) else server.client()
            redis.script_flush()  # each script is sent whole once (EVAL), then by its SHA
            assert tier.window_take(key, 60.0, 100, 70, "a") == 0.0
            assert 59.0 < tier.window_take(key, 60.0, 100, 70, "b") <= 60.0
            tier.window_settle(key, "a", 70, 20)  # its real usage
            assert tier.window_take(key, 60.0, 100, 70, "b") == 0.0
            tier.window_settle(key, "b", 70, None)  # gone
            tier.window_settle(key, "missing", 1, 5)  # nothing to settle: nothing happens
            redis.script_flush()  # and again

            async def in_a_loop(
                tier: Backend = tier, key: str = key, redis: Any = redis
            ) -> list[float]:
                taken = [await tier.awindow_take(key, 60.0, 100, 90, "c")]  # 20 + 90 > 100
                redis.script_flush()
                await tier.awindow_settle(key, "a", 20, None)
                redis.script_flush()
                taken.append(await tier.awindow_take(key, 60.0, 100, 90, "c"))
                await tier.awindow_settle(key, "c", 90, 10)
                return taken

            first, second = asyncio.run(in_a_loop())
            assert first > 0 and second == 0.0
            assert tier.window_take(key, 60.0, 100, 70, "d") == 0.0  # 10 + 70
            tier.close()


# -- in one process, through Redis -------------------------------------------------------------
def limit_check(cache: llmcache.Cache) -> LimitCheck:
    (check,) = [c for c in cache._gate.checks if isinstance(c, LimitCheck)]
    return check


def counting(cache: llmcache.Cache, namespace: str = "default") -> Any:
    @cache.cached(namespace=namespace)
    def ask(n: int, model: str = "gpt-4o") -> int:
        return n

    return ask


def counting_async(cache: llmcache.Cache) -> Any:
    @cache.cached
    async def ask(n: int, model: str = "gpt-4o") -> int:
        return n

    return ask


def test_two_workspaces_never_share_a_window(server: RedisServer) -> None:
    name = unique("ws")

    def make(workspace: str, secret: str = SECRET) -> llmcache.Cache:
        return llmcache.Cache(
            workspace=workspace,
            secret=secret,
            tiers=[server.patient_url],
            limits={"gpt-4o": "1/min"},
            limit_wait=0,
        )

    first, other, other_secret, same = (
        make(name),
        make(name + "-b"),
        make(name, "another-secret-0123456789"),
        make(name),
    )
    counting(first)(1)
    counting(other)(1)  # another workspace: its own window
    counting(other_secret)(1)  # the same name with another secret: its own too
    with pytest.raises(RateLimited):
        counting(same)(2)  # the same workspace and secret: one window, across caches
    keys = sorted(str(k) for k in server.client(decode_responses=True).keys("llmc-limit:*"))
    scopes = {k.split(":")[1] for k in keys if name in k}
    assert scopes == {first._keys.scope, other._keys.scope, other_secret._keys.scope}
    assert len(scopes) == 3
    assert all(server.client().pttl(k) > 0 for k in keys)  # windows expire
    for cache in (first, other, other_secret, same):
        assert cache.health().notes == []
        cache.close()


async def test_async_calls_take_and_give_back_through_redis(server: RedisServer) -> None:
    limits = {"gpt-4o": "2/min", "research": {"*": "1/min"}}
    with llmcache.Cache(
        workspace=unique("async"), secret=SECRET, tiers=[server.patient_url], limits=limits
    ) as cache:

        @cache.cached(namespace="research")
        async def research(n: int, model: str = "gpt-4o") -> int:
            return n

        @cache.cached(namespace="other")
        async def other(n: int, model: str = "gpt-4o") -> int:
            return n

        assert await research(1) == 1
        with llmcache.options(limit_wait=0):
            with pytest.raises(RateLimited) as raised:
                await research(2)  # the workspace's slot was taken, then given back
            assert raised.value.limit == "1/min"
            assert await other(1) == 1  # so this one fits the workspace's 2/min
            with pytest.raises(RateLimited):
                await other(2)
        workspace_key = limit_check(cache)._key(
            None, "gpt-4o", limit_check(cache).rules[(None, "gpt-4o")][0]
        )
        assert server.client().zcount(workspace_key, "(0", "+inf") == 2  # and "#", the total


def test_tokens_settle_in_the_shared_window(server: RedisServer) -> None:
    with llmcache.Cache(
        workspace=unique("tokens"),
        secret=SECRET,
        tiers=[server.patient_url],
        limits={"gpt-4o": "1000 tokens/min; 100/min"},
        limit_wait=0,
    ) as cache:

        @cache.cached(usage=lambda result: llmcache.Usage(input_tokens=30, output_tokens=12))
        def ask(n: int, model: str = "gpt-4o", max_tokens: int = 900) -> int:
            return n

        ask(1)
        ask(2)  # fits only because the first settled to 42 tokens
        tokens_key = next(k for k in limit_check(cache)._keys.values() if k.endswith("t"))
        raw = server.client(decode_responses=True)
        window: list[tuple[str, float]] = raw.zrange(tokens_key, 0, -1, withscores=True)  # type: ignore[assignment]
        calls = sorted(member.rsplit(":", 1)[1] for member, at in window if at > 0)
        assert calls == ["42", "42"]
        assert ("#", -84.0) in window  # the running total


def test_redis_down_falls_back_to_this_process_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with RedisServer() as redis_server:
        cache = llmcache.Cache(
            secret=SECRET, tiers=[redis_server.patient_url], limits={"*": "2/min"}, limit_wait=0
        )
        ask = counting(cache)
        ask(1)
        ask(2)
        with pytest.raises(RateLimited):
            ask(3)  # the shared window is full
        assert cache.health().notes == []
        redis_server.kill()
        with caplog.at_level(logging.WARNING, logger="llmcache"):
            ask(3)  # Redis is gone: this process's own window, empty so far
            ask(4)
            with pytest.raises(RateLimited):
                ask(5)  # ... which enforces the limit, never "no limit"
            with pytest.raises(RateLimited):
                asyncio.run(counting_async(cache)(6))  # the async flow falls back too
        warnings = [r for r in caplog.records if "enforced per process" in r.getMessage()]
        assert len(warnings) == 1  # once, not per call
        health = cache.health()
        assert not health.ok
        assert health.notes == [
            f"rate limits enforced per process only: the shared tier "
            f"{redis_server.url} is unavailable"
        ]
        redis_server.start()  # back (empty): the shared windows are used again
        tier = cache._tiers[0]
        wait_until(lambda: tier.call("ping") is not FAILED, 20, "Redis answers again")
        assert cache.health().notes == []  # so the next call takes its slots there
        assert limit_check(cache).degraded is not None  # (none has yet)

        def shared_again() -> bool:
            with contextlib.suppress(RateLimited):
                ask(int(time.monotonic() * 1e6))
            return limit_check(cache).degraded is None

        wait_until(shared_again, 20, "the limits use Redis again")
        assert cache.health().notes == []
        assert redis_server.client().keys("llmc-limit:*")
        cache.close()


def test_what_slides_out_leaves_the_running_total(server: RedisServer) -> None:
    tier, key = RedisBackend(server.patient_url), unique("llmc-limit:slide")
    assert tier.window_take(key, 0.2, 2, 1, "a") == tier.window_take(key, 0.2, 2, 1, "b") == 0.0
    retry = tier.window_take(key, 0.2, 2, 1, "c")
    assert 0 < retry <= 0.2
    time.sleep(retry + 0.01)  # (the one real wait: the server's clock decides)
    assert tier.window_take(key, 0.2, 2, 1, "c") == 0.0
    raw = server.client(decode_responses=True)
    assert raw.zscore(key, "#") == -1.0  # "a" and "b" left the total with the window
    assert raw.zcount(key, "(0", "+inf") == 1
    tier.close()


def test_an_upstash_failure_is_not_mistaken_for_a_missing_script(server: RedisServer) -> None:
    with UpstashRestServer(server.url) as rest:
        tier = UpstashBackend.from_url(f"upstash://{rest.token}@127.0.0.1:{rest.port}?tls=0")
        rest.mode = "error"  # every request fails: not NOSCRIPT, so no EVAL follows
        with pytest.raises(llmcache.BackendError, match="injected failure"):
            tier.window_take("k", 1.0, 1, 1, "m")
        with pytest.raises(llmcache.BackendError, match="injected failure"):
            tier.window_settle("k", "m", 1, None)

        async def in_a_loop() -> None:
            with pytest.raises(llmcache.BackendError, match="injected failure"):
                await tier.awindow_take("k", 1.0, 1, 1, "m")
            with pytest.raises(llmcache.BackendError, match="injected failure"):
                await tier.awindow_settle("k", "m", 1, None)

        asyncio.run(in_a_loop())
        assert [command[0] for command in rest.commands] == []  # none reached Redis
        tier.close()


# Operations on one window within a few milliseconds (an hour-long window: nothing slides
# out): take (cost, or None to settle the last granted take to a new cost instead).
operations = st.lists(
    st.tuples(st.integers(1, 40), st.one_of(st.none(), st.integers(0, 40))),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=operations, limit=st.integers(40, 120))
def test_the_redis_window_decides_as_the_in_process_one(
    server: RedisServer, steps: list[tuple[int, int | None]], limit: int
) -> None:
    tier, key = RedisBackend(server.patient_url), unique("llmc-limit:model")
    local = LocalWindows(lambda: 0.0)
    granted: list[tuple[str, int]] = []
    for n, (cost, settle_to) in enumerate(steps):
        if settle_to is not None and granted:
            member, taken = granted.pop()
            tier.window_settle(key, member, taken, settle_to)
            local.settle("k", member, taken, settle_to)
            granted.append((member, settle_to))
            continue
        member = f"m{n}"
        shared = tier.window_take(key, 3600.0, limit, cost, member)
        assert (shared == 0.0) == (local.take("k", 3600.0, limit, cost, member) == 0.0)
        if shared == 0.0:
            granted.append((member, cost))
    total = server.client().zscore(key, "#")
    assert -(total or 0.0) == sum(cost for _, cost in granted)
    tier.close()
