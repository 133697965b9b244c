"""DSPy hit benchmark: a cached ``dspy.LM(...)(...)`` call with llmcache as ``dspy.cache``,
next to the same call with DSPy's own in-memory cache.

    python benchmarks/bench_dspy.py

Both caches serve the same call of the same `dspy.LM` (its native engine, against our loopback
OpenAI server, which is never reached after the first call): ``lm(prompt)``, as users call it.
DSPy's cache is ``dspy.clients.Cache(enable_disk_cache=False, enable_memory_cache=True)``: a
dict lookup and a deep copy. Ours signs the key, decrypts nothing from memory but hands out a
fresh copy, counts the hit for the ledger, and could be shared through disk or Redis. The
cases are timed in turns in one run (``measure_interleaved``), so noise lands on both alike;
the ratio is ours / theirs. Target: ours is never slower (ratio <= 1.0).

Informational rows: the cache protocol alone (``dspy.cache.get(request)``, as DSPy's engine
calls it on every cached call), for both.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch from GitHub
sys.path.insert(0, str(Path(__file__).resolve().parent))
import dspy
from _timing import measure_interleaved, table
from dspy.clients.execution import IGNORED_CACHE_KEYS
from llmcache_dspy import DSPyCache

import llmcache
from llmcache.testing import FakeOpenAIServer

PROMPT = (
    "Summarise the main arguments for and against caching LLM calls, with attention to "
    "cost, latency, determinism and tenant isolation. "
) * 5
RATIO_TARGET = 1.0


def main() -> int:
    with FakeOpenAIServer() as server, llmcache.Cache(workspace="bench", tiers=["memory"]) as c:
        ours = DSPyCache(c)
        theirs = dspy.clients.Cache(
            enable_disk_cache=False, enable_memory_cache=True, disk_cache_dir=None
        )
        lm = dspy.LM("openai/gpt-4o-mini", api_base=server.base_url, api_key="bench")
        requests: dict[str, Any] = {}

        class Recorder(DSPyCache):  # type: ignore[misc]
            def put(self, request: dict[str, Any], value: Any, *args: Any, **kw: Any) -> None:
                requests["last"] = request
                super().put(request, value, *args, **kw)

        for cache in (ours, theirs):
            dspy.cache = cache
            first = lm(PROMPT)
            assert lm(PROMPT) == first
        assert server.requests == 2  # one miss per cache, then hits only
        assert c.stats().hits >= 1
        dspy.cache = Recorder(llmcache.Cache(workspace="recorder", tiers=["memory"]))
        lm(PROMPT)
        request = requests["last"]
        assert ours.get(request, IGNORED_CACHE_KEYS) is not None
        assert theirs.get(request, IGNORED_CACHE_KEYS) is not None

        def our_hit() -> Any:
            dspy.cache = ours
            return lm(PROMPT)

        def their_hit() -> Any:
            dspy.cache = theirs
            return lm(PROMPT)

        results = measure_interleaved(
            {
                "ours": our_hit,
                "theirs": their_hit,
                "ours get": lambda: ours.get(request, IGNORED_CACHE_KEYS),
                "theirs get": lambda: theirs.get(request, IGNORED_CACHE_KEYS),
            },
            batch=20,
            rounds=200,
        )
        assert server.requests == 3  # the recorder's miss; every timed call was a hit
    rows = [
        ("dspy.LM hit, llmcache DSPyCache", *results["ours"], "ours"),
        ("dspy.LM hit, DSPy's in-memory Cache", *results["theirs"], "theirs"),
        ("  part: DSPyCache.get (hit)", *results["ours get"], "ours"),
        ("  part: dspy Cache.get (hit)", *results["theirs get"], "theirs"),
    ]
    print(table(rows))
    ratio = results["ours"][0] / results["theirs"][0]
    part = results["ours get"][0] / results["theirs get"][0]
    print(
        f"\nratio ours/theirs (median): {ratio:.2f} (target <= {RATIO_TARGET:.1f});"
        f" get alone {part:.2f}"
    )
    return 0 if ratio <= RATIO_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
