"""A decorated function: a miss, a hit, per-call options, and the stats.

python examples/quickstart.py
"""

from __future__ import annotations

import tempfile
import time

import llmcache

cache = llmcache.Cache(
    workspace="quickstart", tiers=["memory", f"disk://{tempfile.mkdtemp(prefix='llmcache-')}"]
)


@cache.cached(namespace="research", ttl=3600)
def ask(question: str, model: str = "gpt-4o-mini") -> str:
    time.sleep(0.5)  # stands in for a paid, slow LLM call
    return f"[{model}] an answer to: {question}"


for label in ("first call", "second call"):
    started = time.perf_counter()
    answer = ask("Why cache LLM calls?")
    info = llmcache.info(answer)
    elapsed_ms = (time.perf_counter() - started) * 1000
    outcome = f"hit from {info.tier}" if info and info.hit else "miss"
    print(f"{label:12s} {outcome:16s} {elapsed_ms:8.2f} ms  {answer}")

with llmcache.options(refresh=True):
    ask("Why cache LLM calls?")
print("key:", ask.cache_key("Why cache LLM calls?"))
print()
print(cache.stats())
