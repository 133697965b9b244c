"""Memory tier: what 100,000 small cached answers cost, beside cachetools with the same entries.

    python benchmarks/bench_memory.py [entries]

Each case runs in a fresh interpreter, so its RSS growth is its own:
  * llmcache: a memory-only cache in front of a function returning short distinct answers;
  * cachetools: `cachetools.cached` over an LRUCache with the same function and answers.
For llmcache it also prints the bytes the tier counts against its bound and the bytes it
really holds (tracemalloc: traced memory before and after clearing the tier, in a second run).
Targets: at most 1 KiB of RSS per entry; counted bytes within 25% of the bytes held.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def answer(n: int) -> str:
    return f"Answer {n}: caching saves money and time when prompts repeat."


def rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_llmcache(count: int, traced: bool) -> dict[str, Any]:
    import llmcache

    cache = llmcache.Cache(workspace="bench", tiers=["memory://?max_bytes=1GiB"])

    @cache.cached
    def ask(question: str) -> str:
        return answer(int(question.rsplit(" ", 1)[1]))

    for n in range(-2000, 0):  # warm up: info and key memos reach their (bounded) sizes
        ask(f"question {n}")
    cache.memory.clear()  # type: ignore[union-attr]
    if traced:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if traced else rss()
    for n in range(count):
        ask(f"question {n}")
    entries, counted = cache.memory.size()  # type: ignore[union-attr]
    result: dict[str, Any] = {"entries": entries, "counted": counted}
    if traced:
        gc.collect()
        full = tracemalloc.get_traced_memory()[0]
        cache.memory.clear()  # type: ignore[union-attr]
        gc.collect()
        result["held"] = full - tracemalloc.get_traced_memory()[0]
    else:
        result["rss"] = rss() - before
    return result


def run_cachetools(count: int) -> dict[str, Any]:
    import cachetools

    @cachetools.cached(cachetools.LRUCache(maxsize=10 * count))
    def ask(question: str) -> str:
        return answer(int(question.rsplit(" ", 1)[1]))

    before = rss()
    for n in range(count):
        ask(f"question {n}")
    return {"entries": count, "rss": rss() - before}


def in_child(case: str, count: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "adapters")]))
    output = subprocess.run(
        [sys.executable, __file__, "--case", case, str(count)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    ours = in_child("llmcache", count)
    traced = in_child("llmcache-traced", count)
    theirs = in_child("cachetools", count)
    per = {
        "llmcache RSS": ours["rss"] / count,
        "llmcache counted by the tier": traced["counted"] / count,
        "llmcache held (tracemalloc)": traced["held"] / count,
        "cachetools.cached RSS": theirs["rss"] / count,
    }
    print(f"{count} entries of a {len(answer(count))}-character answer; bytes per entry:")
    for name, value in per.items():
        print(f"  {name:<32} {value:8.0f}")
    ratio = traced["counted"] / traced["held"]
    verdicts = [
        ("RSS <= 1 KiB per entry", per["llmcache RSS"] <= 1024),
        ("counted within 25% of held", 0.75 <= ratio <= 1.25),
    ]
    print(f"counted / held = {ratio:.2f}")
    print("targets: " + "; ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in verdicts))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--case":
        case, entries = sys.argv[2], int(sys.argv[3])
        if case == "cachetools":
            found = run_cachetools(entries)
        else:
            found = run_llmcache(entries, traced=case == "llmcache-traced")
        print(json.dumps(found))
    else:
        main()
