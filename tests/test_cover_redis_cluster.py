"""The Redis Cluster tier as a user meets it: `llmcache doctor` describes it, a clear of many
entries reaches every node in batches, awaited calls take and release the cross-process
lock, and a closed tier says so. On a real three-node cluster on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from llmcache_redis import RedisClusterBackend
from typer.testing import CliRunner

import llmcache
from llmcache import BackendError
from llmcache._cli import app
from tests.backend_contract import SECRET
from tests.servers.redis_server import RedisCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster(join="meet") as started:
        yield started


def test_doctor_describes_the_cluster(cluster: RedisCluster) -> None:
    shown = CliRunner().invoke(
        app,
        ["doctor", "--tiers", f"memory,{cluster.url}", "--secret", SECRET],
        env={"COLUMNS": "400"},
    )
    assert shown.exit_code == 0, shown.output
    row = next(line for line in shown.stdout.splitlines() if "redis+cluster://" in line)
    assert " yes " in row and "mode=cluster" in row


def test_clearing_many_entries_reaches_every_node(cluster: RedisCluster) -> None:
    many = 2_000  # some 670 a node: over one UNLINK batch (500) on each
    # A clear of thousands of keys is more than the default 50 ms of one operation.
    tier = f"{cluster.url}?timeout=5"
    with llmcache.Cache(workspace="many", secret=SECRET, tiers=[tier]) as cache:
        square = cache.cached(lambda n: n * n)
        for n in range(many):
            square(n)
        removed = cache.clear()
        assert removed == many, (cache.health().model_dump(), cache.stats().model_dump())
        calls: list[int] = []

        @cache.cached
        def again(n: int) -> int:
            calls.append(n)
            return n

        again(1)
        assert calls == [1]


async def test_awaited_calls_take_and_release_the_lock(cluster: RedisCluster) -> None:
    tier = RedisClusterBackend.from_url(cluster.patient_url)
    try:
        await tier.aunlock("llmc:no-such-lock", "token")  # a first async call: connects
        await tier.aset("llmc:a", b"1", 30)
        assert await tier.aget_many(["llmc:a", "llmc:b"]) == [b"1", None]
        with llmcache.Cache(workspace="alock", secret=SECRET, tiers=["memory", tier]) as cache:
            made: list[str] = []

            @cache.cached
            async def ask(q: str) -> str:
                made.append(q)
                return q.upper()

            assert await ask("a") == "A"
            assert await ask("a") == "A"
            assert made == ["a"]
            lock = cache.site("probe").key({"q": 1}) + ":lock"
            token = await tier.atry_lock(lock, 5)
            assert token is not None and await tier.atry_lock(lock, 5) is None
            await tier.aunlock(lock, token)
            assert await tier.atry_lock(lock, 5) is not None  # let go: free again
        assert await tier.aget_many([]) == [] and tier.get_many([]) == []
    finally:
        tier.close()


def test_a_closed_tier_says_it_is_closed(cluster: RedisCluster) -> None:
    tier = RedisClusterBackend.from_url(cluster.patient_url)
    tier.close()
    with pytest.raises(BackendError, match="the tier is closed"):
        tier.get("llmc:anything")
