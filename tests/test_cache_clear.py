"""`fn.cache_clear()`: drops one cached function's entries in its workspace, everywhere."""

from __future__ import annotations

import asyncio
from pathlib import Path

import llmcache

from .clocks import wait_until


def _counting(cache: llmcache.Cache, calls: list[str]) -> tuple[object, object]:
    @cache.cached(namespace="n")
    def f(x: int) -> str:
        calls.append(f"f{x}")
        return f"f{x}"

    @cache.cached(namespace="n")
    def g(x: int) -> str:
        calls.append(f"g{x}")
        return f"g{x}"

    return f, g


def test_cache_clear_drops_this_functions_entries_only(tmp_path: Path) -> None:
    cache = llmcache.Cache(workspace="w", tiers=["memory", f"disk://{tmp_path}/d"])
    calls: list[str] = []
    f, g = _counting(cache, calls)
    f(1), g(1), f(1), g(1)  # type: ignore[operator]
    assert calls == ["f1", "g1"]
    before = f.cache_key(1)  # type: ignore[attr-defined]
    assert f.cache_clear() is None  # type: ignore[attr-defined]
    assert f.cache_key(1) != before  # type: ignore[attr-defined]
    f(1), g(1)  # type: ignore[operator]
    assert calls == ["f1", "g1", "f1"]  # g's entry survived, in memory and on disk
    cache.memory.clear()  # type: ignore[union-attr]
    g(1)  # type: ignore[operator]
    assert calls == ["f1", "g1", "f1"]
    cache.invalidate("n")  # the namespace's invalidation still covers every function
    f(1), g(1)  # type: ignore[operator]
    assert calls == ["f1", "g1", "f1", "f1", "g1"]
    cache.close()


def test_another_process_stops_serving_the_cleared_function(tmp_path: Path) -> None:
    """Two caches on one disk file stand for two processes: the second one's memory tier
    stops serving f within a generation poll, and keeps serving g."""
    tiers = ["memory", f"disk://{tmp_path}/d"]
    ours = llmcache.Cache(workspace="w", tiers=tiers, generation_poll=0.05)
    theirs = llmcache.Cache(workspace="w", tiers=tiers, generation_poll=0.05)
    our_calls: list[str] = []
    their_calls: list[str] = []
    our_f, _ = _counting(ours, our_calls)
    their_f, their_g = _counting(theirs, their_calls)
    our_f(1)  # type: ignore[operator]
    assert their_f(1) == "f1" and their_calls == []  # type: ignore[operator]
    their_g(1)  # type: ignore[operator]
    our_f.cache_clear()  # type: ignore[attr-defined]
    # Their watcher reads the new generation within a poll (50 ms): then f(1) is a miss.
    wait_until(lambda: their_f(1) and their_calls == ["g1", "f1"], what="their f cleared")  # type: ignore[operator]
    their_g(1)  # type: ignore[operator]
    assert their_calls == ["g1", "f1"]
    ours.close()
    theirs.close()


def test_cache_clear_on_a_method_and_an_async_function() -> None:
    cache = llmcache.Cache(workspace="w", tiers=["memory"])
    calls: list[str] = []

    class Assistant:
        @cache.cached
        def answer(self, q: str) -> str:
            calls.append(q)
            return q.upper()

    @cache.cached
    async def aanswer(q: str) -> str:
        calls.append("async " + q)
        return q

    one, other = Assistant(), Assistant()
    one.answer("q"), other.answer("q")
    other.answer.cache_clear()  # the instance is not in the key: one entry for both
    one.answer("q")
    asyncio.run(aanswer("q"))
    aanswer.cache_clear()
    asyncio.run(aanswer("q"))
    assert calls == ["q", "q", "async q", "async q"]
