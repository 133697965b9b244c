"""What a rate limit costs, in one run: a miss with and without limits, in process (memory
tier) and through Redis, beside a raw redis-py round trip (PING); and a hit with and without.

    python benchmarks/bench_limits.py [--rounds 200]

Starts its own redis-server. Each miss is a distinct call (every call a real one) to a
function that returns at once, so what is timed is the cache's own work. The limits are
far above the calls made, so nothing waits: "500/min"-style limits cost the same per call.

* In process: the limit's cost beside the miss itself (target: <= 15 us added).
* On Redis: a request limit adds one script round trip (EVALSHA), a token limit one more
  plus its settle: the added time as a multiple of a raw PING, and of the raw client's
  EVALSHA of the same script per round trip (target: <= 1.5x: the script itself does six
  commands' work where PING does none).
* Hits never enter the limits: the same with and without (target: within 10%, or 0.5 us).

Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.servers

from _timing import measure_interleaved
from llmcache_redis._windows import TAKE_SCRIPT, sha1, take_args

import llmcache
from tests.servers.redis_server import RedisServer

SECRET = "benchmark-secret-0123456789abcdef"
# Far above what the benchmark makes in a minute: no miss ever waits.
REQUESTS = {"*": "100000000/min"}
BOTH = {"*": "100000000/min; 100000000000 tokens/min"}
ANSWER = {"text": "Paris is the capital of France.", "usage": None}


def misses(cache: llmcache.Cache, namespace: str) -> Callable[[], Any]:
    """A call that is always a miss (a new argument each time), and makes no I/O itself."""
    counter = itertools.count()

    @cache.cached(
        namespace=namespace, usage=lambda _: llmcache.Usage(input_tokens=12, output_tokens=30)
    )
    def ask(n: int, model: str = "gpt-4o-mini", max_tokens: int = 256) -> dict[str, Any]:
        return ANSWER

    return lambda: ask(next(counter))


def hits(cache: llmcache.Cache) -> Callable[[], Any]:
    @cache.cached(namespace="hits")
    def ask(question: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
        return ANSWER

    ask("What is the capital of France?")
    return lambda: ask("What is the capital of France?")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="timed batches per case")
    rounds = parser.parse_args().rounds
    checks: list[tuple[str, bool]] = []
    with RedisServer() as server:
        raw = server.client()
        take_sha = raw.script_load(TAKE_SCRIPT)
        assert take_sha == sha1(TAKE_SCRIPT)
        members = itertools.count()

        def raw_take() -> Any:
            member = str(next(members))
            return raw.evalsha(take_sha, 1, "bench-window", *take_args(60, 10**8, 1, member))

        def cache(tiers: list[str], limits: dict[str, str] | None) -> llmcache.Cache:
            return llmcache.Cache(
                workspace="bench", secret=SECRET, tiers=tiers, limits=limits, limit_wait=0
            )

        memory = [cache(["memory"], None), cache(["memory"], REQUESTS), cache(["memory"], BOTH)]
        url = server.url + "?timeout=1&connect_timeout=1"
        shared = [cache([url], None), cache([url], REQUESTS), cache([url], BOTH)]
        miss_cases = {
            "raw redis-py PING (round trip)": raw.ping,
            "raw redis-py EVALSHA of the take script": raw_take,
            "miss, memory tier, no limit": misses(memory[0], "m0"),
            "miss, memory tier, requests limit": misses(memory[1], "m1"),
            "miss, memory tier, requests + tokens": misses(memory[2], "m2"),
            # (Each its own namespace: one workspace and secret share Redis's entries.)
            "miss, Redis tier, no limit": misses(shared[0], "r0"),
            "miss, Redis tier, requests limit": misses(shared[1], "r1"),
            "miss, Redis tier, requests + tokens": misses(shared[2], "r2"),
        }
        timed = measure_interleaved(miss_cases, batch=20, rounds=rounds)
        hit_cases = {
            "hit, memory tier, no limit": hits(memory[0]),
            "hit, memory tier, limits": hits(memory[2]),
            "hit, Redis tier (memory off), no limit": hits(shared[0]),
            "hit, Redis tier (memory off), limits": hits(shared[2]),
        }
        timed.update(measure_interleaved(hit_cases, batch=100, rounds=rounds))
        for made in memory + shared:
            assert made.health().notes == [] or made._tiers == []  # Redis windows were used
            assert all(t.counters.errors == 0 for t in made._tiers)
            made.close()
        raw.close()

    ping = timed["raw redis-py PING (round trip)"][0]
    script = timed["raw redis-py EVALSHA of the take script"][0]
    notes: dict[str, str] = {"raw redis-py EVALSHA of the take script": f"{script / ping:.2f}x"}
    for tier in ("memory tier", "Redis tier"):
        base = timed[f"miss, {tier}, no limit"][0]
        for label, round_trips in (("requests limit", 1), ("requests + tokens", 3)):
            added = timed[f"miss, {tier}, {label}"][0] - base
            if tier == "memory tier":
                notes[f"miss, {tier}, {label}"] = f"{added:+.1f} us (target <= +15 us)"
                checks.append((f"{tier} {label}", added <= 15))
            else:
                per_trip = added / script / round_trips
                notes[f"miss, {tier}, {label}"] = (
                    f"{added:+.1f} us = {added / ping:.2f}x a PING; {per_trip:.2f}x the raw "
                    f"script per round trip ({round_trips}; target <= 1.5x)"
                )
                checks.append((f"{tier} {label}", per_trip <= 1.5))
    for tier in ("memory tier", "Redis tier (memory off)"):
        without = timed[f"hit, {tier}, no limit"][0]
        with_limits = timed[f"hit, {tier}, limits"][0]
        ratio = with_limits / without
        notes[f"hit, {tier}, limits"] = f"{ratio:.2f}x the hit without limits"
        checks.append((f"hit {tier}", ratio <= 1.10 or with_limits - without <= 0.5))

    width = max(len(name) for name in timed)
    print(f"{'case'.ljust(width)}  {'median us':>10}  {'p99 us':>8}  note")
    for name, (median, p99) in timed.items():
        print(f"{name.ljust(width)}  {median:>10.2f}  {p99:>8.2f}  {notes.get(name, '')}")
    missed = [name for name, met in checks if not met]
    if missed:
        print("MISSED:", ", ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
