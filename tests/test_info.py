"""`llmcache.info(result)` never describes the wrong call, and holds a bounded amount of memory."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
import tracemalloc
from typing import Any

import pytest

import llmcache
from tests.clocks import FakeClock


def memory_cache(**options: Any) -> llmcache.Cache:
    return llmcache.Cache(workspace="info", tiers=["memory"], **options)


def test_a_bypassed_call_is_not_described_as_an_earlier_hit() -> None:
    """Issue 9 item 21: `True` is one object, so a bypassed call reported hit=True, memory."""
    cache = memory_cache()

    @cache.cached
    def approve(question: str) -> bool:
        return True

    approve("q")
    assert llmcache.info(approve("q")).hit  # type: ignore[union-attr]
    with llmcache.options(bypass=True):
        result = approve("q")
    described = llmcache.info(result)
    assert described is None or described.hit is False
    assert described is None or described.tier is None


def test_an_unrelated_literal_is_not_described_as_a_hit() -> None:
    """Issue 9 item 21: `llmcache.info("yes")` on a literal reported another call's hit."""
    cache = memory_cache()

    @cache.cached
    def answer(question: str) -> str:
        return "yes"

    @cache.cached
    def count(question: str) -> int:
        return 7

    answer("q")
    answer("q")  # a hit returning the interned "yes"
    count("q")  # the last call now returned something else
    assert llmcache.info("yes") is None
    assert llmcache.info(None) is None
    assert llmcache.info(7).hit is False  # type: ignore[union-attr]  # count's own miss


def test_a_shared_value_is_described_only_in_its_own_thread() -> None:
    cache = memory_cache()

    @cache.cached
    def nothing(question: str) -> None:
        return None

    nothing("q")
    assert nothing("q") is None
    assert llmcache.info(None).hit  # type: ignore[union-attr]
    seen_elsewhere: list[Any] = []
    thread = threading.Thread(target=lambda: seen_elsewhere.append(llmcache.info(None)))
    thread.start()
    thread.join()
    assert seen_elsewhere == [None]


def test_last_info_describes_every_kind_of_call() -> None:
    cache = memory_cache()

    @cache.cached
    def ask(question: str) -> str:
        return "answer to " + question

    ask("a")
    assert llmcache.last_info().hit is False  # type: ignore[union-attr]
    ask("a")
    last = llmcache.last_info()
    assert last is not None and last.hit and last.tier == "memory" and last.key
    with llmcache.options(bypass=True):
        ask("a")
    last = llmcache.last_info()
    assert last is not None and not last.hit and last.key is None

    disabled = memory_cache(enabled=False)

    @disabled.cached
    def flag(question: str) -> bool:
        return True

    ask("a")  # a hit, then a call of a disabled cache: the last one is what is described
    flag("a")
    last = llmcache.last_info()
    assert last is not None and not last.hit and last.key is None


def test_last_info_is_per_asyncio_task() -> None:
    cache = memory_cache()

    @cache.cached
    async def ask(question: str) -> str:
        return "answer to " + question

    async def two_calls() -> tuple[bool, bool]:
        await ask("b")
        first = llmcache.last_info()
        await ask("b")
        second = llmcache.last_info()
        assert first is not None and second is not None
        return first.hit, second.hit

    async def main() -> list[tuple[bool, bool]]:
        await ask("b")  # stored: both tasks below hit twice
        return list(await asyncio.gather(two_calls(), two_calls()))

    assert asyncio.run(main()) == [(True, True), (True, True)]


def test_fresh_results_keep_their_own_description() -> None:
    cache = memory_cache()

    @cache.cached
    def ask(question: str) -> dict[str, str]:
        return {"answer": question}

    first = ask("a")
    ask("b")
    again = ask("a")
    assert llmcache.info(first).hit is False  # type: ignore[union-attr]
    assert llmcache.info(again).hit is True  # type: ignore[union-attr]
    assert llmcache.info({"answer": "a"}) is None  # an equal object is another object


def test_remembered_results_are_bounded_in_bytes() -> None:
    """Issue 9 item 12: info's record kept 4,096 results alive whatever their size (with a
    16 MiB memory tier, 400 results of 512 KiB grew RSS by 600 MiB)."""
    cache = llmcache.Cache(workspace="info", tiers=["memory://?max_bytes=16MiB"])

    @cache.cached
    def ask(n: int) -> dict[str, str]:
        return {"text": "x" * (512 * 1024), "n": str(n)}

    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(120):
            ask(n)  # every result dropped at once by its caller
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # The memory tier's 16 MiB plus info's 32 MiB bound, with room to spare; before the
    # fix, all 120 results and their records stayed alive (over 120 MiB).
    assert held < 64 * 1024 * 1024, held / 2**20


CONSTANT = {"answer": "always this very object"}


def test_an_object_returned_again_by_a_bypassed_call_is_described_by_that_call() -> None:
    cache = memory_cache()

    @cache.cached
    def ask(question: str) -> dict[str, str]:
        return CONSTANT

    assert llmcache.info(ask("q")).key is not None  # type: ignore[union-attr]  # stored
    with llmcache.options(bypass=True):
        again = ask("q")
    assert again is CONSTANT
    described = llmcache.info(again)
    assert described is not None and described.key is None and not described.hit


def test_hits_hand_out_the_caches_own_copy_of_a_str() -> None:
    """A hit never returns the very object the function returned (an interned literal that
    other code holds too), so `info` on that literal cannot describe the hit."""
    cache = memory_cache()

    @cache.cached
    def answer(question: str) -> str:
        return "yes"

    first = answer("q")
    hit = answer("q")
    assert hit == "yes" and hit is not first
    assert llmcache.info(hit).hit is True  # type: ignore[union-attr]
    assert llmcache.info("yes") is None


def test_the_age_of_a_hit_is_told_by_the_clock_it_is_given() -> None:
    clock = FakeClock()
    cache = llmcache.Cache(workspace="age", tiers=["memory"], clock=clock)

    @cache.cached
    def ask(question: str) -> list[str]:
        return [question]

    ask("q")
    clock.advance(42)
    hit = ask("q")
    described, last = llmcache.info(hit, clock=clock), llmcache.last_info(clock=clock)
    assert described is not None and described.hit and last == described
    assert described.age_s == pytest.approx(42, abs=1)
    real = llmcache.info(hit)  # by default, the real time: the entry was made just now
    assert real is not None and real.age_s is not None and abs(real.age_s) < 1
    cache.close()


def test_the_newest_call_that_returned_an_object_describes_it() -> None:
    """Two cached functions return one module-level object: `info` describes the latest."""
    cache = memory_cache()

    @cache.cached
    def first(question: str) -> dict[str, str]:
        return CONSTANT

    @cache.cached(namespace="second")
    def second(question: str) -> dict[str, str]:
        return CONSTANT

    first("q")
    first_key = llmcache.info(CONSTANT).key  # type: ignore[union-attr]
    second("q")
    described = llmcache.info(CONSTANT)
    assert described is not None and described.key == second.cache_key("q") != first_key
    assert described.namespace == "second"


def test_a_result_is_described_while_thousands_of_later_results_push_others_out() -> None:
    """Results are remembered in a bounded queue, newest kept: the oldest fall out first,
    and one that has fallen out is not described at all (never by another call)."""
    cache = memory_cache()

    @cache.cached
    def ask(n: int) -> list[int]:
        return [n]

    oldest = ask(0)
    kept = [ask(n) for n in range(1, 5000)]
    assert llmcache.info(oldest) is None  # pushed out by 4,096 newer results
    for n, result in enumerate(kept[-100:], start=4900):
        described = llmcache.info(result)
        assert described is not None and described.key == ask.cache_key(n)


def test_remembering_from_many_threads_while_large_results_are_forgotten() -> None:
    """Threads serve small and large hits at once (large ones make the queue drop its
    oldest entries): nothing raises, and each thread's latest result is its own call's."""
    cache = memory_cache()

    @cache.cached
    def ask(n: int) -> dict[str, str]:
        return {"n": str(n), "text": "x" * (64 * 1024 if n % 7 == 0 else 10)}

    for n in range(70):
        ask(n)  # stored: the threads below only hit
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for step in range(2000):
                n = (offset + step) % 70
                result = ask(n)
                described = llmcache.info(result)
                assert described is not None and described.hit
                assert described.key == ask.cache_key(n) and result["n"] == str(n)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_child_forked_while_another_thread_forgets_can_still_forget() -> None:
    """The lock that orders forgetting is new in a forked child (the thread that held it in
    the parent does not exist there)."""
    from llmcache import _info

    with _info._forgetting:  # as if another thread were forgetting at the moment of fork
        pid = os.fork()
        if pid == 0:  # the child: must not wait forever for the parent's lock
            try:
                _info.forget_oldest()
            finally:
                os._exit(0)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung on the parent's lock")
    assert os.waitstatus_to_exitcode(status) == 0
