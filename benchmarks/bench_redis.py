"""Shared-tier overhead, in one run: our Redis and Upstash hits next to the raw client's GET,
and what a dead Redis (breaker open) adds to a call next to a memory-only cache.

    python benchmarks/bench_redis.py [--calls 5000]

Starts its own redis-server (and a local Upstash REST endpoint in front of it). Targets:
Redis hit <= 1.3x raw GET, Upstash hit <= 1.3x raw GET, breaker-open added cost <= 50 us.
The floor is a plain GET, by the raw client, of the very entry our hit reads (so of an
entry-sized value); our hit also decrypts and authenticates that entry (AES-GCM).
Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.servers

import upstash_redis

import llmcache
from tests.servers.redis_server import RedisServer
from tests.servers.upstash_rest import UpstashRestServer

SECRET = "benchmark-secret-0123456789abcdef"
# An LLM answer of typical size (~1.5 kB of prose, which lz4 barely shrinks), with the
# usage metadata a provider returns.
_WORDS = [
    "the",
    "a",
    "fox",
    "river",
    "model",
    "token",
    "cache",
    "answer",
    "latency",
    "budget",
    "paris",
    "because",
    "of",
]
_PICK = random.Random(7)
ANSWER = {
    "text": " ".join(_PICK.choice(_WORDS) + str(_PICK.randrange(100)) for _ in range(250)),
    "usage": {"prompt_tokens": 812, "completion_tokens": 344},
}


def alternating_us(functions: list[Callable[[], object]], calls: int) -> list[list[float]]:
    """Per-call wall times in microseconds of several functions, called in turn.

    Alternating call by call (not block by block) puts them all under the same conditions,
    on a machine whose speed drifts (other processes, CPU frequency, the server's wake-ups).
    """
    for _ in range(min(500, calls)):
        for function in functions:
            function()
    samples: list[list[float]] = [[] for _ in functions]
    clock = time.perf_counter_ns
    gc.collect()
    for _ in range(calls):
        for function, times in zip(functions, samples, strict=True):
            started = clock()
            function()
            times.append((clock() - started) / 1000)
    return samples


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def redis_hit(server: RedisServer, calls: int) -> tuple[list[list[float]], int]:
    cache = llmcache.Cache(workspace="bench", secret=SECRET, tiers=[server.url])

    @cache.cached(namespace="bench")
    def ask(question: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
        return ANSWER

    ask("What does the fox do?")
    key = ask.cache_key("What does the fox do?")
    raw = server.client()
    entry = raw.get(key)
    assert entry is not None and ask("What does the fox do?") == ANSWER
    assert ANSWER["text"][:40].encode() not in entry  # stored encrypted: the hit decrypts
    adapter = cache._tiers[0].backend
    samples = alternating_us(
        [lambda: raw.get(key), lambda: adapter.get(key), lambda: ask("What does the fox do?")],
        calls,
    )
    assert cache._tiers[0].counters.errors == 0
    raw.close()
    cache.close()
    return samples, len(entry)


def upstash_hit(rest: UpstashRestServer, calls: int) -> tuple[list[float], list[float]]:
    url = f"upstash://{rest.token}@127.0.0.1:{rest.port}?tls=0"
    cache = llmcache.Cache(workspace="bench", secret=SECRET, tiers=[url])

    @cache.cached(namespace="bench-upstash")
    def ask(question: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
        return ANSWER

    ask("What does the fox do?")
    key = ask.cache_key("What does the fox do?")
    # The raw client with the same transport settings as our adapter (see its _sdk_settings)
    # so the ratio shows our cost, not a difference in SDK configuration.
    raw = upstash_redis.Redis(
        rest.url,
        rest.token,
        rest_encoding=None,
        rest_retries=0,
        allow_telemetry=False,
        read_your_writes=False,
    )
    assert raw.get(key) is not None
    raw_times, our_times = alternating_us(
        [lambda: raw.get(key), lambda: ask("What does the fox do?")], calls
    )
    assert cache._tiers[0].counters.errors == 0
    raw.close()
    cache.close()
    return raw_times, our_times


def breaker_open(calls: int) -> dict[str, list[list[float]]]:
    """Misses and hits of a memory-only cache next to memory + a Redis that is down."""
    dead = RedisServer()
    down = llmcache.Cache(workspace="bench", secret=SECRET, tiers=["memory", dead.url])
    memory_only = llmcache.Cache(workspace="bench", tiers=["memory"])
    counter = iter(range(10**9))

    def make(cache: llmcache.Cache) -> tuple[Callable[[], object], Callable[[], object]]:
        @cache.cached(namespace="bench")
        def ask(question: str, n: int = 0) -> dict[str, Any]:
            return ANSWER

        ask("hit")
        return (lambda: ask("miss", next(counter))), (lambda: ask("hit"))

    down_miss, down_hit = make(down)
    dead.kill()
    while down._tiers[0].state == "closed":  # a few failed calls open the breaker
        down_miss()
    memory_miss, memory_hit = make(memory_only)
    results = {
        "miss": alternating_us([memory_miss, down_miss], calls),
        "hit": alternating_us([memory_hit, down_hit], calls),
    }
    assert down._tiers[0].state != "closed"
    down.close()
    memory_only.close()
    dead.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help="timed calls per row")
    calls = parser.parse_args().calls

    rows: list[tuple[str, list[float], str, str, bool | None]] = []
    with RedisServer() as server, UpstashRestServer(server.url) as rest:
        (raw, adapter, ours), entry_size = redis_hit(server, calls)
        ratio = statistics.median(ours) / statistics.median(raw)
        rows.append((f"redis-py Redis.get, raw ({entry_size} B entry)", raw, "", "", None))
        rows.append(("  our adapter's get() alone", adapter, "", "", None))
        rows.append(("Redis tier hit (memory off)", ours, f"{ratio:.2f}x", "<= 1.3x", ratio <= 1.3))
        raw, ours = upstash_hit(rest, max(500, calls // 5))
        ratio = statistics.median(ours) / statistics.median(raw)
        rows.append(("upstash-redis GET, raw (local REST)", raw, "", "", None))
        rows.append(
            ("Upstash tier hit (memory off)", ours, f"{ratio:.2f}x", "<= 1.3x", ratio <= 1.3)
        )
    for kind, (memory, down) in breaker_open(calls).items():
        added = statistics.median(down) - statistics.median(memory)
        target_met = added <= 50 if kind == "miss" else None
        rows.append((f"memory-only cache, {kind}", memory, "", "", None))
        rows.append(
            (
                f"memory + dead Redis (breaker open), {kind}",
                down,
                f"{added:+.1f} us",
                "<= +50 us" if kind == "miss" else "",
                target_met,
            )
        )

    print(f"{'':44} {'median us':>10} {'p99 us':>9} {'vs above':>10}  target")
    for label, samples, relative, target, met in rows:
        verdict = "" if met is None else ("ok" if met else "MISSED")
        print(
            f"{label:44} {statistics.median(samples):10.1f} {p(samples, 0.99):9.1f} "
            f"{relative:>10}  {target} {verdict}"
        )
    return 0 if all(met is not False for *_, met in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
