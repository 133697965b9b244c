"""Invalidation that no fault and no tampering can undo or lose (issue 9 items 4-6, issue 15
items 1-3), against a real redis-server started here and real SQLite files.

The model: `ask(q)` answers ``"<q>@<version>"``, where the version is the test's to set and is
not part of the key. An answer whose version is older than an invalidation is stale. Every
test makes an invalidation, then a fault, and checks that no process (the running one, and
a new one started after the fault, in a subprocess) ever serves a stale answer, and that no
fault reaches the caller as an exception.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmcache
from llmcache._disk import DiskTier
from llmcache._generations import Generation, RecordFormat
from llmcache._keys import KeySchedule
from tests.clocks import wait_until
from tests.servers.redis_server import RedisServer

SECRET = "generation-tests-secret-0123456789abcdef"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLL = 0.2  # the generation poll of the caches made here
#: Generous bound on anything that should happen "within a tick or two": the suite must pass
#: with another core busy, so this is many poll intervals, not a tight guess.
SETTLE = 10.0
GARBAGE: list[Any] = ["inf", "-5", "abc", 0]

# A process of its own. argv: tiers (JSON), workspace, poll. Reads one JSON command per line
# on stdin and answers one JSON line; an exception from the cache is reported, not raised.
WORKER = r"""
import json, sys, time
import llmcache

tiers, workspace, poll = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3])
cache = llmcache.Cache(workspace=workspace, secret=sys.argv[4], tiers=tiers,
                       generation_poll=poll)
state = {"version": 0}
site = cache.site("generation-tests.ask", namespace="research")

def ask(q):
    return site.call({"q": q}, lambda: f"{q}@{state['version']}")

def integrity():
    return sum(t.counters.integrity_failures for t in cache._tiers)

for line in sys.stdin:
    command = json.loads(line)
    op = command["op"]
    try:
        if op == "ask":
            state["version"] = command["version"]
            out = {"value": ask(command["q"])}
        elif op == "invalidate":
            result = cache.invalidate("research")
            out = {"published": result.published}
        elif op == "watch":
            # Ask until the answer is no longer `old`; when did it change?
            state["version"] = command["version"]
            deadline = time.time() + command["seconds"]
            value = ask(command["q"])
            while value == command["old"] and time.time() < deadline:
                time.sleep(0.005)
                value = ask(command["q"])
            out = {"value": value, "changed_at": time.time() if value != command["old"] else None}
        elif op == "state":
            out = {"pending": cache.health().pending_invalidations,
                   "generation": cache.namespace("research").generation}
        else:
            break
        out.update(error=None, integrity=integrity())
    except Exception as error:
        out = {"error": repr(error)}
    print(json.dumps(out), flush=True)
cache.close()
"""


class Worker:
    """A child process holding its own Cache (its own memory tier and watcher)."""

    def __init__(self, tiers: list[str], workspace: str, poll: float = POLL) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCACHE_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(tiers), workspace, str(poll), SECRET],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def __call__(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=10)
            raise AssertionError(f"worker died: {self.process.stderr.read()}")  # type: ignore[union-attr]
        answer: dict[str, Any] = json.loads(line)
        assert answer["error"] is None, answer["error"]  # nothing reaches the caller
        return answer

    def ask(self, version: int, q: str = "q") -> str:
        value: str = self("ask", q=q, version=version)["value"]
        return value

    def close(self) -> None:
        with_stdin = self.process.stdin
        if with_stdin is not None and not with_stdin.closed:
            with_stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Model:
    """This process's side: the same cached `ask`, on a Cache of its own."""

    def __init__(self, tiers: list[str], workspace: str) -> None:
        self.cache = llmcache.Cache(
            workspace=workspace, secret=SECRET, tiers=tiers, generation_poll=POLL
        )
        # The same call site (identity) as the worker's, so the processes share entries.
        self.site = self.cache.site("generation-tests.ask", namespace="research")

    def ask(self, version: int, q: str = "q") -> str:
        value: str = self.site.call({"q": q}, lambda: f"{q}@{version}")
        return value

    @property
    def integrity_failures(self) -> int:
        return sum(t.counters.integrity_failures for t in self.cache._tiers)

    def record_key(self, field: str) -> str:
        return RecordFormat(self.cache._keys).key(field)

    def old_key(self) -> str:  # where generations were kept before: one counter hash
        return f"llmc-meta:{self.cache._keys.scope}:generations"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(condition: Callable[[], bool], seconds: float = SETTLE) -> float:
    """Poll `condition` until true; the time it became true. Fails after `seconds`."""
    wait_until(condition, seconds, interval=0.01)
    return time.time()


def never_stale(model: Model, stale: set[str], version: int, seconds: float) -> None:
    """Ask again and again for `seconds` (several watcher ticks): never a stale answer.

    Real time on purpose: the watcher polls generations every `generation_poll` seconds of
    it, and what is checked is every answer served across those ticks.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert model.ask(version) not in stale
        time.sleep(0.005)


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server this test may kill, stop or restart."""
    with RedisServer() as started:
        yield started


def invalidated(model: Model) -> set[str]:
    """Cache "q@1", invalidate, cache "q@2": returns the answers from before the invalidation."""
    assert model.ask(1) == "q@1"
    assert model.ask(2) == "q@1"  # cached
    result = model.cache.invalidate("research")
    assert result.published
    assert model.ask(2) == "q@2"
    return {"q@1"}


# -- item 4 and 5: garbage, set-back and deleted records ------------------------------------
class Store:
    """Writes into the generation records of a tier, as someone without the secret could."""

    def __init__(self, kind: str, server: RedisServer | None, folder: Path) -> None:
        self.kind = kind
        self.tiers = ["memory", server.url if server else f"disk://{folder}"]
        self._raw = server.client() if server else None
        self._file = folder / "cache.sqlite3"

    def put(self, key: str, value: Any) -> None:
        if self._raw is not None:
            self._raw.set(key, value)
            return
        with sqlite3.connect(self._file) as db:
            db.execute(
                "INSERT INTO entries (key, value, expires, size, accessed) "
                "VALUES (?, ?, NULL, 8, 0) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def put_old(self, key: str, field: str, value: Any) -> None:
        if self._raw is not None:
            self._raw.hset(key, field, value)
            return
        with sqlite3.connect(self._file) as db:
            db.execute(
                "INSERT INTO counters (key, field, value) VALUES (?, ?, ?) "
                "ON CONFLICT (key, field) DO UPDATE SET value = excluded.value",
                (key, field, value),
            )

    def get(self, key: str) -> object:
        if self._raw is not None:
            return self._raw.get(key)
        with sqlite3.connect(self._file) as db:
            row = db.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def delete(self, *keys: str) -> None:
        if self._raw is not None:
            self._raw.delete(*keys)
            return
        with sqlite3.connect(self._file) as db:
            db.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k in keys])
            db.executemany("DELETE FROM counters WHERE key = ?", [(k,) for k in keys])


@pytest.fixture(params=["redis", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    server = request.getfixturevalue("server") if request.param == "redis" else None
    return Store(request.param, server, tmp_path / "shared")


def _valid(model: Model, data: object, field: str) -> bool:
    try:
        RecordFormat(model.cache._keys).open(field, data)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("shape", ["old", "new"])
@pytest.mark.parametrize("garbage", GARBAGE, ids=[repr(g) for g in GARBAGE])
def test_garbage_records_are_counted_never_raised_never_resurrect(
    store: Store, shape: str, garbage: Any
) -> None:
    workspace = unique("garbage")
    model = Model(store.tiers, workspace)
    try:
        stale = invalidated(model)
        for field in ("research", "*"):
            if shape == "old":
                store.put_old(model.old_key(), field, garbage)
            else:
                store.put(model.record_key(field), garbage)
        # The running process: several ticks, never an old answer, never an exception ...
        never_stale(model, stale, 3, seconds=4 * POLL)
        if shape == "new":
            assert model.integrity_failures >= 1  # counted
            # ... and it puts its own valid record back.
            wait_for(lambda: _valid(model, store.get(model.record_key("research")), "research"))
        result = model.cache.invalidate("research")  # never raises
        assert model.ask(4) == "q@4"
        assert result.generation
        stale.add("q@2")  # made before that invalidation ("q@4" is current)
    finally:
        model.cache.close()
    # A new process, with the garbage back in place and nobody to repair it.
    for field in ("research", "*"):
        if shape == "old":
            store.put_old(model.old_key(), field, garbage)
        else:
            store.put(model.record_key(field), garbage)
    worker = Worker(store.tiers, workspace)
    try:
        assert worker.ask(5) not in stale
        if shape == "new":
            assert worker("state")["integrity"] >= 1
    finally:
        worker.close()


def test_deleted_records_never_resurrect(store: Store) -> None:
    workspace = unique("deleted")
    model = Model(store.tiers, workspace)
    try:
        stale = invalidated(model)
        keys = (model.record_key("research"), model.record_key("*"), model.old_key())
        store.delete(*keys)
        never_stale(model, stale, 3, seconds=4 * POLL)
        # The running process re-publishes what was deleted.
        wait_for(lambda: _valid(model, store.get(model.record_key("research")), "research"))
    finally:
        model.cache.close()
    store.delete(*keys)  # and now with no process left to put them back
    worker = Worker(store.tiers, workspace)
    try:
        assert worker.ask(4) not in stale | {"q@2"}  # at worst an invalidation
    finally:
        worker.close()


def test_a_forged_record_does_not_verify() -> None:
    keys = KeySchedule(SECRET.encode(), "forge")
    records = RecordFormat(keys)
    genuine = records.seal("research", Generation(7, "00112233aabbccdd"))
    assert records.open("research", genuine) == Generation(7, "00112233aabbccdd")
    # Moved to another field, another workspace, another secret, or edited: all rejected.
    other = RecordFormat(KeySchedule(b"another-secret-0123456789", "forge"))
    for field, data, fmt in [
        ("other", genuine, records),
        ("research", genuine, other),
        ("research", genuine.replace(b":7:", b":9:"), records),
        ("research", genuine[:-1] + b"0", records),
    ]:
        with pytest.raises(ValueError):
            fmt.open(field, data)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=120), st.text(max_size=120), st.integers(), st.floats()))
def test_no_stored_value_but_a_signed_record_opens(data: object) -> None:
    records = RecordFormat(KeySchedule(SECRET.encode(), "prop"))
    with pytest.raises(ValueError):
        records.open("research", data.encode() if isinstance(data, str) else data)


# -- issue 15 item 2: Redis restarted without persistence -----------------------------------
def test_redis_restarted_empty_never_makes_old_entries_current(own_server: RedisServer) -> None:
    workspace = unique("restart")
    tiers = ["memory", own_server.url]
    model = Model(tiers, workspace)
    try:
        stale = invalidated(model)
        own_server.kill()  # kill -9: no persistence, every record and entry is gone
        own_server.start()
        # The running process never goes back to an older generation (its memory tier
        # still holds "q@1" under the old one) and puts its record back in Redis.
        never_stale(model, stale, 3, seconds=4 * POLL)
        raw = own_server.client()
        wait_for(lambda: _valid(model, raw.get(model.record_key("research")), "research"))
        # A later invalidation never reuses a generation: "q@2" (made before it) is gone.
        before = model.cache.namespace("research").generation
        assert model.cache.invalidate("research").published
        assert model.cache.namespace("research").generation != before
        assert model.ask(4) == "q@4"
        # A new process started now follows the running one's record.
        worker = Worker(tiers, workspace)
        try:
            assert worker.ask(5) == "q@4"  # read from Redis, current generation
            assert worker("state")["generation"] == model.cache.namespace("research").generation
        finally:
            worker.close()
    finally:
        model.cache.close()


# -- item 6 and issue 15 item 3: invalidations during an outage ----------------------------
def test_invalidation_during_an_outage_reaches_redis_when_it_returns(
    own_server: RedisServer,
) -> None:
    workspace = unique("outage")
    tiers = ["memory", own_server.url]
    model = Model(tiers, workspace)
    worker = Worker(tiers, workspace)
    try:
        assert model.ask(1) == "q@1"
        assert worker.ask(1) == "q@1"  # now in the worker's memory tier too
        own_server.kill()
        result = model.cache.invalidate("research")
        assert not result.published  # it says so
        assert model.cache.health().pending_invalidations == 1
        assert model.ask(2) == "q@2"  # applied here at once
        own_server.start()
        # The worker keeps serving "q@1" from memory until the record reaches Redis, then
        # follows within its poll interval.
        worker.process.stdin.write(  # type: ignore[union-attr]
            json.dumps({"op": "watch", "q": "q", "version": 3, "old": "q@1", "seconds": 60}) + "\n"
        )
        worker.process.stdin.flush()  # type: ignore[union-attr]
        # Bounded by the breaker's longest cooldown (15 s) with margin: the tier is probed
        # again at most that long after it failed.
        published_at = wait_for(lambda: model.cache.health().pending_invalidations == 0, seconds=30)
        changed = json.loads(worker.process.stdout.readline())  # type: ignore[union-attr]
        assert changed["error"] is None and changed["changed_at"] is not None
        assert changed["value"] in {"q@2", "q@3"}
        # Another process stops serving within its poll interval of the publication
        # (margin: one more interval and a second for a busy machine).
        assert changed["changed_at"] - published_at < 2 * POLL + 1.0
    finally:
        worker.close()
        model.cache.close()


def test_two_processes_invalidating_during_an_outage_never_cancel(
    own_server: RedisServer,
) -> None:
    workspace = unique("cancel")
    tiers = ["memory", own_server.url]
    model = Model(tiers, workspace)
    worker = Worker(tiers, workspace)
    try:
        assert model.ask(1) == "q@1"
        assert worker.ask(1) == "q@1"
        own_server.kill()
        assert not model.cache.invalidate("research").published
        assert model.ask(2) == "q@2"  # made after the first, before the second invalidation
        assert worker("invalidate")["published"] is False
        assert worker.ask(3) == "q@3"  # made after both
        own_server.start()
        wait_for(
            lambda: (
                model.cache.health().pending_invalidations == 0 and worker("state")["pending"] == 0
            ),
            seconds=30,  # the breaker's longest cooldown, with margin
        )
        # Converged on one generation, newer than both invalidations.
        wait_for(
            lambda: worker("state")["generation"] == model.cache.namespace("research").generation
        )
        stale = {"q@1", "q@2"}
        never_stale(model, stale, 4, seconds=4 * POLL)
        assert worker.ask(4) not in stale
        # And an invalidation made after Redis came back is not cancelled by the outage's.
        current = model.ask(5)
        assert worker("invalidate")["published"] is True
        changed_at = wait_for(lambda: model.ask(6) != current, seconds=SETTLE)
        assert model.ask(6) == "q@6"
        assert changed_at  # within SETTLE; the latency bound is the test above's
    finally:
        worker.close()
        model.cache.close()


# -- issue 15 item 1: a failed read never sends a process back -------------------------------
def test_a_paused_redis_never_sends_a_process_back(own_server: RedisServer) -> None:
    model = Model(["memory", own_server.url], unique("pause"))
    try:
        stale = invalidated(model)
        raw = own_server.client()
        pause = 6 * POLL
        raw.execute_command("CLIENT", "PAUSE", int(pause * 1000), "ALL")
        never_stale(model, stale, 2, seconds=pause)  # failed reads, then an open breaker
        never_stale(model, stale, 2, seconds=4 * POLL)  # and after
    finally:
        model.cache.close()


def test_an_open_disk_breaker_never_sends_a_process_back(tmp_path: Path) -> None:
    model = Model(["memory", f"disk://{tmp_path}"], unique("breaker"))
    try:
        stale = invalidated(model)
        disk = model.cache._tiers[0]
        for _ in range(disk.failure_threshold):
            disk.reads.failed(OSError("simulated: disk unreadable"))
        assert disk.reads.state == "open"
        never_stale(model, stale, 2, seconds=4 * POLL)
    finally:
        model.cache.close()


# -- first load: the authority unreadable, and the async path bounded -----------------------
def test_first_load_without_the_authority_serves_nothing_older(
    own_server: RedisServer, tmp_path: Path
) -> None:
    """A new process whose Redis is paused must not trust an older record on its disk."""
    workspace = unique("first")
    full = ["memory", f"disk://{tmp_path}", own_server.url]
    local = Model(full, workspace)
    try:
        assert local.ask(1) == "q@1"  # in the disk tier and in Redis
    finally:
        local.cache.close()
    # Another machine (no access to this disk) invalidates through Redis.
    remote = Model(["memory", own_server.url], workspace)
    try:
        assert remote.cache.invalidate("research").published
    finally:
        remote.cache.close()
    raw = own_server.client()
    raw.execute_command("CLIENT", "PAUSE", 3000, "ALL")
    fresh = Model(full, workspace)
    try:
        assert fresh.ask(2) == "q@2"  # not "q@1" from the disk
    finally:
        fresh.cache.close()


def test_async_first_load_is_bounded_and_keeps_the_loop_running(
    own_server: RedisServer,
) -> None:
    """Redis hung (SIGSTOP) behind a 5 s socket timeout: the first async call goes on
    provisionally after the load deadline; the event loop is never blocked meanwhile."""
    url = own_server.url + "?timeout=5&connect_timeout=5&async_timeout=5"
    model = Model(["memory", url], unique("async"))
    model.cache._tiers[0].async_timeout = 5.0
    model.cache._namespaces._load_deadline = 0.5
    assert own_server.pid is not None
    os.kill(own_server.pid, 19)  # SIGSTOP
    try:

        async def main() -> tuple[float, float]:
            gaps: list[float] = []

            async def ticker() -> None:
                last = time.perf_counter()
                while True:
                    await asyncio.sleep(0.01)
                    now = time.perf_counter()
                    gaps.append(now - last)
                    last = now

            task = asyncio.create_task(ticker())
            started = time.perf_counter()
            await model.cache.aload(model.cache.namespace("research"))
            took = time.perf_counter() - started
            task.cancel()
            return took, max(gaps, default=0.0)

        took, gap = asyncio.run(main())
        assert model.cache.namespace("research").loaded
        assert took < 0.5 + 2.0  # the deadline, with margin; the read itself takes 5 s
        assert gap < 0.5  # the loop ran all along
    finally:
        os.kill(own_server.pid, 18)  # SIGCONT
        model.cache.close()


def test_health_counts_pending_and_memory_only_invalidation_is_local(tmp_path: Path) -> None:
    cache = llmcache.Cache(workspace="mem", tiers=["memory"])
    result = cache.invalidate("research")
    assert isinstance(result, llmcache.Invalidation)
    assert result.published is False and cache.health().pending_invalidations == 0
    with pytest.raises(llmcache.ConfigError):
        cache.invalidate("")
    cache.close()


def test_redis_write_side_failing_still_invalidates_locally(own_server: RedisServer) -> None:
    """OOM on every write: the invalidation is applied here, pending, and lands after."""
    model = Model(["memory", own_server.url], unique("oom"))
    raw = own_server.client()
    try:
        stale = invalidated(model)
        raw.config_set("maxmemory", 1)
        raw.config_set("maxmemory-policy", "noeviction")
        result = model.cache.invalidate("research")
        assert not result.published and model.cache.health().pending_invalidations == 1
        stale.add("q@2")
        never_stale(model, stale, 3, seconds=4 * POLL)
        raw.config_set("maxmemory", 0)
        wait_for(lambda: model.cache.health().pending_invalidations == 0, seconds=30)
        data = raw.get(model.record_key("research"))
        assert RecordFormat(model.cache._keys).open("research", data).label == result.generation
    finally:
        model.cache.close()


def test_pending_invalidations_in_lockstep_settle_above_both(own_server: RedisServer) -> None:
    """Two processes' outage invalidations, their rounds in strict alternation (the worst
    interleaving: each reads the other's record before its own): they settle in a few rounds
    (no endless re-invalidation) on one record newer than both."""
    workspace = unique("lockstep")
    books = []
    caches = [
        llmcache.Cache(
            workspace=workspace, secret=SECRET, tiers=[own_server.url], generation_poll=3600
        )
        for _ in range(2)
    ]
    try:
        for cache in caches:
            cache.load(cache.namespace("research"))
            books.append(cache._namespaces._book)
        own_server.kill()
        made = [cache.invalidate("research") for cache in caches]
        assert not any(m.published for m in made)
        own_server.start()
        for cache in caches:  # both tiers' breakers closed: the rounds reach Redis
            wait_for(lambda c=cache: c._tiers[0].call("get", "probe") is None, seconds=30)
        rounds = 0
        while any(book._pending for book in books):
            rounds += 1
            assert rounds <= 10, [book._pending for book in books]
            for book in books:
                book.refresh()
        for book in books:
            book.refresh()
        final = {book.get("research") for book in books}
        assert len(final) == 1
        (record,) = final
        assert record is not None
        assert record.label not in {m.generation for m in made}  # newer than both
    finally:
        for cache in caches:
            cache.close()


# -- two processes meeting a workspace nobody has a record of -----------------------------------
# argv: secret, then one cache folder per round. Each Cache is made before the race (file and
# schema exist); on each "go" line the process loads the namespace and prints the generation
# it settled on, then stores one answer and reports whether the other process's is a hit.
FIRST_LOAD_WORKER = r"""
import sys
import llmcache

secret, folders = sys.argv[1], sys.argv[2:]
caches = [llmcache.Cache(workspace="first", secret=secret, tiers=[f"disk://{f}"])
          for f in folders]
for cache in caches:
    sys.stdin.readline()  # go: both processes load at the same moment
    cache.load(cache.namespace("research"))
    print(cache.namespace("research").generation, flush=True)
    cache.close()
"""


def test_two_processes_loading_a_fresh_workspace_together_settle_on_one_generation(
    tmp_path: Path,
) -> None:
    # Both read "no record" and each minted its own: two generations, no entry shared
    # until a watcher tick (the two-process disk test made 600 real calls instead of 300).
    # The first record is now claimed under the authority's lock: one wins, the other adopts it.
    rounds = 100
    folders = [str(tmp_path / f"round-{i}") for i in range(rounds)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCACHE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_LOAD_WORKER, SECRET, *folders],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    settled: list[list[str]] = []
    try:
        for _ in range(rounds):
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
            settled.append([worker.stdout.readline().strip() for worker in workers])  # type: ignore[union-attr]
    except BrokenPipeError:  # a worker died: its stderr says why
        settled.append([])
    finally:
        errors = [worker.communicate(timeout=60)[1] for worker in workers]
    assert all(len(labels) == 2 and all(labels) for labels in settled), errors  # all loaded
    disagreed = [(i, labels) for i, labels in enumerate(settled) if labels[0] != labels[1]]
    assert disagreed == []


class _ReadTogetherDisk(DiskTier):
    """A disk tier whose first generation read waits for the other process's first read:
    the worst interleaving of two first loads (both read "no record" before either writes)."""

    def __init__(self, folder: Path, together: threading.Barrier) -> None:
        super().__init__(folder)
        self.together: threading.Barrier | None = together

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        found = super().get_many(keys)
        together, self.together = self.together, None
        if together is not None:
            together.wait()
        return found


def test_first_loads_in_lockstep_settle_on_one_generation(tmp_path: Path) -> None:
    """Two processes (two caches, each with its own connection to one disk folder) read
    "no record" at the same moment: they must still settle on one generation at once, not
    each on its own until a watcher tick (they shared no entry until then)."""
    together = threading.Barrier(2, timeout=SETTLE)
    caches = [
        llmcache.Cache(
            workspace="lockstep",
            secret=SECRET,
            tiers=[_ReadTogetherDisk(tmp_path / "d", together)],
            generation_poll=3600,  # no watcher tick settles them: only the first load
        )
        for _ in range(2)
    ]
    try:
        loads = [
            threading.Thread(target=lambda c=cache: c.load(c.namespace("research")))
            for cache in caches
        ]
        for load in loads:
            load.start()
        for load in loads:
            load.join()
        labels = {cache.namespace("research").generation for cache in caches}
        assert len(labels) == 1, labels
        (label,) = labels
        assert label.startswith("1.1-")  # a real record both hold, not a provisional one
    finally:
        for cache in caches:
            cache.close()
