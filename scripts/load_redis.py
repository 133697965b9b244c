"""Load run: 1,000 concurrent asyncio callers and 8 threads on one cache with a shared Redis.

    python scripts/load_redis.py [--seconds 30] [--callers 1000] [--threads 8] [--url redis://...]

Without --url it starts its own redis-server (tests/servers). The workload is a realistic
mix: 80% of calls ask one of 2,000 popular prompts (hits once seen, from the memory tier or,
once the small memory tier has evicted them, from Redis), 20% ask something new (a miss:
the "LLM" answers in 100-500 ms). Each caller, like a user or an agent step, does other
work between calls (--think seconds on average; --think 0 saturates the process instead).
Every result is checked. It prints throughput, hit latency (p50 / p99, overall and for
Redis hits), errors (exceptions or wrong results reaching a caller: must be 0), and the
process's resident memory at start and end. --json adds one machine-readable line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import random
import resource
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.servers

import llmcache

SECRET = "load-run-secret-0123456789abcdef"
HOT_PROMPTS = 2_000
HOT_SHARE = 0.8
LLM_LATENCY = (0.1, 0.5)  # seconds, uniform
PADDING = "lorem ipsum dolor sit amet " * 40  # ~1 kB answers
SAMPLES_KEPT = 200_000  # latency samples kept per kind (reservoir), so memory stays flat


def rss_mib() -> float:
    """Resident memory now (Linux /proc), else the peak from getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Recorder:
    """Counts and latency reservoirs, shared by the event loop and the threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.errors = 0
        self.first_errors: list[str] = []
        self.by_kind: dict[str, int] = {}
        self.latencies: dict[str, array[float]] = {}
        self.seen: dict[str, int] = {}

    def record(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.calls += 1
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            samples = self.latencies.setdefault(kind, array("d"))
            seen = self.seen[kind] = self.seen.get(kind, 0) + 1
            if len(samples) < SAMPLES_KEPT:
                samples.append(seconds)
            else:
                slot = random.randrange(seen)
                if slot < SAMPLES_KEPT:
                    samples[slot] = seconds

    def error(self, what: str) -> None:
        with self.lock:
            self.calls += 1
            self.errors += 1
            if len(self.first_errors) < 5:
                self.first_errors.append(what)


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def next_prompt(rng: random.Random) -> str:
    if rng.random() < HOT_SHARE:
        return f"popular question {rng.randrange(HOT_PROMPTS)}"
    return f"new question {rng.getrandbits(64)}"


# Set by the "LLM" when it is really called, in the caller's own context (task or thread).
COMPUTED: contextvars.ContextVar[bool] = contextvars.ContextVar("computed", default=False)


def classify(result: Any) -> str:
    if COMPUTED.get():
        return "miss"
    found = llmcache.info(result)
    if found is None or not found.hit:
        return "coalesced"  # waited for another caller's real call
    return found.tier if found.tier in ("memory", "single-flight") else "redis"


def run(url: str, seconds: float, callers: int, threads: int, think: float = 0.5) -> dict[str, Any]:
    cache = llmcache.Cache(
        workspace="load",
        secret=SECRET,
        # A small memory tier, so that many hits come from Redis, as in a fleet of workers.
        tiers=["memory://?max_bytes=1MiB", url],
        ttl=3600,
    )
    cache.clear()

    @cache.cached(namespace="load")
    async def ask_async(prompt: str) -> dict[str, str]:
        COMPUTED.set(True)
        await asyncio.sleep(random.uniform(*LLM_LATENCY))
        return {"answer": f"answer to {prompt}", "padding": PADDING}

    @cache.cached(namespace="load")
    def ask_sync(prompt: str) -> dict[str, str]:
        COMPUTED.set(True)
        time.sleep(random.uniform(*LLM_LATENCY))
        return {"answer": f"answer to {prompt}", "padding": PADDING}

    recorder = Recorder()
    stop = threading.Event()

    def check(prompt: str, result: Any, started: float) -> None:
        elapsed = time.perf_counter() - started
        if not isinstance(result, dict) or result.get("answer") != f"answer to {prompt}":
            recorder.error(f"wrong result for {prompt!r}: {str(result)[:80]}")
        else:
            recorder.record(classify(result), elapsed)

    async def caller(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            if think:
                await asyncio.sleep(min(rng.expovariate(1 / think), 3 * think))
            prompt = next_prompt(rng)
            COMPUTED.set(False)
            started = time.perf_counter()
            try:
                result = await ask_async(prompt)
            except Exception as error:
                recorder.error(f"{type(error).__name__}: {error}")
                continue
            check(prompt, result, started)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            if think:
                stop.wait(min(rng.expovariate(1 / think), 3 * think))
            prompt = next_prompt(rng)
            COMPUTED.set(False)
            started = time.perf_counter()
            try:
                result = ask_sync(prompt)
            except Exception as error:
                recorder.error(f"{type(error).__name__}: {error}")
                continue
            check(prompt, result, started)

    rss_samples: list[float] = []

    async def main() -> None:
        tasks = [asyncio.create_task(caller(seed)) for seed in range(callers)]
        for _ in range(10):  # memory sampled at each tenth of the run
            await asyncio.sleep(seconds / 10)
            rss_samples.append(rss_mib())
        stop.set()
        window[0] = time.perf_counter() - started
        window[1] = recorder.calls
        await asyncio.gather(*tasks)  # calls in flight finish (not counted in throughput)

    rss_start = rss_mib()
    cpu_start = time.process_time()
    started = time.perf_counter()
    window = [seconds, 0.0]  # seconds and calls until the stop
    pool = [threading.Thread(target=worker, args=(10_000 + i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    asyncio.run(main())
    for thread in pool:
        thread.join()
    cpu = time.process_time() - cpu_start
    elapsed = time.perf_counter() - started
    rss_end = rss_mib()

    hits = [*recorder.latencies.get("memory", []), *recorder.latencies.get("redis", [])]
    redis_hits = list(recorder.latencies.get("redis", []))
    tier = cache._tiers[0]
    result = {
        "seconds": round(window[0], 2),
        "callers": callers,
        "threads": threads,
        "think_s": think,
        "cpu_percent": round(100 * cpu / elapsed),
        "calls": recorder.calls,
        "throughput_per_s": round(window[1] / window[0]),
        "by_kind": dict(sorted(recorder.by_kind.items())),
        "hit_p50_us": round(percentile(hits, 0.5) * 1e6, 1),
        "hit_p99_us": round(percentile(hits, 0.99) * 1e6, 1),
        "redis_hit_p50_us": round(percentile(redis_hits, 0.5) * 1e6, 1),
        "redis_hit_p99_us": round(percentile(redis_hits, 0.99) * 1e6, 1),
        "errors": recorder.errors,
        "first_errors": recorder.first_errors,
        "redis_tier_errors": tier.counters.errors,
        "redis_tier_state": tier.state,
        "rss_start_mib": round(rss_start, 1),
        "rss_mid_mib": round(rss_samples[len(rss_samples) // 2 - 1], 1),
        "rss_end_mib": round(rss_end, 1),
        "rss_samples_mib": [round(x, 1) for x in rss_samples],
    }
    cache.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--callers", type=int, default=1000, help="concurrent asyncio callers")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--think", type=float, default=0.5, help="mean seconds between a caller's calls"
    )
    parser.add_argument("--url", help="an existing Redis (default: start a redis-server)")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    options = parser.parse_args()

    if options.url:
        result = run(options.url, options.seconds, options.callers, options.threads, options.think)
    else:
        from tests.servers.redis_server import RedisServer

        with RedisServer() as server:
            result = run(
                server.url, options.seconds, options.callers, options.threads, options.think
            )

    kinds = ", ".join(f"{k} {v}" for k, v in result["by_kind"].items())
    print(
        f"load run: {result['callers']} asyncio callers + {result['threads']} threads, "
        f"{result['seconds']} s, think time {result['think_s']} s\n"
        f"  calls        {result['calls']} ({result['throughput_per_s']}/s, CPU "
        f"{result['cpu_percent']}%): {kinds}\n"
        f"  hit latency  p50 {result['hit_p50_us']} us, p99 {result['hit_p99_us']} us "
        f"(Redis hits: p50 {result['redis_hit_p50_us']} us, p99 {result['redis_hit_p99_us']} us)\n"
        f"  errors       {result['errors']} {result['first_errors'] or ''}"
        f"(Redis tier errors, absorbed: {result['redis_tier_errors']}; "
        f"breaker {result['redis_tier_state']})\n"
        f"  memory (RSS) {result['rss_start_mib']} MiB at start, {result['rss_mid_mib']} MiB "
        f"half way, {result['rss_end_mib']} MiB at end"
    )
    if options.json:
        print(json.dumps(result))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
