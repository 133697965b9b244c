"""Replay mode end to end through every door a real call comes in by: wrapped OpenAI and
Anthropic clients (sync, async, streams, which go through `claim` and the gate's `admit`),
LangChain and DSPy (claimed misses), and LiteLLM (which cannot refuse: documented here).
Each records against a loopback server, then replays with the server counting requests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dspy
import litellm
import llmcache_litellm
import pytest
from anthropic import Anthropic, AsyncAnthropic
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_openai import ChatOpenAI
from llmcache_dspy import DSPyCache
from llmcache_langchain import LangChainCache
from openai import AsyncOpenAI, OpenAI

import llmcache
from llmcache import CacheMiss
from llmcache.testing import FakeAnthropicServer, FakeOpenAIServer

pytest_plugins = ["tests.openai_fixtures"]  # server: a FakeOpenAIServer per test

MESSAGES = [{"role": "user", "content": "Why cache?"}]


@pytest.fixture(autouse=True)
def _no_mode_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMCACHE_MODE", raising=False)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[llmcache.Cache]:
    with llmcache.Cache(workspace="replay", tiers=["memory", f"disk://{tmp_path}/d"]) as c:
        yield c


def _chat(client: Any, **changes: Any) -> Any:
    return client.chat.completions.create(
        **{"model": "gpt-4o-mini", "messages": MESSAGES, **changes}
    )


def test_openai_sync_replays_and_refuses_with_the_differing_field(
    cache: llmcache.Cache, server: FakeOpenAIServer
) -> None:
    with OpenAI(base_url=server.base_url, api_key="t", max_retries=0) as raw:
        client = cache.wrap(raw, provider="openai")
        recorded = _chat(client, temperature=0.2)
        assert server.requests == 1
        cache.mode = "replay"
        assert _chat(client, temperature=0.2).model_dump() == recorded.model_dump()
        with pytest.raises(CacheMiss) as caught:
            _chat(client, temperature=0.9)
    assert server.requests == 1
    assert caught.value.differs == ["temperature"]
    assert "openai.chat.completions.create" in str(caught.value)
    assert "Why cache?" not in str(caught.value)


def test_openai_streams_replay_and_a_new_stream_is_refused_before_any_request(
    cache: llmcache.Cache, server: FakeOpenAIServer
) -> None:
    with OpenAI(base_url=server.base_url, api_key="t", max_retries=0) as raw:
        client = cache.wrap(raw, provider="openai")
        first = [c.model_dump() for c in _chat(client, stream=True)]
        cache.mode = "replay"
        assert [c.model_dump() for c in _chat(client, stream=True)] == first
        with pytest.raises(CacheMiss) as caught:
            _chat(client, stream=True, messages=[{"role": "user", "content": "other"}])
        # The refused claim let go of its flight: an identical call is refused again, not
        # left waiting for a stream that never started.
        with pytest.raises(CacheMiss):
            _chat(client, stream=True, messages=[{"role": "user", "content": "other"}])
    assert server.requests == 1
    assert caught.value.differs == ["messages"]


def test_async_openai_calls_and_streams_replay_or_refuse(
    cache: llmcache.Cache, server: FakeOpenAIServer
) -> None:
    async def main() -> None:
        async with AsyncOpenAI(base_url=server.base_url, api_key="t", max_retries=0) as raw:
            client = cache.wrap(raw, provider="openai")
            answer = await _chat(client)
            chunks = [c.model_dump() async for c in await _chat(client, stream=True)]
            cache.mode = "replay"
            assert (await _chat(client)).model_dump() == answer.model_dump()
            again = [c.model_dump() async for c in await _chat(client, stream=True)]
            assert again == chunks
            with pytest.raises(CacheMiss, match=r"differs .* in: seed"):
                await _chat(client, seed=7)
            with pytest.raises(CacheMiss, match="in: seed"):
                await _chat(client, stream=True, seed=7)

    asyncio.run(main())
    assert server.requests == 2


def test_anthropic_sync_async_and_streams(cache: llmcache.Cache) -> None:
    def create(client: Any, **changes: Any) -> Any:
        request = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": MESSAGES}
        return client.messages.create(**{**request, **changes})

    with (
        FakeAnthropicServer() as server,
        Anthropic(base_url=server.base_url, api_key="t", max_retries=0) as raw,
    ):
        client = cache.wrap(raw, provider="anthropic")
        recorded = create(client)
        streamed = [e.model_dump() for e in create(client, stream=True)]
        cache.mode = "replay"
        assert create(client).model_dump() == recorded.model_dump()
        assert [e.model_dump() for e in create(client, stream=True)] == streamed
        with pytest.raises(CacheMiss, match=r"in: call\.max_tokens\."):
            create(client, max_tokens=65)
        with pytest.raises(CacheMiss, match=r"in: call\.max_tokens\."):
            create(client, stream=True, max_tokens=65)

        async def main() -> None:
            async with AsyncAnthropic(base_url=server.base_url, api_key="t") as raw:
                aclient = cache.wrap(raw, provider="anthropic")
                assert (await create(aclient)).model_dump() == recorded.model_dump()
                with pytest.raises(CacheMiss, match=r"messages\.create"):
                    await create(aclient, temperature=0.5)

        asyncio.run(main())
        assert server.requests == 2


def test_langchain_replays_and_refuses(cache: llmcache.Cache, server: FakeOpenAIServer) -> None:
    before = get_llm_cache()
    set_llm_cache(LangChainCache(cache, namespace="lc"))
    try:
        model = ChatOpenAI(
            model="gpt-4o-mini", base_url=server.base_url, api_key="test", max_retries=0
        )
        recorded = model.invoke("Why cache?")
        cache.mode = "replay"
        assert model.invoke("Why cache?").content == recorded.content
        with pytest.raises(CacheMiss, match="'lc'") as caught:
            model.invoke("Why not?")
        assert caught.value.differs == ["prompt"]
        with pytest.raises(CacheMiss):  # the refused claim was let go: refused again
            model.invoke("Why not?")
    finally:
        set_llm_cache(before)
    assert server.requests == 1


def test_dspy_replays_and_refuses(
    cache: llmcache.Cache, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dspy, "cache", DSPyCache(cache), raising=False)
    lm = dspy.LM("openai/gpt-4o-mini", api_base=server.base_url, api_key="x")
    qa = dspy.Predict("question -> answer")
    with dspy.context(lm=lm):
        recorded = qa(question="What does a cache do?")
        paid = server.requests
        cache.mode = "replay"
        assert qa(question="What does a cache do?").answer == recorded.answer
        with pytest.raises(CacheMiss, match="differs"):
            qa(question="What does a cache not do?")
    assert server.requests == paid


def test_litellm_cannot_refuse_so_replay_serves_hits_and_lets_misses_through(
    cache: llmcache.Cache, server: FakeOpenAIServer
) -> None:
    """LiteLLM asks its cache, calls the provider itself on a miss, then stores: a cache has
    no way to stop that call. Replay mode serves recorded calls; a new call is made and
    recorded, as in record mode (the README says so)."""
    litellm.cache = llmcache_litellm.cache(cache)
    try:
        request = {
            "model": "openai/gpt-4o-mini",
            "messages": MESSAGES,
            "api_base": server.base_url,
            "api_key": "t",
        }
        recorded = litellm.completion(**request)
        cache.mode = "replay"
        assert litellm.completion(**request).choices[0].message.content == (
            recorded.choices[0].message.content
        )
        assert server.requests == 1
        litellm.completion(**{**request, "temperature": 0.5})
        assert server.requests == 2
    finally:
        litellm.disable_cache()


def test_llmcache_wrap_wraps_into_the_default_cache(
    cache: llmcache.Cache, server: FakeOpenAIServer
) -> None:
    llmcache.set_default_cache(cache)
    with OpenAI(base_url=server.base_url, api_key="t", max_retries=0) as raw:
        client = llmcache.wrap(raw, provider="openai")
        recorded = _chat(client)
        cache.mode = "replay"
        assert _chat(client).model_dump() == recorded.model_dump()
        with pytest.raises(CacheMiss, match="in: seed"):
            _chat(client, seed=1)
    assert server.requests == 1
    assert cache.stats().hits == 1
