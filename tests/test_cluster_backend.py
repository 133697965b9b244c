"""The Redis tier on a real three-node Redis Cluster started on loopback."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import threading
from collections.abc import Callable, Iterator

import pytest
from llmcache_redis import RedisClusterBackend

import llmcache
from llmcache import BackendError
from tests.backend_contract import CONTRACT_TIMEOUT, SECRET, BackendContract
from tests.servers.redis_server import RedisCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster(join="meet") as started:
        yield started


class TestClusterContract(BackendContract):
    @pytest.fixture
    def backend(self, cluster: RedisCluster) -> Iterator[RedisClusterBackend]:
        tier = RedisClusterBackend.from_url(f"{cluster.url}?{CONTRACT_TIMEOUT}")
        yield tier
        tier.close()

    @pytest.fixture
    def server_pttl(self, cluster: RedisCluster) -> Iterator[Callable[[str], int]]:
        client = cluster.client()  # asks the node that holds the key
        yield client.pttl
        client.close()


def node_key_counts(cluster: RedisCluster, pattern: str) -> list[int]:
    counts = []
    for node in cluster.nodes:
        client = node.client()
        counts.append(sum(1 for _ in client.scan_iter(match=pattern, count=1000)))
        client.close()
    return counts


def test_entries_spread_over_every_node_and_clear_reaches_all(cluster: RedisCluster) -> None:
    cache = llmcache.Cache(workspace="spread", secret=SECRET, tiers=["memory", cluster.patient_url])
    other = llmcache.Cache(workspace="spread2", secret=SECRET, tiers=[cluster.patient_url])

    @cache.cached(namespace="n")
    def square(n: int) -> int:
        return n * n

    @other.cached(namespace="n")
    def cube(n: int) -> int:
        return n**3

    try:
        assert isinstance(cache._tiers[0].backend, RedisClusterBackend)
        for n in range(60):
            assert square(n) == n * n
            assert cube(n) == n**3
        counts = node_key_counts(cluster, "llmc:spread#*")
        assert sum(counts) == 60
        assert all(count >= 5 for count in counts), counts  # every node holds a share
        cache.memory.clear()  # type: ignore[union-attr]
        assert [square(n) for n in range(60)] == [n * n for n in range(60)]
        assert cache._tiers[0].counters.hits == 60
        assert cache.clear() >= 60
        assert node_key_counts(cluster, "llmc:spread#*") == [0, 0, 0]
        assert sum(node_key_counts(cluster, "llmc:spread2#*")) == 60  # another workspace
    finally:
        cache.close()
        other.close()


def test_get_many_across_slots_and_nodes(cluster: RedisCluster) -> None:
    tier = RedisClusterBackend.from_url(cluster.patient_url)
    try:
        keys = [f"llmc:many:{i}" for i in range(40)]  # no hash tag: many slots, all nodes
        for i, key in enumerate(keys):
            if i % 3:
                tier.set(key, str(i).encode(), 60)
        expected = [None if i % 3 == 0 else str(i).encode() for i in range(40)]
        assert tier.get_many(keys) == expected
        assert asyncio.run(tier.aget_many(keys)) == expected
    finally:
        tier.close()


def test_counters_locks_and_async_on_a_cluster(cluster: RedisCluster) -> None:
    # What this checks is behaviour, not speed: deadlines far above the defaults (50 ms, and
    # 250 ms for asyncio), so that a busy machine cannot turn a slow reply into a failure.
    sep = "&" if "?" in cluster.url else "?"
    tier = RedisClusterBackend.from_url(
        f"{cluster.url}{sep}timeout=5&connect_timeout=5&async_timeout=5&async_connect_timeout=5"
    )

    async def scenario(run: int) -> None:
        await asyncio.gather(*(tier.aset(f"llmc:async:{i}", b"v%d" % i, 30) for i in range(30)))
        values = await asyncio.gather(*(tier.aget(f"llmc:async:{i}") for i in range(30)))
        assert values == [b"v%d" % i for i in range(30)]
        lock = f"llmc:async:lock{run}"
        token = await tier.atry_lock(lock, 5)
        assert token and await tier.atry_lock(lock, 5) is None
        await tier.aunlock(lock, token)
        assert await tier.atry_lock(lock, 5)

    try:
        tier.incr_counters("llmc-ledger:c", {"a": 1, "b": 0.5})
        tier.incr_counters("llmc-ledger:c", {"a": 2})
        assert tier.read_counters("llmc-ledger:c") == {"a": 3.0, "b": 0.5}
        asyncio.run(scenario(1))
        asyncio.run(scenario(2))  # a second loop
        facts = tier.describe()
        assert facts["mode"] == "cluster" and len(facts["primaries"]) == 3
    finally:
        tier.close()


def test_unreachable_cluster_does_not_break_the_cache() -> None:
    """Building the cluster client needs the slot map: it must not raise at Cache()."""
    cache = llmcache.Cache(
        workspace="down", secret=SECRET, tiers=["memory", "redis+cluster://127.0.0.1:1"]
    )

    @cache.cached
    def double(n: int) -> int:
        return 2 * n

    try:
        assert [double(n) for n in range(5)] == [0, 2, 4, 6, 8]
        assert cache._tiers[0].counters.errors >= 1
        with pytest.raises(BackendError):
            cache._tiers[0].backend.get("k")
    finally:
        cache.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_another_thread_discovers_the_cluster_is_not_stuck(
    cluster: RedisCluster,
) -> None:
    """The thread that held the discovery lock at the fork is not in the child."""
    tier = RedisClusterBackend.from_url(cluster.patient_url)
    holding, release = threading.Event(), threading.Event()

    def discovering() -> None:
        with tier._connect_lock:  # what a thread building the cluster client holds
            holding.set()
            release.wait(60)

    thread = threading.Thread(target=discovering, daemon=True)
    thread.start()
    assert holding.wait(30)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what its first operation did, then leave at once
        code = 1
        try:
            os.close(read_end)
            tier.set("llmc:fork:cluster", b"from the child", 30)
            os.write(write_end, tier.get("llmc:fork:cluster") or b"nothing")
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 20)
        assert ready, "the child's first operation waited for a lock nobody holds"
        assert os.read(read_end, 100) == b"from the child"
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(read_end)
        release.set()
        thread.join(30)
        tier.close()
