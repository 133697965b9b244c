"""LiteLLM hit benchmark: `litellm.completion(...)` served by our cache, next to LiteLLM's own.

    python benchmarks/bench_litellm.py

Two ``litellm.Cache`` objects answer the same ~1 KiB chat request from memory: ours
(``llmcache_litellm.cache(llmcache.Cache(tiers=["memory"]))``: signed key, the memory tier,
counters, ledger) and LiteLLM's own in-memory cache (``litellm.Cache(type="local")``). The
cases are timed in turns in one run (``measure_interleaved``), so noise lands on both alike,
and the ratio is ours over theirs. Target: ours is never slower than theirs (ratio <= 1.0
within the run's noise). The backend's own ``get_cache`` is timed beside LiteLLM's
``InMemoryCache.get_cache`` too: that is the part where the two differ; the rest of a hit
(LiteLLM's key derivation, building the ``ModelResponse``, its logging) is LiteLLM's in both.
"""

from __future__ import annotations

import asyncio
import os
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch from GitHub

sys.path.insert(0, str(Path(__file__).resolve().parent))
import litellm
import llmcache_litellm
from _timing import measure_interleaved
from litellm.litellm_core_utils import litellm_logging
from litellm.litellm_core_utils import logging_worker as litellm_logging_worker

import llmcache
from llmcache.testing import FakeOpenAIServer

MESSAGES = [
    {"role": "system", "content": "You are a concise research assistant. " * 6},
    {
        "role": "user",
        "content": "Summarise the main arguments for and against caching LLM calls, "
        "with attention to cost, latency, determinism and tenant isolation. " * 5,
    },
]


class InlineExecutor:
    """Runs what LiteLLM hands its logging thread pool at once, in the caller.

    A hit's success logging otherwise runs on a pool thread after the call returns, and on
    2 cores it slows whichever case is timed next: each case pays for its own logging here.
    """

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        done: Future[Any] = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except Exception as error:
            done.set_exception(error)
        return done


async def settled(call: Any) -> Any:
    """Await `call`, then the logging LiteLLM queued for it (so the next case does not)."""
    result = await call
    worker = litellm_logging_worker.GLOBAL_LOGGING_WORKER
    while worker.pending_count:
        await asyncio.sleep(0)
    for _ in range(3):  # the tasks the worker started for it
        await asyncio.sleep(0)
    return result


def ordered(pair: tuple[str, Any, str, Any], flip: bool) -> list[tuple[str, Any]]:
    mine, theirs = (pair[0], pair[1]), (pair[2], pair[3])
    return [theirs, mine] if flip else [mine, theirs]


def main() -> int:
    litellm.suppress_debug_info = True
    litellm_logging.executor = InlineExecutor()  # type: ignore[assignment]
    with FakeOpenAIServer() as server:
        call: dict[str, Any] = {
            "model": "openai/gpt-4o-mini",
            "messages": MESSAGES,
            "temperature": 0.2,
            "max_tokens": 256,
            "api_base": server.base_url,
            "api_key": "bench",
        }
        store = llmcache.Cache(workspace="bench", tiers=["memory"])
        ours = llmcache_litellm.cache(store)
        theirs = litellm.Cache(type="local")

        def hit_with(chosen: Any) -> Any:
            def run() -> Any:
                litellm.cache = chosen
                return litellm.completion(**call)

            return run

        loop = asyncio.new_event_loop()  # one loop: LiteLLM's logging worker is bound to it

        def ahit_with(chosen: Any) -> Any:
            def run() -> Any:
                litellm.cache = chosen
                return loop.run_until_complete(settled(litellm.acompletion(**call)))

            return run

        ours_hit, theirs_hit = hit_with(ours), hit_with(theirs)
        ours_ahit, theirs_ahit = ahit_with(ours), ahit_with(theirs)
        for run in (ours_hit, theirs_hit):  # one miss each, then hits only
            run()
            run()
        assert server.requests == 2, server.requests
        assert ours_hit()._hidden_params["cache_hit"] and theirs_hit()._hidden_params["cache_hit"]
        assert store.stats().hits >= 2

        lookup = {k: v for k, v in call.items() if k not in ("api_base", "api_key")}
        key = ours.get_cache_key(**call)
        assert ours.get_cache(**lookup) is not None and theirs.get_cache(**lookup) is not None
        assert ours.cache.get_cache(key) is not None and theirs.cache.get_cache(key) is not None

        pairs = [
            (
                "ours: litellm.completion hit",
                ours_hit,
                "theirs: litellm.completion hit",
                theirs_hit,
            ),
            (
                "ours: litellm.acompletion hit",
                ours_ahit,
                "theirs: litellm.acompletion hit",
                theirs_ahit,
            ),
            (
                "ours: litellm.Cache.get_cache",
                lambda: ours.get_cache(**lookup),
                "theirs: litellm.Cache.get_cache",
                lambda: theirs.get_cache(**lookup),
            ),
            (
                "ours: backend get_cache",
                lambda: ours.cache.get_cache(key),
                "theirs: InMemoryCache.get_cache",
                lambda: theirs.cache.get_cache(key),
            ),
        ]
        # The order of the cases within a round biases them (a case timed right after
        # another kind of work pays for it: we saw ~2% either way), so each pair is timed
        # both ways round, and each case's figure is the mean of its two medians.
        runs = [
            measure_interleaved(
                {name: call for pair in pairs for name, call in ordered(pair, flip)},
                batch=20,
                rounds=80,
            )
            for flip in (False, True)
        ]
        results = {
            name: (
                (runs[0][name][0] + runs[1][name][0]) / 2,
                max(runs[0][name][1], runs[1][name][1]),
            )
            for name in runs[0]
        }
        assert server.requests == 2, "every timed call was a hit"
        litellm.cache = None
        loop.close()
        store.close()

    width = max(map(len, results))
    print(f"{'case'.ljust(width)}  {'median µs':>10}  {'p99 µs':>9}  ours/theirs")
    names = [
        ("ours: litellm.completion hit", "theirs: litellm.completion hit"),
        ("ours: litellm.acompletion hit", "theirs: litellm.acompletion hit"),
        ("ours: litellm.Cache.get_cache", "theirs: litellm.Cache.get_cache"),
        ("ours: backend get_cache", "theirs: InMemoryCache.get_cache"),
    ]
    ratios = {}
    for mine, other in names:
        ratio = results[mine][0] / results[other][0]
        ratios[mine] = ratio
        for name, note in ((mine, f"{ratio:.2f}x"), (other, "")):
            median, p99 = results[name]
            print(f"{name.ljust(width)}  {median:>10.2f}  {p99:>9.2f}  {note}")
    ratio = ratios[names[0][0]]
    verdict = "ok" if ratio <= 1.0 else "MISSES target (ours <= theirs)"
    extra = results[names[0][0]][0] - results[names[0][1]][0]
    print(
        f"\nlitellm.completion hit: ours / LiteLLM's in-memory cache = {ratio:.3f}x "
        f"({extra:+.1f} µs per call): {verdict}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
