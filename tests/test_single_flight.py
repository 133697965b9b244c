"""Identical concurrent misses make one real call: threads, asyncio tasks, processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import llmcache


def test_threads_share_one_real_call(memory_cache: llmcache.Cache) -> None:
    calls = 0
    lock = threading.Lock()

    @memory_cache.cached
    def slow(q: str) -> dict[str, str]:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.3)
        return {"answer": q}

    results: list[dict[str, str]] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        results.append(slow("same"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == 1
    assert results == [{"answer": "same"}] * 16
    assert len({id(r) for r in results}) == 16  # every caller got its own object
    info = slow.cache_info()
    assert info.misses == 1 and info.coalesced == 15


def test_threads_all_receive_the_exception_and_nothing_is_stored(
    memory_cache: llmcache.Cache,
) -> None:
    calls = 0

    @memory_cache.cached
    def failing(q: str) -> str:
        nonlocal calls
        calls += 1
        time.sleep(0.2)
        if calls == 1:
            raise ValueError("rate limited")
        return "ok"

    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        try:
            failing("q")
        except ValueError as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 8 and calls == 1
    assert failing("q") == "ok"  # the next call tries again
    assert calls == 2


async def test_asyncio_tasks_share_one_real_call(memory_cache: llmcache.Cache) -> None:
    calls = 0

    @memory_cache.cached
    async def slow(q: str) -> list[str]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return [q]

    results = await asyncio.gather(*(slow("same") for _ in range(50)))
    assert calls == 1
    assert all(r == ["same"] for r in results)
    assert len({id(r) for r in results}) == 50


async def test_asyncio_exception_reaches_every_waiter(memory_cache: llmcache.Cache) -> None:
    calls = 0

    @memory_cache.cached
    async def failing(q: str) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        if calls == 1:
            raise ValueError("boom")
        return "ok"

    results = await asyncio.gather(*(failing("q") for _ in range(10)), return_exceptions=True)
    assert calls == 1 and all(isinstance(r, ValueError) for r in results)
    assert await failing("q") == "ok"


async def test_cancelled_leader_does_not_cancel_waiters(memory_cache: llmcache.Cache) -> None:
    calls = 0

    @memory_cache.cached
    async def slow(q: str) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return q

    leader = asyncio.create_task(slow("q"))
    await asyncio.sleep(0.01)
    follower = asyncio.create_task(slow("q"))
    await asyncio.sleep(0.01)
    leader.cancel()
    assert await follower == "q"
    with pytest.raises(asyncio.CancelledError):
        await leader


def test_async_path_never_blocks_the_event_loop(tmp_path: Path) -> None:
    """Disk reads run on a thread pool: a ticker task keeps ticking during lookups."""
    cache = llmcache.Cache(workspace="w", tiers=[f"disk://{tmp_path}/d"])

    @cache.cached
    async def ask(q: int) -> str:
        return "x" * 50_000 + str(q)

    async def scenario() -> int:
        ticks = 0
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        for i in range(30):
            await ask(i % 3)
        stop = True
        await task
        return ticks

    assert asyncio.run(scenario()) > 30


CHILD = textwrap.dedent(
    """
    import sys, time, llmcache
    directory, marker = sys.argv[1], sys.argv[2]
    cache = llmcache.Cache(workspace="two", tiers=["memory", "disk://" + directory])

    @cache.cached(namespace="proc")
    def slow(question: str) -> str:
        with open(marker, "a") as f:
            f.write("call\\n")
        time.sleep(float(sys.argv[3]))
        return "answer:" + question

    print(slow("shared question"), llmcache.info(slow("shared question")).tier, flush=True)
    """
)


def _run_child(directory: Path, marker: Path, delay: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(marker), str(delay)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_second_process_hits_the_disk_tier(tmp_path: Path) -> None:
    marker = tmp_path / "calls.txt"
    first = _run_child(tmp_path / "d", marker, 0.0)
    assert first.communicate(timeout=60)[0].strip() == "answer:shared question memory"
    second = _run_child(tmp_path / "d", marker, 0.0)
    assert second.communicate(timeout=60)[0].strip() == "answer:shared question memory"
    assert marker.read_text().count("call") == 1


def test_processes_making_the_same_slow_call_make_one(tmp_path: Path) -> None:
    marker = tmp_path / "calls.txt"
    children = [_run_child(tmp_path / "d", marker, 1.5) for _ in range(4)]
    outputs = [c.communicate(timeout=60)[0].strip() for c in children]
    assert all(o.startswith("answer:shared question") for o in outputs)
    assert marker.read_text().count("call") == 1
