"""Shared tiers across processes and tenants, on a real redis-server.

Processes are real: `sys.executable -c WORKER` with explicit arguments, synchronised through
their stdin/stdout. Covered: entries shared between processes; one real call for four
processes making the same slow call; invalidation seen by another process within a second;
tenants that never see each other's entries or prompt text; tampered entries as counted
misses; clear() limited to its workspace; Redis killed under load from several threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import llmcache
from tests.clocks import wait_until
from tests.servers.redis_server import RedisServer

SECRET = "shared-tiers-secret-0123456789abcdef"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One child process. argv: redis URL, workspace, mode, JSON argument. It builds its Cache
# (memory + Redis), prints "ready", waits for "go" on stdin, runs the mode, prints JSON.
WORKER = r"""
import json, os, sys, time
import llmcache, redis

url, workspace, mode, arg = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
cache = llmcache.Cache(workspace=workspace, secret=arg["secret"], tiers=["memory", url],
                       lock_ttl=10)
raw = redis.Redis.from_url(url.split("?")[0])  # our tier options are not redis-py's
calls = []
locks = cache._lock_tier.backend
take_lock = locks.try_lock

def try_lock(key, ttl):  # a process that finds a call's lock taken says so, in a Redis set
    token = take_lock(key, ttl)
    if token is None and key.startswith("llmc:") and "waiting" in arg:  # not llmc-meta:
        raw.sadd(arg["waiting"], os.getpid())
    return token

locks.try_lock = try_lock

@cache.cached(namespace="shared")
def ask(question: str) -> str:
    calls.append(question)
    return f"answer to {question}"

@cache.cached(namespace="slow")
def slow(question: str) -> str:
    raw.incr(arg.get("counter", "unused"))
    sys.stdin.readline()  # the test ends the call once the other processes wait for it
    return f"slow answer to {question}"

@cache.cached(namespace="watched")
def numbered(question: str) -> str:
    calls.append(question)
    return f"{question}#{len(calls)}"

def report(**fields):
    print(json.dumps(fields), flush=True)

if mode == "share":
    report(state="ready")
    sys.stdin.readline()
    values, tiers = [], []
    for q in arg["read"]:
        values.append(ask(q))
        # A str result is described by its own call, so ask right after it (see README).
        tiers.append(llmcache.last_info().tier)
    written = [ask(q) for q in arg["write"]]
    report(values=values, tiers=tiers, calls=calls, written=written)
elif mode == "slow":
    cache.load(cache.namespace("slow"))
    report(state="ready")
    sys.stdin.readline()
    report(value=slow("the same question"), finished_at=time.time())
elif mode == "watch":
    first = numbered("q")
    assert numbered("q") == first and llmcache.last_info().tier == "memory"
    report(state="ready", value=first)  # and serving "q" from its memory tier
    deadline = time.time() + 5
    while time.time() < deadline:
        value = numbered("q")
        if value != first:
            report(value=value, changed_at=time.time())
            break
        time.sleep(0.005)
    else:
        report(value=first, changed_at=None)
cache.close()
"""


class Worker:
    """A child process running WORKER."""

    def __init__(self, url: str, workspace: str, mode: str, **arg: Any) -> None:
        arg.setdefault("secret", SECRET)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCACHE_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, url, workspace, mode, json.dumps(arg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=10)
            assert self.process.stderr is not None
            raise AssertionError(f"worker died: {self.process.stderr.read()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self) -> None:
        self.process.wait(timeout=30)
        assert self.process.returncode == 0, self.process.stderr.read()  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    client = server.client()
    yield client
    client.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- processes ----------------------------------------------------------------------------------
def test_two_processes_share_entries(server: RedisServer) -> None:
    workspace = unique("share")
    first = Worker(server.patient_url, workspace, "share", read=[], write=["p1", "p2"])
    second = Worker(server.patient_url, workspace, "share", read=["p1", "p2"], write=["c1", "p1"])
    assert first.read() == second.read() == {"state": "ready"}
    first.go()
    written = first.read()
    first.finish()
    assert written["calls"] == ["p1", "p2"]
    second.go()
    result = second.read()
    second.finish()
    assert result["values"] == written["written"]  # what the first process computed
    assert result["tiers"] == [f"redis://127.0.0.1:{server.port}/0"] * 2  # read from Redis
    assert result["calls"] == ["c1"]  # p1 again: a hit in its own memory tier


def test_four_processes_one_real_call(server: RedisServer, raw: redis.Redis) -> None:
    workspace, counter, waiting = unique("flight"), unique("test:calls"), unique("test:waiting")
    # Generous timeouts: this is about single-flight, and a lock request that timed out on a
    # loaded CI machine would (rightly) make that process call the function itself.
    url = server.patient_url
    workers = [Worker(url, workspace, "slow", counter=counter, waiting=waiting) for _ in range(4)]
    for worker in workers:
        assert worker.read() == {"state": "ready"}
    for worker in workers:
        worker.go()

    def three_wait_for_one() -> bool:
        calls = int(raw.get(counter) or 0)
        assert calls <= 1, f"{calls} processes made the call"
        return calls == 1 and raw.scard(waiting) == 3

    # The real call lasts until the three other processes have found it under way.
    wait_until(three_wait_for_one, 30, "one process calls while three wait for it")
    released_at = time.time()
    for worker in workers:
        worker.go()  # only the process making the call reads it
    results = [worker.read() for worker in workers]
    for worker in workers:
        worker.finish()
    assert int(raw.get(counter) or 0) == 1
    assert {r["value"] for r in results} == {"slow answer to the same question"}
    # Waiters followed the leader promptly (they poll at most every 0.2 s).
    assert max(r["finished_at"] for r in results) - released_at < 1.5


def test_invalidation_reaches_another_process_within_a_second(server: RedisServer) -> None:
    workspace = unique("watch")
    worker = Worker(server.patient_url, workspace, "watch")
    ready = worker.read()
    assert ready["value"] == "q#1"
    cache = llmcache.Cache(workspace=workspace, secret=SECRET, tiers=["memory", server.patient_url])
    try:
        invalidated_at = time.time()
        cache.invalidate(namespace="watched")
        changed = worker.read()
        worker.finish()
        assert changed["value"] == "q#2"
        assert changed["changed_at"] is not None
        assert changed["changed_at"] - invalidated_at < 1.0
    finally:
        cache.close()


def test_crashed_leader_blocks_nobody_past_its_lock_ttl(
    server: RedisServer, raw: redis.Redis
) -> None:
    cache = llmcache.Cache(workspace=unique("crash"), secret=SECRET, tiers=[server.patient_url])
    calls: list[str] = []

    @cache.cached(namespace="n")
    def ask(question: str) -> str:
        calls.append(question)
        return question.upper()

    try:
        # A leader in another process took the lock and died: its lock expires in 0.6 s.
        raw.set(ask.cache_key("q") + ":lock", b"dead-leader-token", px=600)
        started = time.perf_counter()
        assert ask("q") == "Q"
        waited = time.perf_counter() - started
        assert 0.5 <= waited < 1.5, waited
        assert calls == ["q"]
    finally:
        cache.close()


# -- tenants and tampering ---------------------------------------------------------------
def test_workspaces_never_share_entries_and_keys_hold_no_prompt(
    server: RedisServer, raw: redis.Redis
) -> None:
    prompt = "The launch code is PINEAPPLE-QUOKKA, tell nobody"
    alpha_name, beta_name = unique("alpha"), unique("beta")
    caches = {
        name: llmcache.Cache(workspace=name, secret=SECRET, tiers=[server.patient_url])
        for name in (alpha_name, beta_name)
    }
    calls: list[str] = []

    def ask(question: str, model: str = "gpt-4o-mini") -> dict[str, int]:
        calls.append(question)
        return {"length": len(question)}

    alpha = caches[alpha_name].cached(namespace="research")(ask)
    beta = caches[beta_name].cached(namespace="research")(ask)
    try:
        assert alpha(prompt) == beta(prompt) == {"length": len(prompt)}
        assert alpha(prompt) == beta(prompt)  # each hits its own entry
        assert len(calls) == 2
        assert alpha.cache_key(prompt) != beta.cache_key(prompt)
        for cache in caches.values():
            cache.flush()  # ledger counters too
        keys = [key.decode() for key in raw.scan_iter(count=1000)]
        mine = [k for k in keys if alpha_name in k or beta_name in k]
        assert len(mine) >= 4  # two entries, generations and ledger records
        for key in keys:
            # Fragments with letters a hex digest never holds, so a hash cannot match by chance.
            for fragment in ("PINEAPPLE", "launch", "QUOKKA", "tell nobody"):
                assert fragment not in key
        # Each entry only verifies under its own key and secret: moved across, it is a miss.
        entry = raw.get(alpha.cache_key(prompt))
        assert entry is not None
        raw.set(beta.cache_key(prompt), entry)
        assert beta(prompt) == {"length": len(prompt)}
        assert len(calls) == 3
        assert caches[beta_name]._tiers[0].counters.integrity_failures == 1
    finally:
        for cache in caches.values():
            cache.close()


def test_tampered_entries_are_counted_misses(server: RedisServer, raw: redis.Redis) -> None:
    cache = llmcache.Cache(workspace=unique("tamper"), secret=SECRET, tiers=[server.patient_url])
    calls: list[str] = []

    @cache.cached(namespace="n")
    def ask(question: str) -> list[str]:
        calls.append(question)
        return [question, "x" * 2000]  # large enough to be lz4-compressed

    try:
        ask("a")
        ask("b")
        key_a, key_b = ask.cache_key("a"), ask.cache_key("b")
        good_a = raw.get(key_a)
        assert good_a is not None
        damage = [
            b"\x01" + os.urandom(300),  # overwritten
            good_a[: len(good_a) // 2],  # truncated
            raw.get(key_b),  # copied from another key
            b"b64:" + b"AQ" * 10,  # the text form, but not an entry
            b"b64:not base64 at all!",
        ]
        for number, data in enumerate(damage, start=1):
            raw.set(key_a, data)  # type: ignore[arg-type]
            assert ask("a") == ["a", "x" * 2000]
            assert calls.count("a") == 1 + number
        tier = cache._tiers[0]
        assert tier.counters.integrity_failures == len(damage)
        assert tier.counters.errors == 0 and tier.state == "closed"
        assert ask("a") == ["a", "x" * 2000] and calls.count("a") == 1 + len(damage)
    finally:
        cache.close()


def test_clear_deletes_only_this_workspaces_keys(server: RedisServer, raw: redis.Redis) -> None:
    alpha_name = unique("clear")
    alpha = llmcache.Cache(
        workspace=alpha_name, secret=SECRET, tiers=["memory", server.patient_url]
    )
    beta = llmcache.Cache(workspace=alpha_name + "x", secret=SECRET, tiers=[server.patient_url])
    raw.set("someone-elses:data", b"keep")
    raw.set(f"llmc:{alpha_name}", b"not under the workspace prefix")

    def ask(n: int) -> int:
        return n + 1

    alpha_ask = alpha.cached(namespace="n")(ask)
    beta_ask = beta.cached(namespace="n")(ask)
    try:
        for n in range(30):
            alpha_ask(n)
            beta_ask(n)
        assert len(list(raw.scan_iter(match=f"llmc:{alpha_name}#*"))) == 30
        assert alpha.clear() >= 30
        assert list(raw.scan_iter(match=f"llmc:{alpha_name}#*")) == []
        assert len(list(raw.scan_iter(match=f"llmc:{alpha_name}x#*"))) == 30
        assert raw.get("someone-elses:data") == b"keep"
        assert raw.get(f"llmc:{alpha_name}") == b"not under the workspace prefix"
        assert beta_ask(3) == 4 and beta._tiers[0].counters.hits == 1
    finally:
        alpha.close()
        beta.close()


# -- outage ------------------------------------------------------------------------------
def _commands_served(raw: redis.Redis) -> int:
    """How many commands the server has run (INFO commandstats; INFO itself excluded)."""
    stats = raw.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def test_redis_killed_under_load_then_restarted() -> None:
    server = RedisServer()
    cache = llmcache.Cache(workspace="outage", secret=SECRET, tiers=[server.url])
    tier = cache._tiers[0]
    down = threading.Event()
    computed_while_down: set[int] = set()
    lock = threading.Lock()
    failures: list[str] = []
    slowest = [0.0]
    calls_made = [0]
    calls_while_down = [0]

    @cache.cached(namespace="n")
    def ask(n: int) -> str:
        if down.is_set():
            with lock:
                computed_while_down.add(n)
        return f"value {n}"

    def hammer(offset: int, stop: threading.Event) -> None:
        n = offset
        while not stop.is_set():
            n = (n + 7) % 400
            started = time.perf_counter()
            try:
                result = ask(n)
            except Exception as error:  # nothing may reach the caller
                failures.append(repr(error))
                return
            elapsed = time.perf_counter() - started
            if result != f"value {n}":
                failures.append(f"ask({n}) returned {result!r}")
            with lock:
                calls_made[0] += 1
            if down.is_set():
                with lock:
                    slowest[0] = max(slowest[0], elapsed)
                    calls_while_down[0] += 1

    try:
        raw = server.client()
        try:
            ask(-1)  # load the namespace, so the next call is a plain miss
            before = _commands_served(raw)
            ask(-2)
            round_trips_per_miss = _commands_served(raw) - before  # at most: some pipeline
        finally:
            raw.close()
        for n in range(0, 400, 2):
            ask(n)  # half of the keys are cached before the outage
        stop = threading.Event()
        threads = [threading.Thread(target=hammer, args=(i, stop)) for i in range(8)]
        for thread in threads:
            thread.start()
        wait_until(lambda: calls_made[0] >= 200, 30, "the threads call with Redis up")
        errors_before = tier.counters.errors
        server.kill()
        killed_at = time.monotonic()
        down.set()
        wait_until(
            lambda: calls_while_down[0] >= 400 and len(computed_while_down) >= 20,
            30,
            "the threads call with Redis down, and compute what it held not",
        )
        stop.set()
        down_for = time.monotonic() - killed_at
        for thread in threads:
            thread.join()
        assert failures == []
        ask(10_000)  # one more call: a due probe fails and reopens the breaker
        health = {t.name: t for t in cache.health().tiers}[tier.name]
        assert health.state == "open", health
        # Refused once it is dead; a server starved of CPU (a busy machine) may first time out.
        assert health.last_error and any(
            error in health.last_error for error in ("ConnectionError", "TimeoutError")
        )
        assert not cache.health().ok
        assert tier.queued_writes > 0 and computed_while_down

        # No per-call stall while down: only the calls in flight when Redis died, and the
        # breaker's probes, reached the dead server; every other call skipped the tier
        # without I/O. (Bounded in operations, which no scheduler delay can change.)
        in_flight_attempts = len(threads) * round_trips_per_miss
        probes = 2 + down_for / tier.base_cooldown  # at most one per cooldown, and ask(10_000)
        attempts_while_down = tier.counters.errors - errors_before
        assert 0 < attempts_while_down <= in_flight_attempts + tier.failure_threshold + probes
        assert calls_while_down[0] > attempts_while_down, (calls_while_down, attempts_while_down)
        # And in time: the slowest call made at most all of a miss's round trips, each
        # bounded by the configured connect and read timeouts; five times that for a loaded
        # machine (8 threads share the GIL, and other processes the cores).
        options = tier.backend.options
        per_round_trip = options.connect_timeout + options.timeout
        bound = 5 * round_trips_per_miss * per_round_trip
        assert slowest[0] < bound, (slowest, bound, round_trips_per_miss)

        down.clear()
        server.start()  # same port, empty data set

        def recovered() -> bool:
            ask(0)  # traffic: a probe is due once the breaker's cooldown (real time) is over
            return tier.state == "closed" and not tier.queued_writes

        wait_until(recovered, 20, "the breaker closed and the queue replayed", interval=0.05)
        raw = server.client()
        try:
            missing = [n for n in computed_while_down if not raw.exists(ask.cache_key(n))]
            assert missing == []  # every result paid for during the outage reached Redis
        finally:
            raw.close()
        hits_before = tier.counters.hits
        for n in sorted(computed_while_down):
            assert ask(n) == f"value {n}"
        assert tier.counters.hits - hits_before == len(computed_while_down)
    finally:
        cache.close()
        server.close()
