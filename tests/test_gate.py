"""The miss path's gate: what a real call passes first (`llmcache._gate`), and the modes.

A recording check shows when checks are entered and settled: only by a real call's leader
(never by a hit or by a caller that waited for an identical call), settled with the call's
metadata, or with None when it failed or a claimed stream was abandoned.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest

import llmcache
from llmcache import CacheMiss, ConfigError
from llmcache._gate import PendingCall, Substitute, call_fields

SECRET = "gate-tests-secret-0123456789abcd"


class Recorder:
    """A check that lets everything through and notes what it saw."""

    def __init__(self) -> None:
        self.entered: list[PendingCall] = []
        self.settled: list[tuple[Any, Mapping[str, Any] | None]] = []

    def enter(self, call: PendingCall) -> Any:
        self.entered.append(call)
        return len(self.entered)

    async def aenter(self, call: PendingCall) -> Any:
        return self.enter(call)

    def settle(self, ticket: Any, meta: Mapping[str, Any] | None) -> None:
        self.settled.append((ticket, meta))


def cache_with(recorder: Recorder, **options: Any) -> llmcache.Cache:
    cache = llmcache.Cache(tiers=["memory"], secret=SECRET, **options)
    cache._gate.add(recorder)
    return cache


def test_only_a_real_call_enters_and_it_is_settled_with_its_usage() -> None:
    recorder = Recorder()
    cache = cache_with(recorder)

    @cache.cached(usage=lambda r: {"model": "m-1", "input_tokens": 7, "cost_usd": 0.5})
    def ask(question: str, model: str = "m-1", max_tokens: int = 64) -> str:
        return question.upper()

    assert ask("a") == "A" and ask("a") == "A" and ask("a") == "A"
    assert len(recorder.entered) == 1
    call = recorder.entered[0]
    assert (call.identity, call.model, call.max_tokens) == (ask.cache_site.identity, "m-1", 64)
    assert call.request == {"question": "a", "model": "m-1", "max_tokens": 64}
    (ticket, meta), *_ = recorder.settled
    assert ticket == 1 and meta is not None and meta["cost_usd"] == 0.5
    fields = meta["call"]
    assert fields["site"] == ask.cache_site.identity and len(fields["digest"]) == 64
    assert set(fields["args"]) == {"question", "model", "max_tokens"}
    assert "a" not in fields["args"].values()  # keyed hashes, never the values


def test_a_failed_call_is_settled_with_none_and_errors_reach_the_caller() -> None:
    recorder = Recorder()
    cache = cache_with(recorder)

    @cache.cached
    def broken(n: int) -> int:
        raise ValueError(f"no {n}")

    with pytest.raises(ValueError, match="no 1"):
        broken(1)
    assert recorder.settled == [(1, None)]


def test_identical_concurrent_calls_enter_once() -> None:
    recorder = Recorder()
    cache = cache_with(recorder)
    started = threading.Event()

    @cache.cached
    def slow(n: int) -> int:
        started.set()
        time.sleep(0.2)
        return n

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(slow(5))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [5, 5, 5, 5] and len(recorder.entered) == 1


def test_a_check_that_refuses_leaves_nothing_behind_and_earlier_checks_are_settled() -> None:
    first = Recorder()
    cache = cache_with(first)

    class Refuse:
        def enter(self, call: PendingCall) -> Any:
            raise llmcache.CallRefused("not now")

        async def aenter(self, call: PendingCall) -> Any:
            return self.enter(call)

        def settle(self, ticket: Any, meta: Mapping[str, Any] | None) -> None:
            raise AssertionError("a refusing check is never settled")

    cache._gate.add(Refuse())
    calls: list[int] = []

    @cache.cached
    def ask(n: int) -> int:
        calls.append(n)
        return n

    with pytest.raises(llmcache.CallRefused, match="not now"):
        ask(1)
    assert calls == [] and first.settled == [(1, None)]
    assert cache.stats().misses == 0  # nothing was called, nothing counted as paid


def test_a_substitute_is_served_instead_of_the_call() -> None:
    cache = llmcache.Cache(tiers=["memory"], secret=SECRET)

    @cache.cached
    def ask(n: int) -> str:
        return f"real {n}"

    assert ask(1) == "real 1"
    record = next(iter(cache.memory._entries.values()))  # type: ignore[union-attr]

    class Offer:
        def enter(self, call: PendingCall) -> Any:
            return Substitute((record, "memory", "offered"), "test")

        async def aenter(self, call: PendingCall) -> Any:
            return self.enter(call)

        def settle(self, ticket: Any, meta: Mapping[str, Any] | None) -> None:
            pass

    cache._gate.add(Offer())
    assert ask(2) == "offered"
    assert cache.stats().misses == 1  # only ask(1) made a real call


def test_async_calls_enter_the_gate_too() -> None:
    recorder = Recorder()
    cache = cache_with(recorder)

    @cache.cached
    async def ask(n: int) -> int:
        return n * 2

    async def scenario() -> None:
        assert await ask(2) == 4 and await ask(2) == 4

    asyncio.run(scenario())
    assert len(recorder.entered) == 1 and recorder.settled[0][1] is not None


def test_claimed_calls_settle_on_put_or_on_release() -> None:
    recorder = Recorder()
    cache = cache_with(recorder)
    site = cache.site("vendor.stream", provider="vendor")
    found, release = site.claim({"q": "one", "max_tokens": 9})
    assert found is llmcache.MISS and recorder.entered[0].max_tokens == 9
    site.put({"q": "one", "max_tokens": 9}, "streamed", latency_s=0.1)
    release()
    assert recorder.settled[0][0] == 1 and recorder.settled[0][1] is not None
    assert site.claims == {}
    found, release = site.claim({"q": "two"})
    release()  # the stream was abandoned: no put
    assert recorder.settled[1] == (2, None) and site.claims == {}

    async def scenario() -> None:
        found, release = await site.aclaim({"q": "three"})
        assert found is llmcache.MISS
        await site.aput({"q": "three"}, "streamed", latency_s=0.1)
        release()

    asyncio.run(scenario())
    assert recorder.settled[2][0] == 3 and recorder.settled[2][1] is not None


def test_call_fields_are_the_same_in_every_workspace() -> None:
    digests = []
    for workspace, secret in (("a", SECRET), ("b", SECRET[::-1])):
        recorder = Recorder()
        cache = llmcache.Cache(workspace=workspace, tiers=["memory"], secret=secret)
        cache._gate.add(recorder)

        @cache.cached
        def ask(n: int) -> int:
            return n

        ask(3)
        digests.append(call_fields(recorder.entered[0])["call"]["digest"])
    assert digests[0] == digests[1]


# -- modes ---------------------------------------------------------------------------------------
def test_modes_from_the_environment_the_cache_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCACHE_MODE", "replay")
    cache = llmcache.Cache(tiers=["memory"], secret=SECRET)
    assert cache.mode == "replay"
    calls: list[int] = []

    @cache.cached
    def ask(n: int) -> int:
        calls.append(n)
        return n

    with pytest.raises(CacheMiss, match="replay mode"):
        ask(1)
    with llmcache.options(mode="record"):
        assert ask(1) == 1
    assert ask(1) == 1 and calls == [1]  # a recorded call replays
    cache.mode = "refresh"  # re-record: hits are not read
    assert ask(1) == 1 and calls == [1, 1]
    cache.mode = "record"
    assert ask(1) == 1 and calls == [1, 1]
    with llmcache.options(mode="refresh"):
        assert ask(1) == 1 and calls == [1, 1, 1]
    cache.enabled = False
    assert ask(1) == 1 and calls == [1, 1, 1, 1] and not cache._serving
    cache.enabled = True
    assert cache._serving
    monkeypatch.setenv("LLMCACHE_MODE", "replays")
    with pytest.raises(ConfigError, match="LLMCACHE_MODE must be one of"):
        llmcache.Cache(tiers=["memory"], secret=SECRET)
    with pytest.raises(ConfigError, match=r"Cache\.mode must be one of"):
        cache.mode = "play"
    with pytest.raises(ConfigError, match="options"):
        llmcache.options(mode="later")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="limit_wait"):
        llmcache.options(limit_wait=-1)
    with llmcache.options(limit_wait=0) as opts:
        assert opts.limit_wait == 0.0
