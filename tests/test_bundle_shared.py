"""Export from and import into the shared tiers: a real Redis Cluster, and Upstash's REST
protocol (through the real upstash-redis client) over a real redis-server. Export lists
keys with each tier's `scan` (every primary of the cluster; REST SCAN), import writes the
portable keys there, and the importing workspace's calls in another cache are hits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmcache import Cache
from tests.servers.redis_server import RedisCluster, RedisServer
from tests.servers.upstash_rest import UpstashRestServer

SECRET_A = "shared-secret-of-workspace-a-012"
SECRET_B = "shared-secret-of-workspace-b-210"
PATIENT = "timeout=5&connect_timeout=5"
QUESTIONS = [f"question {i}" for i in range(40)]  # keys over every slot of the cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster(join="meet") as started:
        yield started


@pytest.fixture(scope="module")
def upstash() -> Iterator[UpstashRestServer]:
    with RedisServer() as server, UpstashRestServer(server.url) as rest:
        yield rest


def asker(cache: Cache, computed: list[str]) -> Any:
    @cache.cached(namespace="shared")
    async def ask(question: str) -> str:
        computed.append(question)
        return question.title()

    return ask


def round_trip(tmp_path: Path, url: str, workspace: str) -> None:
    recorded: list[str] = []
    a = Cache(f"{workspace}-a", secret=SECRET_A, tiers=["memory", url])
    ask = asker(a, recorded)

    async def record() -> None:
        for question in QUESTIONS:
            await ask(question)

    asyncio.run(record())
    a.close()
    exporter = Cache(f"{workspace}-a", secret=SECRET_A, tiers=["memory", url])
    summary = exporter.export_bundle(tmp_path / "shared.llmc", "shared")  # from the tier alone
    assert summary.entries == len(QUESTIONS)

    importer = Cache(f"{workspace}-b", secret=SECRET_B, tiers=["memory", url])
    assert importer.import_bundle(summary.path, summary.key).entries == len(QUESTIONS)
    importer.close()
    computed: list[str] = []
    reader = Cache(f"{workspace}-b", secret=SECRET_B, tiers=["memory", url])
    ask = asker(reader, computed)

    async def replay() -> list[str]:
        return [await ask(question) for question in QUESTIONS]

    assert asyncio.run(replay()) == [q.title() for q in QUESTIONS]
    assert computed == []
    assert reader.stats().hits == len(QUESTIONS)
    for cache in (exporter, reader):
        cache.clear()
        cache.close()


def test_round_trip_through_a_redis_cluster(tmp_path: Path, cluster: RedisCluster) -> None:
    round_trip(tmp_path, f"{cluster.url}?{PATIENT}", "cluster")


def test_round_trip_through_upstash_rest(tmp_path: Path, upstash: UpstashRestServer) -> None:
    url = f"upstash://{upstash.token}@127.0.0.1:{upstash.port}?tls=0&{PATIENT}"
    round_trip(tmp_path, url, "upstash")
