"""The async flow (the long way of an awaited call) does what the sync flow does: options
(namespace, sample, bypass, refresh, no_store), the extension API's `aget` / `aput` /
`aclaim`, promotion to faster tiers, and single-flight within a process and across
processes (a lock on the most shared tier). Most of the suite drives the sync twin; these
are the same behaviours, awaited, through `Cache.cached` on coroutines and `Cache.site`.

"Another process" is a second `Cache` on the same tiers: flights are per cache, so it can
only meet the first through the tier's lock and entries, as another process would.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

import llmcache
from llmcache.ext import MISS, Backend

SECRET = "f" * 32


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class SharedTier(Backend):
    """A persistent tier in a dict that two caches can share and that takes locks, with
    hooks for what another process would do at the worst moment: `hidden` keys read as
    absent (not stored yet), a read of `held_key` can be held until `release`, and
    `before_lock(key, attempt)` runs before each attempt on an entry's lock."""

    supports_locks = True

    def __init__(self) -> None:
        self.name = "shared://test"
        self.items: dict[str, bytes] = {}
        self.counters: dict[str, dict[str, float]] = {}
        self.locks: dict[str, str] = {}
        self.hidden: set[str] = set()
        self.entry_lock_attempts = 0
        self.before_lock: Callable[[str, int], None] | None = None
        self._guard = threading.Lock()
        # The `hold_on_read`-th read of `held_key` waits for `release` (after setting
        # `reading`), answering what the tier held when the read began.
        self.held_key = ""
        self.hold_on_read = 0
        self.reads_of_held = 0
        self.reading = threading.Event()
        self.release = threading.Event()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SharedTier:
        return cls()

    def get(self, key: str) -> bytes | None:
        value = None if key in self.hidden else self.items.get(key)
        if key == self.held_key:
            with self._guard:
                self.reads_of_held += 1
                hold = self.reads_of_held == self.hold_on_read
            if hold:
                self.reading.set()
                assert self.release.wait(10)
        return value

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.items[key] = value

    def delete(self, key: str) -> None:
        self.items.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        doomed = [key for key in self.items if key.startswith(prefix)]
        for key in doomed:
            del self.items[key]
        return len(doomed)

    def incr_counters(self, key: str, deltas: Mapping[str, float]) -> None:
        with self._guard:
            record = self.counters.setdefault(key, {})
            for field, delta in deltas.items():
                record[field] = record.get(field, 0.0) + delta

    def read_counters(self, key: str) -> dict[str, float]:
        return dict(self.counters.get(key, {}))

    def close(self) -> None:
        pass

    def try_lock(self, key: str, ttl: float) -> str | None:
        if key.endswith(":lock"):  # an entry's lock (not a generation record's claim)
            with self._guard:
                self.entry_lock_attempts += 1
                attempt = self.entry_lock_attempts
            if self.before_lock is not None:
                self.before_lock(key, attempt)
        with self._guard:
            if key in self.locks:
                return None
            token = secrets.token_hex(8)
            self.locks[key] = token
            return token

    def renew_lock(self, key: str, token: str, ttl: float) -> bool:
        return self.locks.get(key) == token

    def unlock(self, key: str, token: str) -> None:
        with self._guard:
            if self.locks.get(key) == token:
                del self.locks[key]


class UnlockedTier(SharedTier):
    supports_locks = False


def cache_on(*tiers: Any, workspace: str = "flow") -> llmcache.Cache:
    return llmcache.Cache(workspace=workspace, secret=SECRET, tiers=list(tiers))


# -- options ---------------------------------------------------------------------------------


async def test_a_namespace_option_keeps_entries_apart(tmp_path: Path) -> None:
    calls: list[str] = []
    with cache_on("memory", f"disk://{tmp_path}") as cache:

        @cache.cached
        async def ask(q: str) -> str:
            calls.append(q)
            return q.upper()

        with llmcache.options(namespace="team-a"):
            assert await ask("x") == "X"
            assert await ask("x") == "X"
        assert await ask("x") == "X"  # the default namespace has no entry yet
        assert calls == ["x", "x"]
        cache.invalidate("team-a")
        with llmcache.options(namespace="team-a"):
            await ask("x")
        await ask("x")  # untouched by team-a's invalidation
        assert calls == ["x", "x", "x"]


async def test_a_sample_option_is_part_of_the_key() -> None:
    calls: list[tuple[str, int]] = []
    with cache_on("memory") as cache:

        @cache.cached
        async def draw(q: str) -> str:
            calls.append((q, len(calls)))
            return f"{q}-{len(calls)}"

        with llmcache.options(sample=1):
            one = await draw("q")
            assert await draw("q") == one
        with llmcache.options(sample=2):
            two = await draw("q")
        assert one != two
        assert len(calls) == 2


async def test_bypass_calls_through_and_reports_a_miss() -> None:
    calls: list[str] = []
    with cache_on("memory") as cache:

        @cache.cached
        async def ask(q: str) -> list[str]:
            calls.append(q)
            return [q]

        await ask("warm")
        with llmcache.options(bypass=True):
            await ask("warm")
            described = llmcache.last_info()
            await ask("warm")
        assert calls == ["warm", "warm", "warm"]
        assert described is not None and not described.hit  # not the stored entry's hit


async def test_the_async_and_sync_flows_agree_on_keys() -> None:
    with cache_on("memory") as cache:
        site = cache.site("agree")
        request = {"q": "same"}
        assert await site.async_flow.key(request) == site.key(request)
        with llmcache.options(namespace="other"):
            other = await site.async_flow.key(request)
            assert other == site.key(request)
        assert other != site.key(request)


# -- the extension API, awaited ------------------------------------------------------------------


async def test_aput_then_aget_and_what_options_change(tmp_path: Path) -> None:
    with cache_on("memory", f"disk://{tmp_path}") as cache:
        site = cache.site("ext.endpoint")
        request = {"prompt": "hello"}
        assert await site.aget(request) is MISS
        record = await site.aput(request, {"text": "hi"}, latency_s=0.25)
        assert record is not None
        assert await site.aget(request) == {"text": "hi"}
        with llmcache.options(refresh=True):
            assert await site.aget(request) is MISS  # refresh: never served
        with llmcache.options(bypass=True):
            assert await site.aget(request) is MISS
            assert await site.aput({"prompt": "other"}, "x", latency_s=0.1) is None
        with llmcache.options(no_store=True):
            assert await site.aput({"prompt": "unstored"}, "y", latency_s=0.1) is None
        assert await site.aget({"prompt": "unstored"}) is MISS
        assert cache.stats().misses == 2  # each real call recorded counts, stored or not


async def test_aclaim_leads_then_replays() -> None:
    with cache_on("memory") as cache:
        site = cache.site("ext.stream")
        request = {"prompt": "stream me"}
        value, release = await site.aclaim(request)
        assert value is MISS
        await site.aput(request, "streamed", latency_s=0.1)
        release()
        again, release_again = await site.aclaim(request)
        release_again()
        assert again == "streamed"


async def test_a_waiting_aclaim_finds_what_the_leader_stored() -> None:
    with cache_on("memory") as cache:
        site = cache.site("ext.stream")
        request = {"prompt": "together"}
        value, release = await site.aclaim(request)
        assert value is MISS

        async def leader_finishes() -> None:
            await site.aput(request, "first", latency_s=0.1)
            release()

        waiter = asyncio.create_task(site.aclaim(request))
        await asyncio.sleep(0)  # the waiter joins the flight before the leader ends
        await leader_finishes()
        found, release_waiter = await waiter
        release_waiter()
        assert found == "first"


async def test_an_aclaim_under_its_own_sync_lead_is_not_made_to_wait() -> None:
    with cache_on("memory") as cache:
        site = cache.site("ext.stream")
        request = {"prompt": "nested"}
        value, release = site.claim(request)  # led by this thread, outside any loop
        assert value is MISS
        inner, inner_release = await site.aclaim(request)  # waiting would hang: unclaimed
        inner_release()
        release()
        assert inner is MISS


# -- tiers -----------------------------------------------------------------------------------


async def test_an_entry_found_below_fills_the_faster_tiers(tmp_path: Path) -> None:
    fast, slow = f"disk://{tmp_path}/fast", f"disk://{tmp_path}/slow"
    with cache_on(slow) as writer:
        site = writer.site("filled")
        await site.aput({"q": 1}, "one", latency_s=0.1)
    with cache_on("memory", fast, slow) as reader:
        site = reader.site("filled")
        assert await site.aget({"q": 1}) == "one"
        entries = {tier.name: tier.entries or 0 for tier in reader.stats().tiers}
    assert entries[f"{fast}/cache.sqlite3"] == entries[f"{slow}/cache.sqlite3"] >= 1


# -- single-flight in this process -----------------------------------------------------------


async def test_a_call_nested_in_its_own_sync_lead_makes_its_own_call() -> None:
    with cache_on("memory") as cache:
        site = cache.site("nested")
        request = {"q": "n"}
        made: list[str] = []

        async def inner() -> str:
            made.append("inner")
            return "inner"

        def outer() -> str:
            made.append("outer")
            # A coroutine run to completion inside the sync leader: it may not wait for it.
            return asyncio.run(site.acall(request, inner))

        assert await asyncio.to_thread(site.call, request, outer) == "inner"
        assert made == ["outer", "inner"]


async def test_a_result_stored_between_a_lookup_and_the_lead_is_used() -> None:
    """The first caller finishes while the second is still reading the tier below memory:
    the second finds no flight, takes the lead, and still makes no real call."""
    tier = UnlockedTier()  # (a lock holder reads once more after taking the lock)
    with cache_on("memory", tier) as cache:
        site = cache.site("late")
        request = {"q": "late"}
        tier.held_key = site.key(request)
        tier.hold_on_read = 2  # the second caller's read
        made: list[str] = []

        async def compute() -> str:
            made.append("real")
            await asyncio.to_thread(tier.reading.wait, 10)  # the second caller is reading
            return "answer"

        first = asyncio.create_task(site.acall(request, compute))
        assert await asyncio.to_thread(wait_until, lambda: tier.reads_of_held >= 1)
        second = asyncio.create_task(site.acall(request, compute))
        assert await first == "answer"
        tier.release.set()
        assert await second == "answer"
        assert made == ["real"]


# -- single-flight across processes ----------------------------------------------------------


async def test_another_process_waits_for_the_lock_holder_and_uses_its_entry() -> None:
    tier = SharedTier()
    request = {"q": "shared"}
    made: list[str] = []
    with cache_on("memory", tier) as holder, cache_on("memory", tier) as waiter:

        def slow() -> str:
            made.append("holder")
            # Returns once the waiter has met the lock at least once (holder's + waiter's).
            assert wait_until(lambda: tier.entry_lock_attempts >= 2)
            return "from the holder"

        async def waiter_compute() -> str:
            made.append("waiter")
            return "from the waiter"

        held = asyncio.create_task(asyncio.to_thread(holder.site("x").call, request, slow))
        assert await asyncio.to_thread(wait_until, lambda: tier.entry_lock_attempts >= 1)
        answer = await waiter.site("x").acall(request, waiter_compute)
        assert await held == "from the holder"
        assert answer == "from the holder"
        assert made == ["holder"]


async def test_a_lock_let_go_without_an_entry_is_taken_and_the_call_made() -> None:
    tier = SharedTier()
    request = {"q": "failing"}
    with cache_on("memory", tier) as holder, cache_on("memory", tier) as waiter:

        def fails() -> str:
            assert wait_until(lambda: tier.entry_lock_attempts >= 2)
            raise RuntimeError("the holder's call failed")

        async def waiter_compute() -> str:
            return "made here"

        held = asyncio.create_task(asyncio.to_thread(holder.site("y").call, request, fails))
        assert await asyncio.to_thread(wait_until, lambda: tier.entry_lock_attempts >= 1)
        answer = await waiter.site("y").acall(request, waiter_compute)
        with pytest.raises(RuntimeError, match="holder's call failed"):
            await held
        assert answer == "made here"
        assert tier.locks == {}  # the waiter let go of the lock it took


async def test_a_waiter_gives_up_after_lock_wait_and_calls_itself() -> None:
    tier = SharedTier()
    request = {"q": "stuck"}
    with llmcache.Cache(
        workspace="flow", secret=SECRET, tiers=["memory", tier], lock_wait=0.2
    ) as waiter:
        tier.locks[waiter.site("z").key(request) + ":lock"] = "held-by-a-dead-process"

        async def compute() -> str:
            return "made anyway"

        started = time.monotonic()
        assert await waiter.site("z").acall(request, compute) == "made anyway"
        assert time.monotonic() - started >= 0.2


async def stored_elsewhere(tier: SharedTier, identity: str, request: dict[str, Any]) -> str:
    """Another process's entry for `request`, in `tier`; its key."""
    with cache_on("memory", tier) as other:
        site = other.site(identity)
        await site.aput(request, "theirs", latency_s=0.1)
        return site.key(request)


async def test_an_entry_stored_just_before_the_lock_was_taken_is_used() -> None:
    """Another process stored the entry and let go of its lock between our lookup and our
    try_lock: we take the lock, look once more, find it, and let go of the lock."""
    tier = SharedTier()
    request = {"q": "just stored"}
    key = await stored_elsewhere(tier, "race", request)
    tier.hidden.add(key)  # not there yet when we look
    tier.before_lock = lambda lock_key, attempt: tier.hidden.discard(key)  # ...then it is
    made: list[str] = []

    async def compute() -> str:
        made.append("ours")
        return "ours"

    with cache_on("memory", tier) as cache:
        assert await cache.site("race").acall(request, compute) == "theirs"
        assert cache.stats().hits == 0  # served from the other's call, not a lookup
    assert made == []
    assert tier.locks == {}


async def test_an_entry_stored_while_we_waited_for_the_lock_is_used() -> None:
    """The lock holder stores its entry and lets go between our look and our next attempt
    on the lock: we take the lock, look again (double-checked), find it, and let go."""
    tier = SharedTier()
    request = {"q": "double-checked"}
    key = await stored_elsewhere(tier, "race", request)
    tier.hidden.add(key)
    tier.locks[key + ":lock"] = "the other process"

    def the_holder_finishes(lock_key: str, attempt: int) -> None:
        if attempt == 2:  # our first attempt in the wait loop
            tier.locks.pop(lock_key, None)
            tier.hidden.discard(key)

    tier.before_lock = the_holder_finishes

    async def compute() -> str:
        return "ours"

    with cache_on("memory", tier) as cache:
        assert await cache.site("race").acall(request, compute) == "theirs"
    assert tier.locks == {}


async def test_an_aclaim_waits_at_most_lock_wait_for_a_slow_leader() -> None:
    with llmcache.Cache(workspace="flow", tiers=["memory"], lock_wait=0.05) as cache:
        site = cache.site("ext.stream")
        request = {"prompt": "a long stream"}
        value, release = await site.aclaim(request)  # this task leads, and never finishes
        assert value is MISS
        started = time.monotonic()
        found, release_waiter = await asyncio.create_task(site.aclaim(request))
        waited = time.monotonic() - started
        release_waiter()
        release()
        assert found is MISS  # it makes its own call, unclaimed
        assert 0.05 <= waited < 1.0  # it waited for the leader, lock_wait in all


async def test_a_bypassed_aclaim_leads_nothing() -> None:
    with cache_on("memory") as cache:
        site = cache.site("ext.stream")
        request = {"prompt": "bypassed"}
        await site.aput(request, "stored", latency_s=0.1)
        with llmcache.options(bypass=True):
            value, release = await site.aclaim(request)
        release()
        assert value is MISS  # not the stored answer: a bypassed call is made
        again, release_again = await site.aclaim(request)
        release_again()
        assert again == "stored"
