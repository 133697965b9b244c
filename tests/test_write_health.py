"""Reads and writes are healthy or not apart (issue 9 item 8), and the write-retry queue is
bounded in bytes (issue 9 item 12, the queue's half).

Real servers and files only: a redis-server set to ``maxmemory`` + ``noeviction`` refuses
every write (OOM) and still serves every read; a SQLite file that cannot grow (the process's
file-size limit, in a child process) refuses writes with "database or disk is full"; a Redis
port with nothing listening stands for Redis down.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from llmcache_redis import RedisBackend

import llmcache
from llmcache._disk import DiskTier
from llmcache._resilience import DEFAULT_QUEUE_BYTES, GuardedTier
from tests.clocks import FakeClock
from tests.servers.redis_server import RedisServer, free_port

SECRET = "write-health-secret-0123456789abcdef"


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


def out_of_memory(raw: redis.Redis) -> None:
    """Every write is refused from now on: the limit is far below what Redis already uses."""
    raw.config_set("maxmemory-policy", "noeviction")
    raw.config_set("maxmemory", 1)


def test_a_redis_that_cannot_store_still_serves_its_hits(server: RedisServer) -> None:
    raw = server.client()
    cache = llmcache.Cache(
        workspace=f"oom-{uuid.uuid4().hex[:6]}", secret=SECRET, tiers=[server.patient_url]
    )
    real_calls: list[int] = []

    @cache.cached(namespace="n")
    def ask(n: int) -> str:
        real_calls.append(n)
        return f"answer {n}"

    try:
        stored = list(range(20))
        assert [ask(n) for n in stored] == [f"answer {n}" for n in stored]
        assert len(real_calls) == 20
        out_of_memory(raw)
        # Misses: the writes fail (OOM), and every caller still gets the result it paid for.
        fresh = list(range(100, 110))
        assert [ask(n) for n in fresh] == [f"answer {n}" for n in fresh]
        assert real_calls[20:] == fresh
        # Hits: still served from Redis, however many writes failed before them.
        assert [ask(n) for n in stored] == [f"answer {n}" for n in stored]
        assert len(real_calls) == 30, "hits were recomputed: the failed writes stopped reads"
        health = {t.name: t for t in cache.health().tiers}[cache._tiers[0].name]
        assert health.write_state == "open" and health.read_state == "closed"
        assert health.write_error is not None and "maxmemory" in health.write_error
        assert health.read_error is None
        assert health.state == "open" and not cache.health().ok  # degraded, and says so
        assert health.queued_writes > 0  # the paid results wait for Redis to have room
    finally:
        raw.config_set("maxmemory", 0)
        cache.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem of 1 MiB (tmpfs), which fills up; needs the right to mount."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_a_full_disk_still_serves_its_hits_and_says_why(small_disk: Path) -> None:
    cache = llmcache.Cache(workspace="full", tiers=[f"disk://{small_disk}/cache"])
    real_calls: list[int] = []

    @cache.cached(namespace="n")
    def ask(n: int) -> str:
        real_calls.append(n)
        return f"answer {n} " + os.urandom(2000).hex()  # incompressible: fills the disk

    try:
        stored = {n: ask(n) for n in range(20)}
        filler = small_disk / "filler"
        # Take what is left of the disk (unbuffered: nothing left to flush at close).
        with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as out:
            while True:
                out.write(b"\0" * 4096)
        fresh = [ask(n) for n in range(100, 110)]
        assert [answer.split()[1] for answer in fresh] == [str(n) for n in range(100, 110)]
        assert {n: ask(n) for n in range(20)} == stored  # served from the full disk
        assert real_calls == [*range(20), *range(100, 110)], "hits were recomputed"
        health = cache.health().tiers[-1]
        assert health.read_state == "closed" and health.write_state == "open"
        # The real cause, not the "cannot rollback" that may follow it.
        assert "database or disk is full" in str(health.write_error), health.write_error
    finally:
        cache.close()


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_the_write_retry_queue_is_bounded_in_bytes() -> None:
    """Redis down, 400 results of 512 KiB: the queue keeps at most its byte bound (the
    newest writes), counts what it dropped, and RSS grows by about the bound, not 200 MiB."""
    down = RedisBackend(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    tier = GuardedTier(down)
    assert tier.max_queue_bytes == DEFAULT_QUEUE_BYTES == 32 * 1024 * 1024
    size = 512 * 1024
    before = rss_bytes()
    for i in range(400):
        value = bytes([i % 251]) * size  # a new object each time, as a new result would be
        assert tier.set(f"llmc:queue:{i}", value, 3600) is False
        assert tier.queued_bytes <= tier.max_queue_bytes
    grown = rss_bytes() - before
    assert 60 <= tier.queued_writes <= 64  # as many as fit in 32 MiB, not all 400
    assert tier.dropped_writes == 400 - tier.queued_writes  # the oldest, counted
    assert tier._queue[-1][0] == "llmc:queue:399"  # the newest are kept
    # Generous: the bound, plus allocator slack; 400 results held would be 200 MiB.
    assert grown < tier.max_queue_bytes + 64 * 1024 * 1024, grown / 2**20
    down.close()


def test_the_queue_bound_is_configurable_and_shown_in_health(tmp_path: Path) -> None:
    port = free_port()
    cache = llmcache.Cache(
        workspace="queue", secret=SECRET, tiers=["memory", f"redis://127.0.0.1:{port}/0"]
    )
    tier = cache._tiers[0]
    tier.max_queue_bytes = 1024 * 1024

    @cache.cached(namespace="n")
    def ask(n: int) -> str:
        return os.urandom(50_000).hex() + str(n)  # ~100 kB that compression cannot shrink

    try:
        for n in range(30):
            assert ask(n).endswith(str(n))  # the paid result, whatever the tier does
        health = {t.name: t for t in cache.health().tiers}[tier.name]
        assert 0 < health.queued_bytes <= health.max_queue_bytes == 1024 * 1024
        assert health.dropped_writes >= 30 - 10  # ~100 kB each: at most 10 fit in 1 MiB
    finally:
        cache.close()


def test_a_queued_write_is_replayed_with_the_ttl_left_by_its_tiers_clock(tmp_path: Path) -> None:
    """A write queued while the tier refused writes keeps, when replayed, only what is left
    of its TTL by the tier's clock; one that expired in the queue is not written at all."""
    clock = FakeClock()
    disk = DiskTier(tmp_path / "d")
    disk.clock = clock
    tier = GuardedTier(disk)
    for _ in range(tier.failure_threshold):
        tier.writes.failed(llmcache.BackendError("refused"))
    assert tier.set("llmc:queued:short", b"s", 2) is False  # the breaker is open: queued
    assert tier.set("llmc:queued:long", b"l", 10) is False
    assert tier.set("llmc:queued:forever", b"f", None) is False
    clock.advance(4)
    tier.writes.succeeded()  # the tier takes writes again
    assert tier.flush() == 2 and tier.queued_writes == 0
    assert disk.get("llmc:queued:short") is None  # expired while queued: never written
    clock.advance(5.9)
    assert disk.get("llmc:queued:long") == b"l"  # 6 s were left of its 10
    clock.advance(0.2)
    assert disk.get("llmc:queued:long") is None
    assert disk.get("llmc:queued:forever") == b"f"
    disk.close()
