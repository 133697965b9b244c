"""Spend budgets: a miss that would start once a budget is spent raises BudgetExceeded (or is
served a stale entry on request); hits are always served; the spend is shared by processes
through the shared tier, so a budget is overspent only by the calls already in flight."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import llmcache
from llmcache import BudgetExceeded, CallRefused, ConfigError
from llmcache._budget import parse_budgets, period_of
from tests.clocks import FakeClock
from tests.servers.redis_server import RedisCluster, RedisServer

SECRET = "budget-tests-secret-0123456789ab"
DAY = 86400.0


def priced(cost: float) -> Any:
    """A usage hook: every result cost `cost` dollars."""
    return lambda result: {"model": "m", "input_tokens": 10, "cost_usd": cost}


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


def test_budget_specs_and_clear_errors() -> None:
    assert parse_budgets(5) == {"*": {"day": 5.0}}
    assert parse_budgets({"day": 1, "month": 20}) == {"*": {"day": 1.0, "month": 20.0}}
    assert parse_budgets({"research": {"month": 3}, "*": 2}) == {
        "research": {"month": 3.0},
        "*": {"day": 2.0},
    }
    bad: list[Any] = [
        -1,
        float("nan"),
        "5",
        True,
        {},
        {"week": 3},
        {"day": 1, "research": 2},
        {"research": {"year": 1}},
        {"bad name!": 1},
        {"research": "lots"},
    ]
    for spec in bad:
        with pytest.raises(ConfigError):
            llmcache.Cache(tiers=["memory"], budget_usd=spec)
    with pytest.raises(ConfigError, match="'day' and/or 'month'"):
        parse_budgets({"research": {"week": 1}})


def test_periods_are_utc_days_and_months() -> None:
    now = 1_796_169_600.0 + 3600  # 2026-12-02T01:00Z
    assert period_of("day", now) == ("day:2026-12-02", [int(now // DAY)])
    name, days = period_of("month", now)
    assert name == "month:2026-12" and len(days) == 2 and days[-1] == int(now // DAY)


def test_a_spent_budget_refuses_misses_and_serves_hits() -> None:
    clock = FakeClock(1_796_169_600.0)
    cache = llmcache.Cache(tiers=["memory"], secret=SECRET, budget_usd=0.25, clock=clock)
    calls: list[int] = []

    @cache.cached(usage=priced(0.1))
    def ask(n: int) -> str:
        calls.append(n)
        return f"answer {n}"

    assert [ask(n) for n in range(3)] == ["answer 0", "answer 1", "answer 2"]  # $0.30 > $0.25
    with pytest.raises(BudgetExceeded) as refused:
        ask(3)
    error = refused.value
    assert isinstance(error, CallRefused)
    assert (error.period, error.scope, error.limit_usd) == ("day", "*", 0.25)
    assert error.spent_usd == pytest.approx(0.3)
    assert "daily budget of workspace 'default' is spent" in str(error)
    assert "Cache(budget_usd=...)" in str(error) and "budget='stale'" in str(error)
    assert ask(1) == "answer 1"  # a hit is always served
    assert calls == [0, 1, 2]
    clock.advance(DAY)  # a new UTC day: a new daily budget
    assert ask(3) == "answer 3"
    assert calls == [0, 1, 2, 3]
    status = cache.budgets()
    assert [(r["scope"], r["period"]) for r in status] == [("*", "day")]
    assert status[0]["spent_usd"] == pytest.approx(0.1)
    assert status[0]["left_usd"] == pytest.approx(0.15)


def test_namespace_budgets_are_apart_and_the_workspace_budget_covers_all() -> None:
    cache = llmcache.Cache(
        tiers=["memory"], secret=SECRET, budget_usd={"research": 0.15, "*": {"month": 0.35}}
    )

    @cache.cached(namespace="research", usage=priced(0.1))
    def research(n: int) -> int:
        return n

    @cache.cached(namespace="chat", usage=priced(0.1))
    def chat(n: int) -> int:
        return n

    research(1)
    research(2)  # $0.20 spent in research: its daily budget of $0.15 is over
    with pytest.raises(BudgetExceeded, match="namespace 'research'"):
        research(3)
    chat(1)  # another namespace is not held by research's budget
    chat(2)  # $0.30 in all before it: under the workspace's $0.35 a month
    with pytest.raises(BudgetExceeded) as refused:  # $0.40: the workspace's month is spent
        chat(3)
    assert (refused.value.scope, refused.value.period) == ("*", "month")


def test_stale_entry_is_served_on_request_when_the_budget_is_spent() -> None:
    clock = FakeClock(1_796_169_600.0)
    cache = llmcache.Cache(tiers=["memory"], secret=SECRET, budget_usd=0.05, clock=clock)
    calls: list[int] = []

    @cache.cached(usage=priced(0.1))
    def ask(n: int) -> str:
        calls.append(n)
        return f"answer {n} #{len(calls)}"

    assert ask(1) == "answer 1 #1"  # spends the whole budget
    clock.advance(120)
    with llmcache.options(max_age=60):  # the entry is too old for these calls
        with pytest.raises(BudgetExceeded):
            ask(1)
        with llmcache.options(budget="stale"):
            assert ask(1) == "answer 1 #1"  # the old entry, served
            with pytest.raises(BudgetExceeded):  # nothing stored at all for this one
                ask(2)
    assert calls == [1]
    with pytest.raises(ConfigError, match="'raise' or 'stale'"):
        llmcache.options(budget="later")  # type: ignore[arg-type]


def test_stale_entry_from_a_lower_tier(tmp_path: Any) -> None:
    cache = llmcache.Cache(tiers=[f"disk://{tmp_path}"], secret=SECRET, budget_usd={"day": 0.05})

    @cache.cached(usage=priced(0.1))
    def ask(n: int) -> dict[str, int]:
        return {"n": n}

    assert ask(1) == {"n": 1}
    with llmcache.options(max_age=0.000_001):  # the stored entry is too old for this call
        with pytest.raises(BudgetExceeded):
            ask(1)
        with llmcache.options(budget="stale"):
            assert ask(1) == {"n": 1}


def test_async_calls_are_held_too() -> None:
    cache = llmcache.Cache(tiers=["memory"], secret=SECRET, budget_usd=0.1)

    @cache.cached(usage=priced(0.1))
    async def ask(n: int) -> int:
        return n

    async def scenario() -> None:
        assert await ask(1) == 1
        with pytest.raises(BudgetExceeded):
            await ask(2)
        assert await ask(1) == 1

    asyncio.run(scenario())


def test_a_failed_call_spends_nothing_and_unpriced_calls_count_nothing() -> None:
    cache = llmcache.Cache(tiers=["memory"], secret=SECRET, budget_usd=0.1)

    @cache.cached(usage=lambda result: {"model": "m", "input_tokens": 5})  # no price known
    def unpriced(n: int) -> int:
        return n

    @cache.cached(usage=priced(0.05))
    def failing(n: int) -> int:
        raise RuntimeError("provider down")

    for n in range(5):
        unpriced(n)
        with pytest.raises(RuntimeError):
            failing(n)
    assert cache.budgets()[0]["spent_usd"] == 0.0


def _spender(url: str, log_url: str, workspace: str, tag: str, results: Any) -> None:
    cache = llmcache.Cache(
        workspace=workspace, secret=SECRET, tiers=[url], budget_usd=1.0, lock_wait=0
    )
    log = redis.Redis.from_url(log_url)  # the provider's request log

    @cache.cached(usage=priced(0.1))
    def ask(question: str) -> str:
        log.rpush(f"{workspace}:requests", question)
        return question

    refused = 0
    for n in range(30):
        try:
            ask(f"{tag}-{n}")  # distinct calls: no process hits another's entries
        except BudgetExceeded:
            refused += 1
    cache.close()
    results.put(refused)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster(join="meet") as started:
        yield started


@pytest.mark.parametrize("kind", ["redis", "cluster"])
def test_processes_sharing_a_budget_never_overspend(
    server: RedisServer, kind: str, request: pytest.FixtureRequest
) -> None:
    """Three processes making distinct calls of $0.10 against $1.00 a day: each makes one
    call at a time, so at most three are in flight when the budget is reached."""
    url = server.patient_url if kind == "redis" else request.getfixturevalue("cluster").patient_url
    workspace = f"budget-{uuid.uuid4().hex[:8]}"
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=_spender, args=(url, server.url, workspace, f"p{i}", results))
        for i in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    refused = sum(results.get(timeout=5) for _ in workers)
    made = server.client().llen(f"{workspace}:requests")
    assert 10 <= made <= 10 + 2  # $1.00 / $0.10, plus at most the other two in flight
    assert made + refused == 90
    cache = llmcache.Cache(workspace=workspace, secret=SECRET, tiers=[url])
    report = cache.report()
    assert report.totals.spent_usd == pytest.approx(made * 0.1)
    assert cache.budgets()[0]["spent_usd"] == pytest.approx(made * 0.1)  # declared by them
    cache.close()


def test_shared_tier_down_falls_back_to_this_process_ledger() -> None:
    with RedisServer() as server:
        cache = llmcache.Cache(
            secret=SECRET, tiers=[server.patient_url], budget_usd=0.15, lock_wait=0
        )

        @cache.cached(usage=priced(0.1))
        def ask(n: int) -> int:
            return n

        ask(1)
        server.stop()
        ask(2)  # the record cannot be read or written: the ledger's pending spend counts
        with pytest.raises(BudgetExceeded):
            ask(3)
        cache.close()


def test_a_forked_child_keeps_the_budget(tmp_path: Any) -> None:
    cache = llmcache.Cache(tiers=[f"disk://{tmp_path}"], secret=SECRET, budget_usd=0.15)

    @cache.cached(usage=priced(0.1))
    def ask(n: int) -> int:
        return n

    ask(1)
    cache._budget._lock.acquire()  # type: ignore[union-attr]  # held at the fork, as by a thread
    try:
        pid = os.fork()
        if pid == 0:  # the child: its own lock, and the parent's spend still counts
            code = 1
            try:
                ask(2)  # $0.20 spent: the next miss is refused
                try:
                    ask(3)
                except BudgetExceeded:
                    code = 0
            finally:
                os._exit(code)
    finally:
        cache._budget._lock.release()  # type: ignore[union-attr]
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_wrapped_client_is_held_plain_and_streamed() -> None:
    from openai import OpenAI

    from llmcache.testing import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        cache = llmcache.Cache(tiers=["memory"], secret=SECRET, budget_usd=0.000_001)
        client = cache.wrap(
            OpenAI(base_url=server.base_url, api_key="test", max_retries=0), provider="openai"
        )

        def ask(question: str, stream: bool = False) -> Any:
            return client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": question}],
                max_tokens=20,
                stream=stream,
            )

        first = ask("one")  # spends more than the whole budget
        assert ask("one").id == first.id  # a hit is served
        with pytest.raises(BudgetExceeded):
            ask("two")
        with pytest.raises(BudgetExceeded):
            ask("three", stream=True)  # refused before any request is sent
        assert server.requests == 1
        spent = cache.budgets()[0]["spent_usd"]
        assert spent > 0.000_001

        roomy = llmcache.Cache(tiers=["memory"], secret=SECRET + "x", budget_usd=1.0)
        streamed = roomy.wrap(
            OpenAI(base_url=server.base_url, api_key="test", max_retries=0), provider="openai"
        )
        chunks = list(
            streamed.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "four"}],
                max_tokens=20,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks and roomy.budgets()[0]["spent_usd"] > 0  # a stream's cost is counted
