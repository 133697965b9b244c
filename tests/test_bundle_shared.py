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


def test_a_wrapped_openai_client_is_served_from_an_import(tmp_path: Path) -> None:
    """The OpenAI adapter's entries (pydantic responses, priced from their usage) match in
    another workspace: the importing client sends the provider nothing, sync or streamed."""
    from openai import OpenAI

    from llmcache.testing import FakeOpenAIServer

    messages = [{"role": "user", "content": "Say hello to the bundle."}]
    with (
        FakeOpenAIServer() as server,
        OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as raw,
    ):
        a = Cache("openai-a", secret=SECRET_A, tiers=["memory", f"disk://{tmp_path}/a"])
        first = a.wrap(raw, provider="openai").chat.completions.create(
            model="gpt-4o-mini", messages=messages
        )
        summary = a.export_bundle(tmp_path / "openai.llmc", "default")
        assert summary.entries == 1 and summary.cost_usd > 0
        b = Cache("openai-b", secret=SECRET_B, tiers=["memory", f"disk://{tmp_path}/b"])
        b.import_bundle(summary.path, summary.key)
        before = server.requests
        again = b.wrap(raw, provider="openai").chat.completions.create(
            model="gpt-4o-mini", messages=messages
        )
        assert server.requests == before
        assert again.choices[0].message.content == first.choices[0].message.content
        assert b.report().totals.saved_usd == pytest.approx(summary.cost_usd)

        streamed = [{"role": "user", "content": "Stream it, please."}]
        with a.wrap(raw, provider="openai").chat.completions.create(
            model="gpt-4o-mini", messages=streamed, stream=True
        ) as stream:
            said = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        b.import_bundle(
            a.export_bundle(tmp_path / "s.llmc", "default", key=summary.key).path, summary.key
        )
        before = server.requests
        with b.wrap(raw, provider="openai").chat.completions.create(
            model="gpt-4o-mini", messages=streamed, stream=True
        ) as stream:
            replayed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert said and (replayed, server.requests) == (said, before)
        a.close()
        b.close()
