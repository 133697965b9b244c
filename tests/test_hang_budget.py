"""A call pays at most one deadline to a tier that stopped answering (issue 15, item 4).

A miss makes several operations on the shared tier (get, try_lock, set, unlock): a hung
server (SIGSTOP, CLIENT PAUSE) used to cost each of them a whole deadline until the breaker
opened. Here a real redis-server is stopped with SIGSTOP (the kernel still accepts
connections, nothing answers), and every cached miss, sync and async, alone or many at
once, must return its real result within one deadline (``timeout + connect_timeout``) and
a margin for a busy machine. After the cooldown, one probe tries the hung tier: only the
call that probes waits for it.

The timeouts are long (0.8 s) so that the margin can be generous and still smaller than a
second deadline: the old behaviour (two or three deadlines per call) cannot pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import llmcache
from llmcache._resilience import GuardedTier
from tests.clocks import wait_until
from tests.servers.redis_server import RedisServer

SECRET = "hang-budget-secret-0123456789abcd"
TIMEOUT = 0.8
CONNECT_TIMEOUT = 0.1
ONE_DEADLINE = TIMEOUT + CONNECT_TIMEOUT  # the longest one operation may take
MARGIN = 0.5  # a busy machine's scheduling; still less than a second TIMEOUT
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


@contextlib.contextmanager
def hung(server: RedisServer) -> Iterator[None]:
    """The server stopped (SIGSTOP) inside the block: connections open, nothing answers."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


def make_cache(server: RedisServer) -> llmcache.Cache:
    url = (
        f"{server.url}?timeout={TIMEOUT}&connect_timeout={CONNECT_TIMEOUT}"
        f"&async_timeout={TIMEOUT}&async_connect_timeout={CONNECT_TIMEOUT}"
    )
    # No polling during the test: the watcher's own timeouts would open the breakers
    # sooner and hide what a caller pays.
    return llmcache.Cache(
        workspace=f"hang-{uuid.uuid4().hex[:8]}", secret=SECRET, tiers=[url], generation_poll=60
    )


def redis_tier(cache: llmcache.Cache) -> GuardedTier:
    (tier,) = cache._tiers
    return tier


def timed_in_threads(work: list[Any]) -> list[tuple[object, float]]:
    """Run each of `work` in a thread of its own, all at once: (result, seconds) each."""
    outcomes: list[tuple[object, float]] = [(None, -1.0)] * len(work)

    def run(index: int) -> None:
        started = time.monotonic()
        try:
            result: object = work[index]()
        except BaseException as error:  # a caller must never see one: recorded, asserted
            result = error
        outcomes[index] = (result, time.monotonic() - started)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10 * ONE_DEADLINE)  # the bug must fail the test, not hang the suite
    assert not any(thread.is_alive() for thread in threads), "a call is still blocked"
    return outcomes


def test_sync_misses_during_a_hang_each_pay_one_deadline(server: RedisServer) -> None:
    cache = make_cache(server)

    @cache.cached(namespace="n")
    def ask(question: str) -> str:
        return f"answer to {question}"

    def two_misses(name: str) -> list[tuple[str, float]]:
        """Two misses in a row on one thread, each timed."""
        timed = []
        for question in (f"{name}-first", f"{name}-second"):
            started = time.monotonic()
            answer = ask(question)
            timed.append((answer, time.monotonic() - started))
        return timed

    try:
        assert ask("warm") == "answer to warm"  # namespace loaded, a connection pooled
        with hung(server):
            outcomes = timed_in_threads([lambda n=n: two_misses(f"t{n}") for n in range(4)])
        for (calls, _), name in zip(outcomes, ("t0", "t1", "t2", "t3"), strict=True):
            assert isinstance(calls, list), calls
            for (answer, took), question in zip(calls, ("first", "second"), strict=True):
                assert answer == f"answer to {name}-{question}"
                assert took < ONE_DEADLINE + MARGIN, (name, question, took)
    finally:
        cache.close()


def test_async_misses_during_a_hang_each_pay_one_deadline(server: RedisServer) -> None:
    cache = make_cache(server)

    @cache.cached(namespace="a")
    async def ask(question: str) -> str:
        return f"answer to {question}"

    async def timed(question: str) -> tuple[str, float]:
        started = time.monotonic()
        answer = await ask(question)
        return answer, time.monotonic() - started

    async def scenario() -> list[tuple[str, str, float]]:
        assert await ask("warm") == "answer to warm"
        results = []
        with hung(server):
            together = await asyncio.gather(*(timed(f"many-{n}") for n in range(10)))
            results += [(f"many-{n}", *outcome) for n, outcome in enumerate(together)]
            for n in range(2):  # one task, one miss after another
                results.append((f"alone-{n}", *await timed(f"alone-{n}")))
        return results

    try:
        outcomes = timed_in_threads([lambda: asyncio.run(scenario())])
        results = outcomes[0][0]
        assert isinstance(results, list), results
        for question, answer, took in results:
            assert answer == f"answer to {question}"
            assert took < ONE_DEADLINE + MARGIN, (question, took)
    finally:
        cache.close()


def test_the_half_open_probe_costs_only_the_probing_call(server: RedisServer) -> None:
    cache = make_cache(server)
    tier = redis_tier(cache)

    @cache.cached(namespace="p")
    def ask(question: str) -> str:
        return f"answer to {question}"

    try:
        assert ask("warm") == "answer to warm"
        with hung(server):
            # Enough timeouts (one per thread) to open both breakers.
            opened = timed_in_threads(
                [lambda n=n: ask(f"open-{n}") for n in range(tier.failure_threshold)]
            )
            assert all(took < ONE_DEADLINE + MARGIN for _, took in opened), opened
            assert tier.reads.state == "open" and tier.writes.state == "open"
            # The breakers' cooldown is real time (monotonic), on purpose: wait it out.
            wait_until(
                lambda: tier.reads.state == tier.writes.state == "half-open",
                2 * tier.cooldown + MARGIN,
                "both breakers due a probe",
                interval=0.01,
            )
            # Both directions are due a probe; callers arrive together.
            probed = timed_in_threads([lambda n=n: ask(f"probe-{n}") for n in range(6)])
        for n, (answer, took) in enumerate(probed):
            assert answer == f"answer to probe-{n}"
            assert took < ONE_DEADLINE + MARGIN, (n, took)
        waited = [took for _, took in probed if took >= TIMEOUT]
        assert len(waited) <= 1, probed  # one probe for both breakers: one call waits
        assert tier.reads.state == "open"  # the probe failed: open again, backed off
    finally:
        cache.close()
