"""llmcache as LiteLLM's cache: real `litellm.completion` / `acompletion` / `embedding`
calls against our loopback OpenAI-compatible server, with
`litellm.cache = llmcache_litellm.cache(...)`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import litellm
import llmcache_litellm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llmcache_litellm import LLMCacheBackend, usage_of

import llmcache
from llmcache.testing import FakeOpenAIServer
from tests.conftest import SECRET
from tests.servers.redis_server import RedisServer

MODEL = "openai/gpt-4o-mini"
EMBEDDING_MODEL = "openai/text-embedding-3-small"
# genai-prices' OpenAI rates, $ per million tokens (input, cached input, output).
GPT_4O_MINI = (0.15, 0.075, 0.60)
GPT_4O = (2.50, 1.25, 10.00)


pytest_plugins = ["tests.openai_fixtures"]  # server (a FakeOpenAIServer per test)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[llmcache.Cache]:
    with llmcache.Cache(workspace="litellm", tiers=["memory", f"disk://{tmp_path}/tier"]) as c:
        yield c


@pytest.fixture
def installed(cache: llmcache.Cache) -> Iterator[litellm.Cache]:
    made = llmcache_litellm.cache(cache)
    litellm.cache = made
    yield made
    litellm.disable_cache()


def ask(server: FakeOpenAIServer, text: str = "Why cache?", **kwargs: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "api_base": server.base_url,
        "api_key": "test",
        **kwargs,
    }


def wait_until(condition: Any, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


async def await_until(condition: Any, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def entries(cache: llmcache.Cache) -> int:
    return sum(tier.writes for tier in cache.stats().tiers if tier.name == "memory")


# ------------------------------------------------------------------------------ completion


def test_the_one_line_gives_litellm_a_cache_whose_backend_is_ours(cache: llmcache.Cache) -> None:
    made = llmcache_litellm.cache(cache, supported_call_types=["completion"])
    assert isinstance(made, litellm.Cache)
    assert isinstance(made.cache, LLMCacheBackend)
    assert made.cache.llmcache is cache
    assert made.supported_call_types == ["completion"]


def test_a_second_completion_makes_no_request(
    installed: litellm.Cache, server: FakeOpenAIServer, cache: llmcache.Cache
) -> None:
    first = litellm.completion(**ask(server))
    second = litellm.completion(**ask(server))
    assert server.requests == 1
    assert second._hidden_params["cache_hit"] is True
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.id == first.id
    assert second.usage.prompt_tokens == first.usage.prompt_tokens
    assert type(second) is type(first)
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (1, 1)
    # LiteLLM builds its response after the backend returns, so `llmcache.info(second)`
    # does not know it; the last cached call of this thread is that hit.
    info = llmcache.last_info()
    assert info is not None and info.hit and info.tier == "memory"
    assert info.model == "gpt-4o-mini" and info.saved_cost_usd > 0


def test_different_requests_are_different_entries(
    installed: litellm.Cache, server: FakeOpenAIServer
) -> None:
    litellm.completion(**ask(server, "one"))
    litellm.completion(**ask(server, "two"))
    litellm.completion(**ask(server, "one", temperature=0.5))
    assert server.requests == 3
    litellm.completion(**ask(server, "two"))
    assert server.requests == 3


async def test_acompletion_hits(
    installed: litellm.Cache, server: FakeOpenAIServer, cache: llmcache.Cache
) -> None:
    first = await litellm.acompletion(**ask(server, "async"))
    # LiteLLM writes the entry in a task of its own, after the call returns.
    await await_until(lambda: cache.stats().tiers[0].writes >= 1, "the write task")
    second = await litellm.acompletion(**ask(server, "async"))
    assert server.requests == 1
    assert second._hidden_params["cache_hit"] is True
    info = llmcache.last_info()  # the backend's read ran in this task
    assert info is not None and info.hit
    assert second.choices[0].message.content == first.choices[0].message.content


def test_sync_and_async_share_entries(installed: litellm.Cache, server: FakeOpenAIServer) -> None:
    first = litellm.completion(**ask(server, "shared"))

    async def again() -> Any:
        return await litellm.acompletion(**ask(server, "shared"))

    second = asyncio.run(again())
    assert server.requests == 1
    assert second.choices[0].message.content == first.choices[0].message.content


def test_a_stream_is_stored_and_replayed_as_a_stream(
    installed: litellm.Cache, server: FakeOpenAIServer, cache: llmcache.Cache
) -> None:
    def text_of(stream: Any) -> tuple[str, int]:
        pieces = [chunk.choices[0].delta.content or "" for chunk in stream]
        return "".join(pieces), len(pieces)

    live, _ = text_of(litellm.completion(**ask(server, "stream me"), stream=True))
    wait_until(lambda: cache.stats().tiers[0].writes >= 1, "the stream's entry")
    replay = litellm.completion(**ask(server, "stream me"), stream=True)
    assert isinstance(replay, litellm.CustomStreamWrapper)
    replayed, chunks = text_of(replay)
    assert server.requests == 1
    assert replayed == live and chunks >= 1


async def test_an_async_stream_is_replayed(
    installed: litellm.Cache, server: FakeOpenAIServer, cache: llmcache.Cache
) -> None:
    async def text_of(stream: Any) -> str:
        return "".join([chunk.choices[0].delta.content or "" async for chunk in stream])

    live = await text_of(await litellm.acompletion(**ask(server, "astream"), stream=True))
    await await_until(lambda: cache.stats().tiers[0].writes >= 1, "the stream's entry")
    replayed = await text_of(await litellm.acompletion(**ask(server, "astream"), stream=True))
    assert server.requests == 1
    assert replayed == live


# ------------------------------------------------------------------------------ embeddings


def test_embedding_hits(installed: litellm.Cache, server: FakeOpenAIServer) -> None:
    kwargs = {"model": EMBEDDING_MODEL, "api_base": server.base_url, "api_key": "test"}
    first = litellm.embedding(input=["alpha", "beta"], **kwargs)
    second = litellm.embedding(input=["alpha", "beta"], **kwargs)
    assert server.requests == 1
    assert second._hidden_params["cache_hit"] is True
    assert [d["embedding"] for d in second.data] == [d["embedding"] for d in first.data]


async def test_aembedding_caches_each_input(
    installed: litellm.Cache, server: FakeOpenAIServer, cache: llmcache.Cache
) -> None:
    kwargs = {"model": EMBEDDING_MODEL, "api_base": server.base_url, "api_key": "test"}
    first = await litellm.aembedding(input=["alpha", "beta"], **kwargs)
    await await_until(lambda: cache.stats().tiers[0].writes >= 2, "the pipeline write")
    second = await litellm.aembedding(input=["beta", "alpha"], **kwargs)
    assert server.requests == 1  # each input is an entry of its own, in any order
    assert second.data[0]["embedding"] == first.data[1]["embedding"]
    assert second.data[1]["embedding"] == first.data[0]["embedding"]


# ------------------------------------------------------------------------------ per-call controls


def test_no_cache_skips_the_read_and_refreshes_the_entry(
    installed: litellm.Cache, server: FakeOpenAIServer
) -> None:
    litellm.completion(**ask(server))
    litellm.completion(**ask(server), cache={"no-cache": True})
    assert server.requests == 2
    litellm.completion(**ask(server))
    assert server.requests == 2


def test_no_store_skips_the_write(
    installed: litellm.Cache, server: FakeOpenAIServer, cache: llmcache.Cache
) -> None:
    litellm.completion(**ask(server), cache={"no-store": True})
    litellm.completion(**ask(server), cache={"no-store": True})
    assert server.requests == 2
    assert entries(cache) == 0


def test_ttl_per_call_expires_the_entry(server: FakeOpenAIServer) -> None:
    now = [1_000_000.0]
    with llmcache.Cache(workspace="ttl", tiers=["memory"], clock=lambda: now[0]) as cache:
        litellm.cache = llmcache_litellm.cache(cache)
        try:
            litellm.completion(**ask(server), cache={"ttl": 60})
            litellm.completion(**ask(server, "kept"))
            now[0] += 59
            litellm.completion(**ask(server), cache={"ttl": 60})
            litellm.completion(**ask(server))  # a read with or without the ttl: one entry
            assert server.requests == 2
            now[0] += 2
            litellm.completion(**ask(server), cache={"ttl": 60})
            assert server.requests == 3  # the 60 s entry expired
            litellm.completion(**ask(server, "kept"))
            assert server.requests == 3  # the entry without a ttl did not
        finally:
            litellm.disable_cache()


def test_a_default_ttl(server: FakeOpenAIServer) -> None:
    now = [1_000_000.0]
    with llmcache.Cache(workspace="ttl", tiers=["memory"], clock=lambda: now[0]) as cache:
        litellm.cache = llmcache_litellm.cache(cache, ttl=30)
        try:
            litellm.completion(**ask(server))
            now[0] += 20
            litellm.completion(**ask(server))
            assert server.requests == 1
            now[0] += 20
            litellm.completion(**ask(server))
            assert server.requests == 2
        finally:
            litellm.disable_cache()


def test_a_litellm_namespace_is_our_namespace(
    installed: litellm.Cache, server: FakeOpenAIServer, cache: llmcache.Cache
) -> None:
    litellm.completion(**ask(server), cache={"namespace": "research"})
    litellm.completion(**ask(server), cache={"namespace": "support"})
    assert server.requests == 2  # a namespace is part of the key
    litellm.completion(**ask(server), cache={"namespace": "research"})
    assert server.requests == 2
    cache.invalidate(namespace="research")
    litellm.completion(**ask(server), cache={"namespace": "research"})
    litellm.completion(**ask(server), cache={"namespace": "support"})
    assert server.requests == 3  # only research's entries went
    cache.flush()
    rows = {row.group["namespace"]: row for row in cache.report().rows}
    assert rows["research"].hits == 1 and rows["support"].hits == 1


def test_a_namespace_llmcache_refuses_still_keeps_entries_apart(
    installed: litellm.Cache, server: FakeOpenAIServer
) -> None:
    litellm.completion(**ask(server), cache={"namespace": "has space"})
    litellm.completion(**ask(server), cache={"namespace": "has space"})
    litellm.completion(**ask(server))
    assert server.requests == 2


def test_s_maxage_refuses_older_entries(
    installed: litellm.Cache, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    litellm.completion(**ask(server))
    later = time.time() + 120
    monkeypatch.setattr("litellm.caching.caching.time.time", lambda: later)
    litellm.completion(**ask(server), cache={"s-maxage": 60})
    assert server.requests == 2
    litellm.completion(**ask(server), cache={"s-maxage": 600})
    assert server.requests == 2


# ------------------------------------------------------------------------------ savings


def price(usage: Any, rates: tuple[float, float, float]) -> float:
    cached = (usage.prompt_tokens_details.cached_tokens or 0) if usage.prompt_tokens_details else 0
    uncached = usage.prompt_tokens - cached
    return (uncached * rates[0] + cached * rates[1] + usage.completion_tokens * rates[2]) / 1e6


def test_the_report_counts_the_money_and_time_a_hit_saved(
    installed: litellm.Cache, server: FakeOpenAIServer, cache: llmcache.Cache
) -> None:
    first = litellm.completion(**ask(server, "a longer question " * 20))
    second = litellm.completion(**ask(server, "a longer question " * 20))
    assert second._hidden_params.get("response_cost") in (0, 0.0, None)  # LiteLLM's view
    cache.flush()
    report = cache.report()
    (row,) = report.rows
    assert row.group == {"namespace": "default", "model": "gpt-4o-mini"}
    assert (row.calls, row.hits, row.misses) == (2, 1, 1)
    expected = price(first.usage, GPT_4O_MINI)
    assert expected > 0
    assert row.spent_usd == pytest.approx(expected)
    assert row.saved_usd == pytest.approx(expected)
    assert row.saved_input_tokens == first.usage.prompt_tokens
    assert row.saved_output_tokens == first.usage.completion_tokens
    assert row.saved_s > 0  # the miss's latency, measured from the read to the write


def test_cached_prompt_tokens_are_priced_at_their_rate(cache: llmcache.Cache) -> None:
    backend = LLMCacheBackend(cache)
    response = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {
            "prompt_tokens": 12_000,
            "completion_tokens": 1_000,
            "prompt_tokens_details": {"cached_tokens": 6_000},
        },
    }
    key = "0" * 64
    assert backend.get_cache(key) is None
    backend.set_cache(key, {"timestamp": 1.0, "response": json.dumps(response)}, model="gpt-4o")
    hit = backend.get_cache(key)
    assert hit == {"timestamp": 1.0, "response": response}
    cache.flush()
    (row,) = cache.report().rows
    expected = (6_000 * GPT_4O[0] + 6_000 * GPT_4O[1] + 1_000 * GPT_4O[2]) / 1e6
    assert expected == pytest.approx(0.0325)  # README's example, without the writes
    assert row.saved_usd == pytest.approx(expected)
    assert row.saved_cache_read_tokens == 6_000


async def test_aembedding_savings_are_counted_per_input(
    installed: litellm.Cache, server: FakeOpenAIServer, cache: llmcache.Cache
) -> None:
    kwargs = {"model": EMBEDDING_MODEL, "api_base": server.base_url, "api_key": "test"}
    first = await litellm.aembedding(input=["alpha", "beta gamma"], **kwargs)
    await await_until(lambda: cache.stats().tiers[0].writes >= 2, "the pipeline write")
    await litellm.aembedding(input=["alpha", "beta gamma"], **kwargs)
    cache.flush()
    (row,) = cache.report().rows
    assert row.group["model"] == "text-embedding-3-small"
    assert row.hits == 2 and row.saved_input_tokens == first.usage.prompt_tokens


def test_health_and_stats_cover_litellm_calls(
    installed: litellm.Cache, server: FakeOpenAIServer, cache: llmcache.Cache
) -> None:
    litellm.completion(**ask(server))
    litellm.completion(**ask(server))
    assert cache.stats().calls == 2
    assert cache.health().ok
    assert asyncio.run(installed.cache.test_connection())["status"] == "success"
    assert asyncio.run(installed.ping()) is True


# ------------------------------------------------------------------------------ usage


@settings(max_examples=50, deadline=None)
@given(
    prompt=st.integers(0, 10**6),
    cached=st.integers(0, 10**6),
    completion=st.integers(0, 10**6),
)
def test_usage_is_read_as_openai_counts_it(prompt: int, cached: int, completion: int) -> None:
    cached = min(cached, prompt)
    usage = usage_of(
        {
            "model": "gpt-4o",
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "prompt_tokens_details": {"cached_tokens": cached},
            },
        },
        "openai",
    )
    assert usage is not None
    assert (usage.model, usage.provider) == ("gpt-4o", "openai")
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (
        prompt,
        cached,
        completion,
    )


def test_usage_of_what_is_not_a_response() -> None:
    assert usage_of("text", None) is None
    assert usage_of({"model": "m"}, None) is None
    assert usage_of({"model": "m", "usage": {"total_tokens": 3}}, None) is None
    embedding = usage_of({"embedding": [0.1], "model": "e", "prompt_tokens": 4}, "openai")
    assert embedding is not None and embedding.input_tokens == 4


# ------------------------------------------------------------------------------ guarantees


def test_workspaces_on_one_redis_do_not_see_each_others_entries(
    server: FakeOpenAIServer,
) -> None:
    with RedisServer() as redis_server:
        tiers = [redis_server.patient_url]  # no memory tier: every read goes to the shared Redis
        with (
            llmcache.Cache(workspace="team", secret=SECRET, tiers=tiers) as one,
            llmcache.Cache(workspace="team", secret=SECRET + "-other", tiers=tiers) as other,
        ):
            litellm.cache = llmcache_litellm.cache(one)
            try:
                litellm.completion(**ask(server))
                litellm.completion(**ask(server))
                assert server.requests == 1
                litellm.cache = llmcache_litellm.cache(other)
                litellm.completion(**ask(server))
                assert server.requests == 2  # the same LiteLLM key, another secret: a miss
                with redis_server.client() as raw:
                    keys = raw.keys("*")
                assert not any(b"Why cache" in raw_key for raw_key in keys)
                with redis_server.client() as raw:
                    values = [raw.get(k) for k in keys if raw.type(k) == b"string"]
                assert values and not any(b"Why cache" in (v or b"") for v in values)
            finally:
                litellm.disable_cache()


def test_redis_killed_the_call_still_returns_the_paid_result(server: FakeOpenAIServer) -> None:
    redis_server = RedisServer().start()
    try:
        url = f"{redis_server.url}?timeout=0.05"
        with llmcache.Cache(workspace="failopen", secret=SECRET, tiers=[url]) as cache:
            litellm.cache = llmcache_litellm.cache(cache)
            try:
                litellm.completion(**ask(server, "before"))
                redis_server.kill()
                paid = litellm.completion(**ask(server, "during"))
                assert server.requests == 2
                assert paid.choices[0].message.content
                again = litellm.completion(**ask(server, "during"))
                assert again.choices[0].message.content  # a miss again, never an error
                assert server.requests == 3

                async def paid_async() -> Any:
                    return await litellm.acompletion(**ask(server, "async, during"))

                assert asyncio.run(paid_async()).choices[0].message.content
                assert server.requests == 4
                (tier,) = cache.health().tiers
                assert tier.last_error and not cache.health().ok
            finally:
                litellm.disable_cache()
    finally:
        redis_server.close()


def test_identical_concurrent_calls_are_not_single_flight_through_basecache(
    installed: litellm.Cache, server: FakeOpenAIServer
) -> None:
    """LiteLLM reads, calls and writes with no "call ended without a result" signal to a
    backend (see the README's LiteLLM section): a claim taken on a miss could leak. What
    holds: every concurrent caller gets its answer, and a call after the first write is a
    hit."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: litellm.completion(**ask(server, "burst")), range(4)))
    contents = {r.choices[0].message.content for r in results}
    assert len(contents) == 1
    made = server.requests
    litellm.completion(**ask(server, "burst"))
    assert server.requests == made


# ------------------------------------------------------------------------------ backend


def test_backend_maintenance(cache: llmcache.Cache) -> None:
    backend = LLMCacheBackend(cache, namespace="ops")
    value = {"timestamp": 1.0, "response": {"model": "m"}}
    backend.set_cache("a" * 64, value)
    backend.set_cache("ns:" + "b" * 64, value, ttl=5)
    assert backend.batch_get_cache(["a" * 64, "ns:" + "b" * 64, "c" * 64]) == [value, value, None]
    backend.delete_cache("a" * 64)
    assert backend.get_cache("a" * 64) is None
    backend.flush_cache()
    assert backend.get_cache("ns:" + "b" * 64) is None

    async def run() -> list[Any]:
        await backend.async_set_cache_pipeline([("d" * 64, value), ("e" * 64, "text")])
        await backend.batch_cache_write("f" * 64, {"timestamp": 2.0, "response": "not json"})
        found = await backend.async_batch_get_cache(["d" * 64, "e" * 64, "f" * 64])
        await backend.async_delete_cache("d" * 64)
        await backend.disconnect()
        return [*found, await backend.async_get_cache("d" * 64)]

    assert asyncio.run(run()) == [
        value,
        "text",
        {"timestamp": 2.0, "response": "not json"},
        None,
    ]
    assert "LLMCacheBackend" in repr(backend)


def test_what_cannot_be_stored_is_a_miss_and_counted(cache: llmcache.Cache) -> None:
    backend = LLMCacheBackend(cache)
    backend.set_cache("a" * 64, {"timestamp": 1.0, "response": {1, 2}})  # a set: not JSON
    assert backend.get_cache("a" * 64) is None
    assert cache.stats().unstorable == 1


@pytest.mark.parametrize("ttl", [float("nan"), float("inf"), "soon", True])
def test_a_ttl_that_is_not_seconds_stores_with_the_default(
    installed: litellm.Cache, server: FakeOpenAIServer, ttl: Any
) -> None:
    litellm.completion(**ask(server), cache={"ttl": ttl})
    litellm.completion(**ask(server))
    assert server.requests == 1


def test_a_ttl_at_or_below_zero_expires_at_once_as_in_litellm(
    installed: litellm.Cache, server: FakeOpenAIServer
) -> None:
    litellm.completion(**ask(server), cache={"ttl": -5})
    litellm.completion(**ask(server))
    assert server.requests == 2


async def test_an_async_ttl_at_or_below_zero_is_not_stored(
    installed: litellm.Cache, server: FakeOpenAIServer
) -> None:
    await litellm.acompletion(**ask(server, "async zero"), cache={"ttl": 0})
    await litellm.acompletion(**ask(server, "async zero"))
    assert server.requests == 2


def test_a_backend_type_given_to_cache_is_a_one_line_error(cache: llmcache.Cache) -> None:
    with pytest.raises(TypeError, match="drop type="):
        llmcache_litellm.cache(cache, type="redis")


# ------------------------------------------------------------------------------ properties

TEXT = st.text(st.characters(blacklist_categories=("Cs",)))  # UTF-8 text (no lone surrogate)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(response=st.dictionaries(TEXT, JSON_VALUES, max_size=5), stamp=st.floats(0, 2e9))
def test_what_litellm_stores_comes_back_as_litellm_reads_it(
    response: dict[str, Any], stamp: float
) -> None:
    with llmcache.Cache(workspace="prop", tiers=["memory"]) as cache:
        backend = LLMCacheBackend(cache)
        # A completion: the response as JSON text; an embedding input: a dict.
        backend.set_cache("a" * 64, {"timestamp": stamp, "response": json.dumps(response)})
        backend.set_cache("b" * 64, {"timestamp": stamp, "response": response})
        for key in ("a" * 64, "b" * 64):
            first = backend.get_cache(key)
            assert first == {"timestamp": stamp, "response": response}
            first["response"]["mutated"] = True  # a caller's change never reaches the entry
            assert backend.get_cache(key) == {"timestamp": stamp, "response": response}


def test_response_text_that_is_not_utf8_json_is_kept_as_litellm_gave_it(
    cache: llmcache.Cache,
) -> None:
    made = llmcache_litellm.cache(cache)
    text = json.dumps({"content": "\ud800 alone"})  # a lone surrogate, escaped: not UTF-8
    made.cache.set_cache("a" * 64, {"timestamp": 1.0, "response": text})
    found = made.cache.get_cache("a" * 64)
    assert found == {"timestamp": 1.0, "response": text}
    assert made.get_cache_logic(found, None) == json.loads(text)  # what LiteLLM reads


@settings(max_examples=40, deadline=None)
@given(keys=st.lists(st.text(min_size=1), min_size=2, max_size=6, unique=True))
def test_two_litellm_keys_never_share_an_entry(keys: list[str]) -> None:
    with llmcache.Cache(workspace="prop", tiers=["memory"]) as cache:
        backend = LLMCacheBackend(cache)
        for index, key in enumerate(keys):
            backend.set_cache(key, {"timestamp": 1.0, "response": {"n": index}})
        for index, key in enumerate(keys):
            assert backend.get_cache(key) == {"timestamp": 1.0, "response": {"n": index}}


# ------------------------------------------------------------------------------ sharing


def test_another_process_cache_on_the_same_folder_hits(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    """LiteLLM's in-memory cache dies with the process; ours is read from the disk tier."""
    tiers = ["memory", f"disk://{tmp_path}/shared"]
    try:
        with llmcache.Cache(workspace="team", tiers=tiers) as first:
            litellm.cache = llmcache_litellm.cache(first)
            litellm.completion(**ask(server))
        with llmcache.Cache(workspace="team", tiers=tiers) as restarted:
            litellm.cache = llmcache_litellm.cache(restarted)
            again = litellm.completion(**ask(server))
            assert server.requests == 1
            assert again._hidden_params["cache_hit"] is True
            info = llmcache.last_info()
            assert info is not None and info.tier is not None and info.tier.startswith("disk")
    finally:
        litellm.disable_cache()


def test_litellm_options_pass_through(cache: llmcache.Cache, server: FakeOpenAIServer) -> None:
    litellm.cache = llmcache_litellm.cache(cache, mode="default_off")
    try:
        litellm.completion(**ask(server))
        litellm.completion(**ask(server))
        assert server.requests == 2  # opt-in only
        litellm.completion(**ask(server), cache={"use-cache": True})
        litellm.completion(**ask(server), cache={"use-cache": True})
        assert server.requests == 3
    finally:
        litellm.disable_cache()


def test_a_disabled_cache_makes_every_call(server: FakeOpenAIServer) -> None:
    with llmcache.Cache(workspace="off", tiers=["memory"], enabled=False) as cache:
        litellm.cache = llmcache_litellm.cache(cache)
        try:
            litellm.completion(**ask(server))
            litellm.completion(**ask(server))
            assert server.requests == 2
        finally:
            litellm.disable_cache()


def test_what_is_keyed_is_litellms_key(installed: litellm.Cache, server: FakeOpenAIServer) -> None:
    litellm.completion(**ask(server), timeout=30, metadata={"run": 1})
    litellm.completion(**ask(server, api_key="other"), timeout=10, metadata={"run": 2})
    assert server.requests == 1  # transport and metadata: not keyed, as in LiteLLM
    litellm.completion(**ask(server), user="someone")
    assert server.requests == 2


def test_a_stream_left_half_way_is_not_stored(
    installed: litellm.Cache, server: FakeOpenAIServer, cache: llmcache.Cache
) -> None:
    stream = litellm.completion(**ask(server, "half a stream"), stream=True)
    for index, _chunk in enumerate(stream):
        if index == 1:
            break
    full = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in litellm.completion(**ask(server, "half a stream"), stream=True)
    )
    assert server.requests == 2 and full
    wait_until(lambda: cache.stats().tiers[0].writes >= 1, "the complete stream's entry")
    assert cache.stats().tiers[0].writes == 1  # only the stream that completed


def test_key_tokens_are_kept_per_key_bounded_and_never_outlive_a_flush(
    cache: llmcache.Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmcache_litellm import _backend

    monkeypatch.setattr(_backend, "_MAX_TOKENS", 3)
    backend = LLMCacheBackend(cache)
    value = {"timestamp": 1.0, "response": {"model": "m"}}
    backend.set_cache("a" * 64, value)
    for key in ("a", "b", "c", "d"):
        assert backend.get_cache(key * 64) == (value if key == "a" else None)
    assert list(backend._tokens) == ["b" * 64, "c" * 64, "d" * 64]  # the oldest went first
    assert backend.get_cache("ns:" + "e" * 64) is None
    assert "ns:" + "e" * 64 not in backend._tokens  # another namespace's key: keyed in full
    backend.set_cache("d" * 64, value)
    assert backend.get_cache("d" * 64) == value  # through its kept token
    assert asyncio.run(backend.async_get_cache("d" * 64)) == value
    backend.flush_cache()
    assert backend.get_cache("d" * 64) is None  # the token is stale: keyed anew, a miss
    assert asyncio.run(backend.async_get_cache("d" * 64)) is None


def test_a_read_finds_its_call_only_inside_litellm() -> None:
    from llmcache_litellm._backend import call_of_read

    assert call_of_read() is None  # not inside litellm.Cache.get_cache

    def nested(depth: int) -> Any:
        return call_of_read() if depth == 0 else nested(depth - 1)

    assert nested(20) is None  # looked for a few frames up only


def test_a_sync_miss_finds_its_calls_arguments_on_the_stack(cache: llmcache.Cache) -> None:
    from llmcache_litellm._backend import call_of_read

    seen: list[Any] = []

    class Recording(LLMCacheBackend):
        def get_cache(self, key: str, **kwargs: Any) -> Any:
            seen.append(call_of_read())
            return super().get_cache(key, **kwargs)

    front = litellm.Cache(_backend=Recording(cache))
    messages = [{"role": "user", "content": "hi"}]
    ask = {"model": "gpt-4o-mini", "messages": messages, "litellm_call_id": "call-1"}
    assert front.get_cache(**ask) is None
    assert seen and seen[0]["litellm_call_id"] == "call-1" and seen[0]["messages"] == messages


def test_a_hit_is_a_fresh_copy_of_an_entry_parsed_once_and_templates_are_bounded(
    cache: llmcache.Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmcache_litellm import _templates

    monkeypatch.setattr(_templates, "MAX_TEMPLATES", 2)
    monkeypatch.setattr(_templates, "MAX_TEMPLATE_BYTES", 16 * 100)
    backend = LLMCacheBackend(cache)
    value = {"timestamp": 1.0, "response": {"choices": [{"message": {"content": "hi"}}]}}
    backend.set_cache("a" * 64, value)
    first = backend.get_cache("a" * 64)
    assert first == value and len(backend.templates.by_entry) == 1
    first["response"]["choices"][0]["message"]["content"] = "changed by the caller"
    first["response"]["choices"].append("more")
    second = backend.get_cache("a" * 64)  # from the template: the caller's changes are not in it
    assert second == value and second is not first
    assert second["response"]["choices"] is not first["response"]["choices"]
    for key in ("b", "c"):
        backend.set_cache(key * 64, {"timestamp": 2.0, "response": {"n": key}})
        assert backend.get_cache(key * 64) == {"timestamp": 2.0, "response": {"n": key}}
    assert len(backend.templates.by_entry) == 2  # the oldest went first
    large = {"timestamp": 3.0, "response": {"text": "x" * 200}}  # over 1/16 of the bytes
    backend.set_cache("d" * 64, large)
    assert backend.get_cache("d" * 64) == large == backend.get_cache("d" * 64)
    assert all(b"x" * 200 not in entry for entry in backend.templates.by_entry)
    assert backend.templates.first_parse(b"not json") is None
    assert asyncio.run(backend.async_get_cache("a" * 64)) == value


def test_an_entry_nested_deeper_than_a_copy_goes_is_parsed_on_every_hit(
    cache: llmcache.Cache,
) -> None:
    backend = LLMCacheBackend(cache)
    deep: Any = "leaf"
    for _ in range(80):  # deeper than fresh_copy copies: no template, never an error
        deep = [deep]
    nested = {"timestamp": 4.0, "response": {"tool_args": deep}}
    backend.set_cache("e" * 64, nested)
    shallow = {"timestamp": 4.0, "response": {"tool_args": ["leaf"]}}
    backend.set_cache("f" * 64, shallow)
    assert backend.get_cache("e" * 64) == nested == backend.get_cache("e" * 64)
    assert backend.get_cache("f" * 64) == shallow
    assert [b"tool_args" in entry for entry in backend.templates.by_entry] == [True]
    assert all(b"leaf" in e and e.count(b"[") < 10 for e in backend.templates.by_entry)


def test_tokens_and_templates_hold_under_threads(
    cache: llmcache.Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from llmcache_litellm import _backend, _templates

    monkeypatch.setattr(_backend, "_MAX_TOKENS", 8)
    monkeypatch.setattr(_templates, "MAX_TEMPLATES", 8)
    backend = LLMCacheBackend(cache)
    for n in range(40):
        backend.set_cache(f"{n:064x}", {"timestamp": 1.0, "response": {"n": n}})
    errors: list[BaseException] = []

    def read(offset: int) -> None:
        try:
            for i in range(1500):
                n = (i * 7 + offset) % 60  # 40 stored, 20 never stored
                expected = {"timestamp": 1.0, "response": {"n": n}} if n < 40 else None
                assert backend.get_cache(f"{n:064x}") == expected
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=read, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(backend._tokens) <= 8 and len(backend.templates.by_entry) <= 8
