"""Rate limits on the miss path, in one process (the memory tier's windows): what counts,
waiting, failing fast, token settling, namespaces, and the async flow."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI

import llmcache
from llmcache import Limit, RateLimited, Usage
from llmcache._limits import LimitCheck
from llmcache._limits._check import DEFAULT_OUTPUT_TOKENS, margin
from llmcache.testing import FakeOpenAIServer
from tests.clocks import FakeClock, wait_until


def limit_check(cache: llmcache.Cache) -> LimitCheck:
    (check,) = [c for c in cache._gate.checks if isinstance(c, LimitCheck)]
    return check


def on_fake_time(cache: llmcache.Cache) -> tuple[FakeClock, list[float]]:
    """The cache's limits on a fake clock; each wait moves it (and is noted)."""
    clock, slept = FakeClock(0.0), []
    check = limit_check(cache)
    check.clock = check.local.clock = clock

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    check.sleep = sleep
    return clock, slept


@pytest.fixture
def cache() -> Iterator[llmcache.Cache]:
    with llmcache.Cache(
        workspace="limits", tiers=["memory"], limits={"*": "3/min"}, limit_wait=0
    ) as made:
        yield made


def window_total(cache: llmcache.Cache) -> dict[str, float]:
    """What each in-process window holds now, by key."""
    windows = limit_check(cache).local._windows
    return {key: sum(e.cost for e in w.entries) for key, w in windows.items()}


def test_hits_never_count_and_fail_fast_says_which_limit(cache: llmcache.Cache) -> None:
    on_fake_time(cache)
    calls: list[str] = []

    @cache.cached
    def ask(question: str, model: str = "gpt-4o-mini") -> str:
        calls.append(question)
        return question.upper()

    for question in ("a", "b", "c"):
        ask(question)
    for _ in range(5):
        assert ask("a") == "A"  # hits: served, never counted
    with pytest.raises(RateLimited) as raised:
        ask("d")
    assert calls == ["a", "b", "c"]
    error = raised.value
    assert (error.limit, error.model, error.window_s) == ("3/min", "gpt-4o-mini", 60.0)
    assert error.retry_after_s == pytest.approx(60.0 + margin(60.0))
    text = str(error)
    for part in ("3/min", "'gpt-4o-mini'", "60 s sliding window", "fail-fast", "60.25 s"):
        assert part in text
    assert "options(limit_wait=...)" in text and "Cache(limits=...)" in text
    assert isinstance(error, llmcache.CallRefused)


def test_a_miss_waits_for_its_slot_then_succeeds(cache: llmcache.Cache) -> None:
    clock, slept = on_fake_time(cache)

    @cache.cached
    def ask(n: int) -> int:
        return n

    for n in range(3):
        ask(n)
        clock.advance(1.0)
    with llmcache.options(limit_wait=120):
        assert ask(3) == 3
    # One sleep: until the first call's slot freed (60 s + margin after it was taken).
    assert len(slept) == 1
    assert 57.0 + margin(60) < slept[0] < 57.0 + margin(60) + 0.01
    # A wait shorter than the next slot's is not waited out: it fails at once.
    with llmcache.options(limit_wait=0.5), pytest.raises(RateLimited) as raised:
        ask(4)
    assert len(slept) == 1
    assert "no slot within 0.5 s" in str(raised.value)
    assert raised.value.retry_after_s == pytest.approx(1.0, abs=0.01)


def test_the_cache_wait_is_the_default(cache: llmcache.Cache) -> None:
    _, slept = on_fake_time(cache)
    cache.limit_wait = 100.0

    @cache.cached
    def ask(n: int) -> int:
        return n

    for n in range(4):
        ask(n)
    assert len(slept) == 1


def test_tokens_reserve_an_estimate_and_settle_to_real_usage() -> None:
    with llmcache.Cache(
        tiers=["memory"], limits={"gpt-4o": "1000 tokens/min"}, limit_wait=0
    ) as cache:
        on_fake_time(cache)
        used = {"input": 40, "output": 60}

        def usage(result: Any) -> Usage:
            return Usage(model="gpt-4o", input_tokens=used["input"], output_tokens=used["output"])

        @cache.cached(usage=usage)
        def ask(prompt: str, model: str = "gpt-4o", max_tokens: int = 600) -> str:
            if prompt == "fail":
                raise RuntimeError("provider error")
            return prompt

        ask("a")  # reserves 600 + its size / 4; settles to 100
        assert list(window_total(cache).values()) == [100.0]
        ask("b")  # fits only because the first settled: 2 x 600 > 1000
        assert list(window_total(cache).values()) == [200.0]
        with pytest.raises(RuntimeError):
            ask("fail")  # a failed call gives its tokens back
        assert list(window_total(cache).values()) == [200.0]
        used["output"] = 760
        ask("c")
        assert list(window_total(cache).values()) == [1000.0]
        with pytest.raises(RateLimited) as raised:
            ask("d", max_tokens=10)
        assert raised.value.limit == "1000 tokens/min"


def test_token_estimates_without_max_tokens_or_usage() -> None:
    with llmcache.Cache(
        tiers=["memory"], limits={"*": Limit(requests=10, tokens=5000, per="min")}, limit_wait=0
    ) as cache:
        clock, _ = on_fake_time(cache)

        @cache.cached
        def ask(prompt: str) -> str:
            return prompt  # reports no usage: the estimate stands

        ask("x" * 400)
        totals = window_total(cache)
        tokens = [v for k, v in totals.items() if k.endswith("t")]
        requests = [v for k, v in totals.items() if k.endswith("r")]
        assert requests == [1.0]
        assert DEFAULT_OUTPUT_TOKENS + 100 <= tokens[0] <= DEFAULT_OUTPUT_TOKENS + 130
        # A reservation larger than the whole limit is clamped to it (it would never fit).
        clock.advance(61)
        ask("y" * 40_000)
        assert [v for k, v in window_total(cache).items() if k.endswith("t")] == [5000.0]
        with pytest.raises(RateLimited) as raised:
            ask("z")
        assert raised.value.limit == "5000 tokens/min"


def test_namespace_limits_add_to_the_workspace_s() -> None:
    limits = {"gpt-4o": "3/min", "research": {"*": "1/min"}, "*": "100/min"}
    with llmcache.Cache(tiers=["memory"], limits=limits, limit_wait=0) as cache:
        on_fake_time(cache)

        @cache.cached(namespace="research")
        def research(n: int, model: str = "gpt-4o") -> int:
            return n

        @cache.cached(namespace="other")
        def other(n: int, model: str = "gpt-4o") -> int:
            return n

        research(1)
        with pytest.raises(RateLimited) as raised:
            research(2)  # the namespace's 1/min
        assert "namespace 'research' of workspace" in str(raised.value)
        other(1)
        other(2)
        with pytest.raises(RateLimited) as raised:
            other(3)  # the workspace's 3/min for gpt-4o, with research's call
        assert raised.value.limit == "3/min"
        # The namespace's slot was given back when the workspace's was refused, and back.
        assert other(4, model="gpt-4o-mini") == 4  # "*": another model, another window


def test_calls_without_a_model_share_the_star_window() -> None:
    with llmcache.Cache(tiers=["memory"], limits={"*": "1/min"}, limit_wait=0) as cache:
        on_fake_time(cache)

        @cache.cached
        def first(n: int) -> int:
            return n

        @cache.cached
        def second(n: int) -> int:
            return n

        first(1)
        with pytest.raises(RateLimited) as raised:
            second(1)
        assert raised.value.model == "*"
        assert "calls that name no model" in str(raised.value)


def test_a_cache_without_shared_windows_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="llmcache"):
        cache = llmcache.Cache(tiers=["memory"], limits={"*": "1/min"})
    assert "enforced per process" in caplog.text
    health = cache.health()
    assert health.ok
    assert health.notes == [
        "rate limits enforced per process only: no tier keeps shared rate-limit windows "
        "(Redis or Upstash does)"
    ]
    assert "enforced per process" in str(health)
    cache.close()
    with llmcache.Cache(tiers=["memory"]) as unlimited:
        assert unlimited.health().notes == []


async def test_async_waiting_awaits_and_never_blocks_the_loop() -> None:
    window = 0.4
    with llmcache.Cache(
        tiers=["memory"], limits={"*": Limit(requests=1, per=window)}, limit_wait=5
    ) as cache:

        @cache.cached
        async def ask(n: int) -> int:
            return n

        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        await ask(1)
        started, ticks_before = time.monotonic(), ticks
        assert await ask(2) == 2  # waits for the window: about 0.4 s
        waited = time.monotonic() - started
        stop.set()
        await task
        assert waited >= window * 0.9
        assert ticks - ticks_before >= 5  # the loop ran other tasks meanwhile
        with llmcache.options(limit_wait=0), pytest.raises(RateLimited):
            await ask(3)


def test_openai_calls_settle_the_tokens_the_server_reported() -> None:
    with (
        FakeOpenAIServer() as server,
        OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as raw,
        llmcache.Cache(
            tiers=["memory"], limits={"gpt-4o-mini": "100000 tokens/min; 10/min"}
        ) as cache,
    ):
        client = cache.wrap(raw, provider="openai")
        reply = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "How many tokens is this?"}],
            max_tokens=500,
        )
        again = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "How many tokens is this?"}],
            max_tokens=500,
        )
        assert again.id == reply.id  # a hit: not counted
        totals = window_total(cache)
        (tokens,) = [v for k, v in totals.items() if k.endswith("t")]
        (requests,) = [v for k, v in totals.items() if k.endswith("r")]
        assert reply.usage is not None
        assert tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
        assert requests == 1.0
        key = next(iter(totals))
        assert "gpt-4o-mini" not in key  # the model is named by a keyed hash (as in the ledger)
        assert ":h" in key and key.split(":")[2] == "*"


async def test_async_calls_give_back_settle_and_skip_unlimited_models() -> None:
    limits = {"gpt-4o": "2/min; 1000 tokens/min", "research": {"gpt-4o": "1/min"}}
    with llmcache.Cache(tiers=["memory"], limits=limits, limit_wait=0) as cache:

        def usage(result: Any) -> Usage:
            return Usage(model="gpt-4o", input_tokens=10, output_tokens=20)

        @cache.cached(namespace="research", usage=usage)
        async def research(n: int, model: str = "gpt-4o", max_tokens: int = 100) -> int:
            return n

        assert await research(1) == 1
        # Settled off the event loop, on llmcache's I/O threads.
        wait_until(lambda: 30.0 in window_total(cache).values(), 5, "settled")
        with pytest.raises(RateLimited):
            await research(2)  # the namespace's 1/min, after the workspace's slot was taken
        assert sorted(window_total(cache).values()) == [1.0, 1.0, 30.0]  # and given back
        for n in range(5):
            assert await research(n, model="gpt-4o-mini") == n  # no limit for that model
        assert len(window_total(cache)) == 3  # no window was made for it


def test_backends_without_windows_refuse_them() -> None:
    from llmcache._memory import MemoryTier

    tier = MemoryTier()
    assert not tier.supports_windows
    with pytest.raises(NotImplementedError):
        tier.window_take("k", 1.0, 1, 1, "m")
    with pytest.raises(NotImplementedError):
        tier.window_settle("k", "m", 1, None)

    async def in_a_loop() -> None:
        with pytest.raises(NotImplementedError):
            await tier.awindow_take("k", 1.0, 1, 1, "m")
        with pytest.raises(NotImplementedError):
            await tier.awindow_settle("k", "m", 1, None)

    asyncio.run(in_a_loop())


def test_calls_no_limit_applies_to_take_nothing() -> None:
    with llmcache.Cache(tiers=["memory"], limits={"gpt-4o": "1/min"}, limit_wait=0) as cache:

        @cache.cached
        def ask(n: int, model: str = "gpt-4o-mini") -> int:
            return n

        assert [ask(n) for n in range(3)] == [0, 1, 2]
        assert window_total(cache) == {}
        limit_check(cache).settle(None, {"input_tokens": 5})  # nothing was taken
