"""The async flow's paths, each run by a test: options, the site API, bypass, refresh, the
cross-process lock (taken, waited for, double-checked), claims, and failing tiers.

Two caches on one disk file stand for two processes: the disk tier takes the cross-process
single-flight lock, as Redis does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import llmcache
from llmcache import MISS
from llmcache._backend import Backend

SECRET = "a" * 32


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[llmcache.Cache, llmcache.Cache]]:
    tiers = ["memory", f"disk://{tmp_path}/d"]
    first = llmcache.Cache(workspace="w", secret=SECRET, tiers=tiers, lock_wait=10)
    second = llmcache.Cache(workspace="w", secret=SECRET, tiers=tiers, lock_wait=10)
    yield first, second
    first.close()
    second.close()


def _site(cache: llmcache.Cache) -> llmcache.CallSite:
    return cache.site("test.endpoint", returns=str)


def test_async_site_api_get_put_key_and_options(two: Any) -> None:
    first, second = two
    site, other = _site(first), _site(second)

    async def scenario() -> None:
        request = {"q": "x"}
        assert await site.aget(request) is MISS
        record = await site.aput(request, "stored", latency_s=0.2)
        assert record is not None and record.signed_key == site.key(request)
        assert await site.aget(request) == "stored"
        assert await other.aget(request) == "stored"  # from the disk file, verified
        with llmcache.options(refresh=True):
            assert await site.aget(request) is MISS  # refresh never serves
        with llmcache.options(bypass=True):
            assert await site.aget(request) is MISS
            assert await site.aput(request, "ignored", latency_s=0.1) is None
        with llmcache.options(no_store=True):
            assert await site.aput({"q": "y"}, "not kept", latency_s=0.1) is None
        assert await site.aget({"q": "y"}) is MISS
        # another namespace and a sample key the same request apart
        with llmcache.options(namespace="other"):
            assert await site.aget(request) is MISS
            await site.aput(request, "in other", latency_s=0.1)
            assert await site.aget(request) == "in other"
        with llmcache.options(sample=2):
            assert await site.aget(request) is MISS
        assert await site.aget(request) == "stored"

    asyncio.run(scenario())


def test_async_bypassed_and_disabled_calls_go_straight_through(tmp_path: Path) -> None:
    cache = llmcache.Cache(workspace="w", tiers=["memory"], enabled=False)
    calls: list[int] = []

    @cache.cached
    async def f(x: int) -> int:
        calls.append(x)
        return x

    async def scenario() -> None:
        assert await f(1) == 1 and await f(1) == 1
        cache.enabled = True
        with llmcache.options(bypass=True):
            assert await f(2) == 2 and await f(2) == 2

    asyncio.run(scenario())
    assert calls == [1, 1, 2, 2]
    assert f.cache_info().bypassed == 4


def test_async_call_waits_for_another_process_holding_the_lock(two: Any) -> None:
    """The other process holds the call's lock; our async call polls until its entry is
    stored, then serves it without calling (coalesced)."""
    first, second = two
    ours, theirs = _site(first), _site(second)
    request = {"q": "slow"}
    lock_key = theirs.key(request) + ":lock"
    token = second._lock_tier.call("try_lock", lock_key, 30.0)
    assert isinstance(token, str)
    tries = threading.Semaphore(0)
    real_try = first._lock_tier.backend.try_lock

    def counting_try(key: str, ttl: float) -> Any:
        found = real_try(key, ttl)
        if key == lock_key:  # not the generation records' claim
            tries.release()
        return found

    first._lock_tier.backend.try_lock = counting_try  # type: ignore[method-assign]

    def other_process_finishes() -> None:
        for _ in range(2):  # our call tried the lock (refused) and is now polling
            assert tries.acquire(timeout=10)
        theirs.put(request, "theirs", latency_s=1.0)
        second._lock_tier.call("unlock", lock_key, token)

    finisher = threading.Thread(target=other_process_finishes)
    finisher.start()

    async def compute() -> str:
        raise AssertionError("the other process's call must be reused")

    assert asyncio.run(ours.acall(request, compute)) == "theirs"
    finisher.join()
    assert ours.counters.coalesced == 1
    assert ours.counters.misses == 0


def test_async_call_takes_over_a_lock_freed_without_an_entry(two: Any) -> None:
    first, second = two
    ours = _site(first)
    request = {"q": "abandoned"}
    lock_key = _site(second).key(request) + ":lock"
    token = second._lock_tier.call("try_lock", lock_key, 30.0)
    released = threading.Event()

    async def scenario() -> str:
        async def compute() -> str:
            return "ours"

        async def release_later() -> None:
            await asyncio.sleep(0)  # let our call find the lock taken first
            second._lock_tier.call("unlock", lock_key, token)  # it failed: no entry
            released.set()

        releaser = asyncio.create_task(release_later())
        value = await ours.acall(request, compute)
        await releaser
        return value

    assert asyncio.run(scenario()) == "ours"
    assert released.is_set()
    assert ours.counters.misses == 1


def test_async_lock_double_check_finds_an_entry_stored_meanwhile(two: Any) -> None:
    """Between our lookup and our try_lock another process stored the entry and let go:
    the look after taking the lock finds it, and no call is made."""
    first, second = two
    ours, theirs = _site(first), _site(second)
    request = {"q": "raced"}
    real_try = first._lock_tier.backend.try_lock

    def store_then_lock(key: str, ttl: float) -> Any:
        if key == theirs.key(request) + ":lock":  # not the generation records' claim
            theirs.put(request, "stored meanwhile", latency_s=0.5)
        return real_try(key, ttl)

    first._lock_tier.backend.try_lock = store_then_lock  # type: ignore[method-assign]

    async def compute() -> str:
        raise AssertionError("found after the lock was taken")

    assert asyncio.run(ours.acall(request, compute)) == "stored meanwhile"
    assert ours.counters.coalesced == 1


def test_async_claim_leads_waits_and_replays(tmp_path: Path) -> None:
    cache = llmcache.Cache(workspace="w", tiers=["memory"], lock_wait=10)
    site = cache.site("test.stream", returns=str)
    request = {"q": "stream"}

    async def scenario() -> list[Any]:
        value, release = await site.aclaim(request)
        assert value is MISS  # we lead
        waiter = asyncio.create_task(site.aclaim(request))
        await asyncio.sleep(0)  # the waiter joins our flight
        assert not waiter.done()
        await site.aput(request, "recorded", latency_s=0.3)
        release()
        replay, _ = await waiter
        hit, _ = await site.aclaim(request)
        return [replay, hit]

    assert asyncio.run(scenario()) == ["recorded", "recorded"]


def test_async_claim_in_the_leaders_own_task_does_not_wait_for_itself() -> None:
    cache = llmcache.Cache(workspace="w", tiers=["memory"], lock_wait=10)
    site = cache.site("test.stream", returns=str)

    async def scenario() -> tuple[Any, Any]:
        first, release = await site.aclaim({"q": 1})
        # A sync claim of this very thread leads the same flight: the async one must not
        # wait for it (it would wait for itself); it makes its own, unclaimed call.
        _, _ = site.claim({"q": 2})
        third, _ = await site.aclaim({"q": 2})
        release()
        return first, third

    assert asyncio.run(scenario()) == (MISS, MISS)


class _Broken(Backend):
    """A tier whose every operation fails: each async path must turn that into a miss."""

    persistent = False
    name = "broken://"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> _Broken:
        return cls()

    def get(self, key: str) -> bytes | None:
        raise ConnectionError("down")

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        raise ConnectionError("down")

    def delete(self, key: str) -> None:
        raise ConnectionError("down")

    def delete_prefix(self, prefix: str) -> int:
        raise ConnectionError("down")

    def incr_counters(self, key: str, deltas: Any) -> None:
        raise ConnectionError("down")

    def read_counters(self, key: str) -> dict[str, float]:
        raise ConnectionError("down")

    def close(self) -> None:
        return None


def test_async_calls_through_a_failing_tier_fail_open() -> None:
    broken = _Broken()
    cache = llmcache.Cache(workspace="w", secret=SECRET, tiers=["memory", broken])
    tier = cache._tiers[0]
    calls: list[int] = []

    @cache.cached
    async def f(x: int) -> int:
        calls.append(x)
        return x

    async def scenario() -> None:
        for x in range(8):  # enough failures to open both breakers
            cache.memory.clear()  # type: ignore[union-attr]
            assert await f(x) == x
        assert await tier.aget("k") is None  # open: skipped, no call
        assert await tier.aset("k", b"v", None) is False  # queued
        assert await tier.acall("delete", "k") is llmcache._resilience.FAILED  # type: ignore[attr-defined]

    asyncio.run(scenario())
    assert calls == list(range(8))
    assert tier.counters.errors >= tier.failure_threshold
    assert tier.counters.skipped > 0  # once open, the tier is not called at all
    assert tier.reads.state == "open" and tier.writes.state == "open"


def test_a_bypassed_claim_never_waits_for_the_leader() -> None:
    cache = llmcache.Cache(workspace="w", tiers=["memory"], lock_wait=10)
    site = cache.site("test.stream", returns=str)

    async def scenario() -> Any:
        _, release = await site.aclaim({"q": 1})  # leads, and never releases here
        with llmcache.options(bypass=True):
            value, own_release = await asyncio.wait_for(site.aclaim({"q": 1}), 1)
        release()
        own_release()  # a no-op
        return value

    assert asyncio.run(scenario()) is MISS
    assert site.counters.bypassed == 0  # counted by the adapter's put, not by the claim


def test_a_claim_waits_lock_wait_at_most_in_all() -> None:
    cache = llmcache.Cache(workspace="w", tiers=["memory"], lock_wait=0.2)
    site = cache.site("test.stream", returns=str)

    async def scenario() -> tuple[Any, float]:
        _, release = await site.aclaim({"q": 1})  # leads, and its stream never ends
        started = asyncio.get_running_loop().time()
        value, _ = await site.aclaim({"q": 1})
        waited = asyncio.get_running_loop().time() - started
        release()
        return value, waited

    value, waited = asyncio.run(scenario())
    assert value is MISS  # unclaimed: it makes its own call
    assert 0.15 <= waited < 0.2 + 1.0  # one lock_wait, with margin for a busy machine
