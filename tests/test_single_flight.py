"""Identical concurrent misses make one real call: threads, asyncio tasks of any loop, and
processes (whose leader holds a renewed lease, so a dead one is replaced within two)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import llmcache
from llmcache._disk import DiskTier
from llmcache._memory import MemoryTier
from tests.clocks import FakeClock, wait_until
from tests.servers.redis_server import RedisServer

#: How long a test waits for something that should happen at once (a busy machine's bound).
PATIENCE = 30.0


class Joins:
    """Counts the callers that joined a flight another caller leads (so found it in flight).

    A leader's real call can then last exactly until the followers are all waiting for it,
    instead of a guessed sleep that a slow machine may outlast.
    """

    def __init__(self, cache: llmcache.Cache) -> None:
        self.count = 0
        self._changed = threading.Condition()
        self._join = cache._flights.join
        cache._flights.join = self._counting_join  # type: ignore[method-assign]

    def _counting_join(self, fingerprint: int, loop: Any = None) -> Any:
        flight, leading = self._join(fingerprint, loop)
        if not leading:
            with self._changed:
                self.count += 1
                self._changed.notify_all()
        return flight, leading

    def wait(self, count: int) -> None:
        """Block until `count` callers have joined; fail if they do not within PATIENCE."""
        with self._changed:
            joined = self._changed.wait_for(lambda: self.count >= count, PATIENCE)
        assert joined, f"{self.count} of {count} callers joined the flight"

    async def reach(self, count: int) -> None:
        """`wait`, from a coroutine, without blocking its event loop."""
        await asyncio.to_thread(self.wait, count)


def test_threads_share_one_real_call(memory_cache: llmcache.Cache) -> None:
    calls = 0
    lock = threading.Lock()
    joins = Joins(memory_cache)

    @memory_cache.cached
    def slow(q: str) -> dict[str, str]:
        nonlocal calls
        with lock:
            calls += 1
        joins.wait(15)  # the real call lasts until the 15 others wait for it
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
    joins = Joins(memory_cache)

    @memory_cache.cached
    def failing(q: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            joins.wait(7)  # fails once the 7 others wait for it
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
    joins = Joins(memory_cache)

    @memory_cache.cached
    async def slow(q: str) -> list[str]:
        nonlocal calls
        calls += 1
        await joins.reach(49)
        return [q]

    results = await asyncio.gather(*(slow("same") for _ in range(50)))
    assert calls == 1
    assert all(r == ["same"] for r in results)
    assert len({id(r) for r in results}) == 50


async def test_asyncio_exception_reaches_every_waiter(memory_cache: llmcache.Cache) -> None:
    calls = 0
    joins = Joins(memory_cache)

    @memory_cache.cached
    async def failing(q: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await joins.reach(9)
            raise ValueError("boom")
        return "ok"

    results = await asyncio.gather(*(failing("q") for _ in range(10)), return_exceptions=True)
    assert calls == 1 and all(isinstance(r, ValueError) for r in results)
    assert await failing("q") == "ok"


async def test_cancelled_leader_does_not_cancel_waiters(memory_cache: llmcache.Cache) -> None:
    calls = 0
    leading = asyncio.Event()
    joins = Joins(memory_cache)

    @memory_cache.cached
    async def slow(q: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            leading.set()
            await asyncio.Event().wait()  # the leader's call: runs until it is cancelled
        return q

    leader = asyncio.create_task(slow("q"))
    await leading.wait()
    follower = asyncio.create_task(slow("q"))
    await joins.reach(1)  # the follower waits for the leader's call
    leader.cancel()
    assert await follower == "q"
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert calls == 2  # the follower made the call itself


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


# argv: disk folder, marker file, "hold" (the real call lasts until a line comes on stdin) or
# "now". Its lock tier notes, in <marker>.waiting, a process that found the call's lock taken
# (not the lock under which a fresh workspace's first generation record is claimed).
CHILD = textwrap.dedent(
    """
    import os, sys, llmcache
    directory, marker, hold = sys.argv[1], sys.argv[2], sys.argv[3] == "hold"
    cache = llmcache.Cache(workspace="two", tiers=["memory", "disk://" + directory])
    locks = cache._lock_tier.backend
    take_lock = locks.try_lock

    def try_lock(key, ttl):
        token = take_lock(key, ttl)
        if token is None and key.startswith("llmc:"):  # a call's (not a generation's) lock
            with open(marker + ".waiting", "a") as f:
                f.write(f"{os.getpid()}\\n")
        return token

    locks.try_lock = try_lock

    @cache.cached(namespace="proc")
    def slow(question: str) -> str:
        with open(marker, "a") as f:
            f.write("call\\n")
        if hold:
            sys.stdin.readline()
        return "answer:" + question

    print(slow("shared question"), llmcache.info(slow("shared question")).tier, flush=True)
    """
)


def _run_child(directory: Path, marker: Path, hold: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(marker), "hold" if hold else "now"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_second_process_hits_the_disk_tier(tmp_path: Path) -> None:
    marker = tmp_path / "calls.txt"
    first = _run_child(tmp_path / "d", marker)
    assert first.communicate(timeout=60)[0].strip() == "answer:shared question memory"
    second = _run_child(tmp_path / "d", marker)
    assert second.communicate(timeout=60)[0].strip() == "answer:shared question memory"
    assert marker.read_text().count("call") == 1


def test_processes_making_the_same_slow_call_make_one(tmp_path: Path) -> None:
    marker = tmp_path / "calls.txt"
    waiting = tmp_path / "calls.txt.waiting"
    children = [_run_child(tmp_path / "d", marker, hold=True) for _ in range(4)]
    try:
        # The real call lasts until the three other processes have found it under way.
        wait_until(
            lambda: waiting.exists() and len(set(waiting.read_text().split())) == 3,
            PATIENCE,
            "three processes wait for the fourth's call",
        )
        for child in children:  # only the one making the call reads it
            assert child.stdin is not None
            child.stdin.write("done\n")
            child.stdin.flush()
        outputs = [c.communicate(timeout=60)[0].strip() for c in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(10)
    assert all(o.startswith("answer:shared question") for o in outputs)
    assert marker.read_text().count("call") == 1


# -- issue 9, item 15: single-flight gaps ------------------------------------------------------
def test_threads_and_two_event_loops_share_one_real_call(memory_cache: llmcache.Cache) -> None:
    """Sync callers in threads and async callers in two loops: one real call in all.

    An async caller that joins a call led from another thread or loop waits for it without
    blocking its own loop: a ticker task of that loop keeps ticking meanwhile.
    """
    site = memory_cache.site("test.mixed-callers")
    request = {"prompt": "the same question"}
    threads_calling, tasks_per_loop = 4, 3
    callers = threads_calling + 2 * tasks_per_loop
    calls: list[str] = []
    release = threading.Event()
    joins = Joins(memory_cache)

    def compute() -> dict[str, int]:
        calls.append("thread")
        release.wait(PATIENCE)
        return {"answer": 42}

    async def acompute() -> dict[str, int]:
        calls.append("task")
        await asyncio.to_thread(release.wait, PATIENCE)
        return {"answer": 42}

    results: list[dict[str, int]] = []
    ticks_while_waiting: list[int] = []
    ticks_of_loops: list[list[int]] = []  # each loop's tick count, read from this thread

    def thread_caller() -> None:
        results.append(site.call(request, compute))

    async def loop_callers() -> None:
        ticks = [0]
        ticks_of_loops.append(ticks)

        async def ticker() -> None:  # runs only while the loop is free
            while True:
                ticks[0] += 1
                await asyncio.sleep(0.005)

        ticking = asyncio.create_task(ticker())
        answers = await asyncio.gather(
            *(site.acall(request, acompute) for _ in range(tasks_per_loop))
        )
        ticks_while_waiting.append(ticks[0])
        ticking.cancel()
        results.extend(answers)

    workers = [threading.Thread(target=thread_caller) for _ in range(threads_calling)]
    workers += [threading.Thread(target=asyncio.run, args=(loop_callers(),)) for _ in range(2)]
    for worker in workers:
        worker.start()
    # The call ends only once every other caller waits for it (none could be served from
    # memory) and both loops have ticked on meanwhile (their waiting tasks block nothing).
    joins.wait(callers - 1)
    wait_until(lambda: len(ticks_of_loops) == 2, PATIENCE)
    joined_at = [ticks[0] for ticks in ticks_of_loops]
    wait_until(
        lambda: all(t[0] > at + 5 for t, at in zip(ticks_of_loops, joined_at, strict=True)),
        PATIENCE,
        "both event loops tick while their tasks wait for the call",
    )
    release.set()
    for worker in workers:
        worker.join(PATIENCE)
    assert len(calls) == 1, calls
    assert results == [{"answer": 42}] * callers
    assert len({id(r) for r in results}) == callers  # each caller got its own object
    assert site.counters.misses == 1 and site.counters.coalesced == callers - 1
    assert len(ticks_while_waiting) == 2 and min(ticks_while_waiting) > 5


async def test_a_cancelled_leader_hands_its_call_to_exactly_one_waiter(
    memory_cache: llmcache.Cache,
) -> None:
    calls = 0
    leading = asyncio.Event()
    joins = Joins(memory_cache)

    @memory_cache.cached
    async def slow(q: str) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            leading.set()
            await asyncio.Event().wait()  # the leader's call: runs until it is cancelled
        else:
            await joins.reach(21 + 20)  # the call that took over: until the 20 others join it
        return [q]

    leader = asyncio.create_task(slow("q"))
    await leading.wait()
    waiters = [asyncio.create_task(slow("q")) for _ in range(21)]
    await joins.reach(21)  # they all wait for the leader's call
    leader.cancel()
    results = await asyncio.gather(*waiters)
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert results == [["q"]] * 21
    assert calls == 2  # the cancelled call and the one that took over
    assert slow.cache_info().coalesced == 20


def test_a_thread_caller_waiting_on_a_flight_led_from_its_own_thread_calls_itself(
    memory_cache: llmcache.Cache,
) -> None:
    """A sync call made inside the running loop that leads the same call must not hang."""
    site = memory_cache.site("test.same-thread")
    request = {"prompt": "q"}

    async def scenario() -> list[str]:
        entered, finish = asyncio.Event(), asyncio.Event()

        async def acompute() -> str:
            entered.set()
            await finish.wait()  # in flight until the sync call below has returned
            return "from the task"

        task = asyncio.create_task(site.acall(request, acompute))
        await entered.wait()
        # The same thread, blocking inside the loop: waiting for the task would never end.
        inner = site.call(request, lambda: "from the sync call")
        finish.set()
        return [inner, await task]

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == ["from the sync call", "from the task"]


# -- across processes: leases --------------------------------------------------------------------
LEASE_CHILD = textwrap.dedent(
    """
    import json, os, sys, time, llmcache
    tier, marker, seconds, options = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    cache = llmcache.Cache(workspace="leases", secret="lease-test-secret-0123456789",
                           tiers=["memory", tier], **json.loads(options))
    locks = cache._lock_tier.backend
    take_lock, said = locks.try_lock, []

    def try_lock(key, ttl):  # a process that finds a call's lock taken says so, once
        token = take_lock(key, ttl)
        if token is None and key.startswith("llmc:") and not said:
            said.append(True)
            print(json.dumps({"waiting": True}), flush=True)
        return token

    locks.try_lock = try_lock

    @cache.cached(namespace="n")
    def slow(question: str) -> str:
        with open(marker, "a") as f:
            f.write(f"{os.getpid()} {time.time()}\\n")
        # Real time, on purpose: a leader's lock must outlive several real leases (renewed)
        # or lapse once it is killed; the killed leader's 600 s end only with its process.
        time.sleep(seconds)
        return "answer:" + question

    cache.load(cache.namespace("n"))
    print(json.dumps({"lease": cache.lock_ttl}), flush=True)
    sys.stdin.readline()
    print(json.dumps({"value": slow("q")}), flush=True)
    """
)
ROOT = Path(__file__).resolve().parent.parent


class LeaseChild:
    """A process that makes the slow call once told to; it reports its lease first."""

    def __init__(self, tier: str, marker: Path, seconds: float, **options: float) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCACHE_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        arguments = [tier, str(marker), str(seconds), json.dumps(options)]
        self.process = subprocess.Popen(
            [sys.executable, "-c", LEASE_CHILD, *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lease = float(self.read()["lease"])

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the child died (exit code {self.process.wait(10)})"
        found: dict[str, Any] = json.loads(line)
        return found

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def _calls(marker: Path) -> list[tuple[int, float]]:
    if not marker.exists():
        return []
    lines = [line.split() for line in marker.read_text().splitlines()]
    return [(int(pid), float(at)) for pid, at in lines]


def _wait_for_calls(marker: Path, count: int, within: float) -> list[tuple[int, float]]:
    wait_until(lambda: len(_calls(marker)) >= count, within, f"{count} call(s) under way")
    return _calls(marker)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


@pytest.fixture(params=["redis", "disk"])
def shared_tier(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.client().flushdb()
        yield server.url
    else:
        yield f"disk://{tmp_path}/shared"


def test_a_killed_leader_is_taken_over_within_two_leases(shared_tier: str, tmp_path: Path) -> None:
    """SIGKILL stops the leader's renewals: its lock lapses and a waiter calls instead."""
    marker = tmp_path / "calls.txt"
    leader = LeaseChild(shared_tier, marker, 600)  # default lease
    follower = LeaseChild(shared_tier, marker, 0)
    try:
        lease = leader.lease
        # The default lease is short: a dead leader must not hold the others for a minute.
        assert lease <= 5.0
        leader.go()
        assert len(_wait_for_calls(marker, 1, 60)) == 1  # the leader is in its call
        follower.go()
        assert follower.read() == {"waiting": True}  # it found the lock taken
        assert len(_calls(marker)) == 1
        os.kill(leader.process.pid, signal.SIGKILL)
        killed_at = time.time()
        assert follower.read() == {"value": "answer:q"}
        calls = _calls(marker)
        assert [pid for pid, _ in calls] == [leader.process.pid, follower.process.pid]
        took_over_after = calls[1][1] - killed_at
        # The lock lapses at most one lease after the last renewal; a second lease covers
        # the follower's polling and scheduling on a busy machine.
        assert took_over_after < 2 * lease + 1.0, (took_over_after, lease)
    finally:
        leader.stop()
        follower.stop()


def test_a_live_leader_keeps_its_lock_through_a_call_of_many_leases(
    shared_tier: str, tmp_path: Path
) -> None:
    lease, call_seconds = 0.4, 3.0  # the call lasts over seven leases
    marker = tmp_path / "calls.txt"
    children = [LeaseChild(shared_tier, marker, call_seconds, lock_ttl=lease) for _ in range(3)]
    try:
        assert all(child.lease == lease for child in children)
        children[0].go()
        assert len(_wait_for_calls(marker, 1, 60)) == 1
        for child in children[1:]:
            child.go()
        assert [child.read() for child in children[1:]] == [{"waiting": True}] * 2
        assert [child.read() for child in children] == [{"value": "answer:q"}] * 3
        assert len(_calls(marker)) == 1  # nobody took over from the live leader
    finally:
        for child in children:
            child.stop()


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "3", True])
def test_lock_ttl_must_be_a_positive_number_of_seconds(value: Any) -> None:
    with pytest.raises(llmcache.ConfigError, match="lock_ttl"):
        llmcache.Cache(workspace="w", tiers=["memory"], lock_ttl=value)


@pytest.fixture(params=["redis", "disk", "upstash"])
def lock_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[llmcache.Backend]:
    backend: llmcache.Backend
    if request.param == "redis":
        from llmcache_redis import RedisBackend

        backend = RedisBackend(request.getfixturevalue("redis_server").url)
    elif request.param == "disk":
        backend = DiskTier(tmp_path / "locks")
    else:
        from llmcache_upstash import UpstashBackend

        from tests.servers.upstash_rest import UpstashRestServer

        with UpstashRestServer(request.getfixturevalue("redis_server").url) as rest:
            backend = UpstashBackend.from_url(f"upstash://{rest.token}@127.0.0.1:{rest.port}?tls=0")
            yield backend
            backend.close()
        return
    yield backend
    backend.close()


def test_renew_lock_extends_only_the_holders_lock(
    lock_backend: llmcache.Backend, request: pytest.FixtureRequest
) -> None:
    clock = FakeClock()
    lock_backend.clock = clock  # the disk tier's locks expire by it; Redis ignores it
    key = f"llmc:renew-test:{time.time_ns()}:lock"
    first_ttl = 1.5
    token = lock_backend.try_lock(key, first_ttl)
    assert isinstance(token, str)
    assert lock_backend.renew_lock(key, "not-the-token", 30) is False
    assert lock_backend.renew_lock(key, token, 30) is True
    if isinstance(lock_backend, DiskTier):
        clock.advance(first_ttl + 0.2)
        assert lock_backend.try_lock(key, 1) is None  # past its first TTL, still held: renewed
    else:  # Redis (behind Upstash too) expires locks by its own clock: it was told 30 s
        client = request.getfixturevalue("redis_server").client()
        try:
            assert 29_000 < client.pttl(key) <= 30_000
        finally:
            client.close()
    lock_backend.unlock(key, token)
    assert lock_backend.renew_lock(key, token, 30) is False  # released: nothing to extend
    assert lock_backend.try_lock(key, 1) is not None


def test_a_backend_that_cannot_renew_keeps_long_locks() -> None:
    """A third-party backend without `renew_lock`: a long call must not be duplicated."""
    from llmcache._leases import UNRENEWED_LOCK_TTL, lease_seconds
    from llmcache._resilience import GuardedTier

    class NoRenewal(MemoryTier):
        supports_locks = True

    assert llmcache.Backend.renew_lock is NoRenewal.renew_lock
    assert lease_seconds(GuardedTier(NoRenewal()), 3.0) == UNRENEWED_LOCK_TTL
    assert lease_seconds(GuardedTier(DiskTier()), 3.0) == 3.0
