"""llmcache as LangChain's LLM cache (issue 12): LangChain's own standard suites, then what they
do not check, against real chat models (`ChatOpenAI`, `ChatAnthropic`) talking to our loopback
servers, a real redis-server and real SQLite files.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_anthropic import ChatAnthropic
from langchain_core.caches import BaseCache
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.load import dumps, loads
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolCall
from langchain_core.outputs import ChatGeneration, Generation
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import AsyncCacheTestSuite, SyncCacheTestSuite
from llmcache_langchain import LangChainCache

import llmcache
from llmcache.testing import FakeAnthropicServer, FakeOpenAIServer
from tests.clocks import FakeClock
from tests.servers.redis_server import RedisServer

warnings.filterwarnings("ignore", module="langchain_core")


def memory_cache(workspace: str = "langchain") -> llmcache.Cache:
    return llmcache.Cache(workspace=workspace, tiers=["memory"])


# -- LangChain's own standard suites, unmodified ------------------------------------------------
class TestLangChainStandardSync(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self) -> BaseCache:
        return LangChainCache(memory_cache(), namespace="standard")


class TestLangChainStandardAsync(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self) -> BaseCache:
        return LangChainCache(memory_cache(), namespace="standard")


class TestLangChainStandardSyncOnDisk(SyncCacheTestSuite):
    """The same suite with entries read back from the encrypted disk tier (no memory tier)."""

    @pytest.fixture
    def cache(self, tmp_path: Path) -> BaseCache:
        return LangChainCache(llmcache.Cache(workspace="disk", tiers=[f"disk://{tmp_path}"]))


class TestLangChainStandardAsyncOnDisk(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self, tmp_path: Path) -> BaseCache:
        return LangChainCache(llmcache.Cache(workspace="disk", tiers=[f"disk://{tmp_path}"]))


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def anthropic_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as server:
        yield server


@pytest.fixture
def global_cache() -> Iterator[None]:
    """`set_llm_cache` is process-wide: put back what was there."""
    before = get_llm_cache()
    yield
    set_llm_cache(before)


def chat_openai(server: FakeOpenAIServer, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-4o-mini", base_url=server.base_url, api_key="test", max_retries=0, **options
    )


def chat_anthropic(server: FakeAnthropicServer, **options: Any) -> ChatAnthropic:
    return ChatAnthropic(  # type: ignore[call-arg]
        model="claude-sonnet-4-6",
        base_url=server.base_url,
        api_key="test",
        max_retries=0,
        max_tokens=256,
        **options,
    )


def generation(text: str, **info: Any) -> ChatGeneration:
    return ChatGeneration(message=AIMessage(content=text), generation_info=info or None)


# -- keys -----------------------------------------------------------------------------------------
texts = st.text(max_size=12)


@settings(max_examples=60, deadline=None)
@given(first=st.tuples(texts, texts), second=st.tuples(texts, texts))
def test_two_prompt_and_llm_string_pairs_never_share_an_entry(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    """Keyed by both strings exactly, not by a joined string: ("a---b", "c") and ("a", "---bc")
    are two entries, as are two llm_strings of one prompt."""
    ours = LangChainCache(memory_cache())
    ours.update(*first, [generation("first")])
    found = ours.lookup(*second)
    if first == second:
        assert found == [generation("first")]
    else:
        assert found is None


def test_two_llm_strings_of_one_prompt_keep_their_own_answers() -> None:
    ours = LangChainCache(memory_cache())
    ours.update("same prompt", "model=a", [generation("from a")])
    ours.update("same prompt", "model=b", [generation("from b")])
    assert ours.lookup("same prompt", "model=a") == [generation("from a")]
    assert ours.lookup("same prompt", "model=b") == [generation("from b")]
    assert ours.lookup("same prompt", "model=c") is None


def test_namespaces_are_apart_and_clear_removes_only_its_own() -> None:
    cache = memory_cache()
    research, support = LangChainCache(cache, namespace="research"), LangChainCache(cache)
    research.update("p", "m", [generation("research")])
    support.update("p", "m", [generation("support")])
    assert research.lookup("p", "m") == [generation("research")]
    research.clear()
    assert research.lookup("p", "m") is None
    assert support.lookup("p", "m") == [generation("support")]
    assert "research" in repr(research)
    assert research.site.namespace.name == "research"


def test_llmcache_options_apply_to_langchain_lookups_and_updates(
    openai_server: FakeOpenAIServer,
) -> None:
    model = chat_openai(openai_server, cache=LangChainCache(memory_cache()))
    with llmcache.options(bypass=True):
        model.invoke("q")
        model.invoke("q")
    assert openai_server.requests == 2  # neither looked up nor stored
    model.invoke("q")
    with llmcache.options(refresh=True):
        model.invoke("q")  # a new real call, stored
    assert openai_server.requests == 4
    model.invoke("q")
    assert openai_server.requests == 4


def test_a_cache_that_is_not_an_llmcache_cache_is_a_one_line_error() -> None:
    with pytest.raises(TypeError, match=r"LangChainCache\(llmcache.Cache"):
        LangChainCache(object())  # type: ignore[arg-type]


# -- values ---------------------------------------------------------------------------------------
RICH = [
    ChatGeneration(
        message=AIMessage(
            content=[{"type": "text", "text": "Calling a tool"}],
            tool_calls=[ToolCall(name="weather", args={"city": "Oslo", "days": 2}, id="call_1")],
            response_metadata={"model_name": "gpt-4o-mini", "finish_reason": "tool_calls"},
            usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
            id="run-1",
            name="assistant",
        ),
        generation_info={"finish_reason": "tool_calls", "logprobs": None},
    ),
    Generation(text="plain text", generation_info={"n": 1}),
]


@pytest.mark.parametrize("tiers", [["memory"], ["disk"]])
def test_generations_round_trip_equal_and_each_hit_is_independent(
    tiers: list[str], tmp_path: Path
) -> None:
    urls = [f"disk://{tmp_path}" if tier == "disk" else tier for tier in tiers]
    ours = LangChainCache(llmcache.Cache(workspace="values", tiers=urls))
    ours.update("p", "m", RICH)
    first = ours.lookup("p", "m")
    assert type(first) is list and first == RICH == loads(dumps(RICH))
    assert [type(g) for g in first] == [ChatGeneration, Generation]
    first[0].message.tool_calls[0]["args"]["city"] = "Bergen"  # a caller mutating its hit
    first[0].message.response_metadata["mutated"] = True
    first.append(Generation(text="extra"))
    second = ours.lookup("p", "m")
    assert second == RICH and second is not first
    assert second[0].message is not first[0].message


def test_generations_json_cannot_carry_exactly_still_round_trip_through_langchain_load() -> None:
    """A value orjson cannot carry (an int above 64 bits) is decoded by langchain_core.load on
    every hit: slower, and still equal."""
    big = [Generation(text="big", generation_info={"count": 2**70})]
    ours = LangChainCache(memory_cache())
    ours.update("p", "m", big)
    assert ours.lookup("p", "m") == big
    assert ours.lookup("p", "m") == big


def test_generations_that_do_not_round_trip_are_not_stored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    odd = [Generation(text="odd", generation_info={"when": object()})]
    ours = LangChainCache(memory_cache())
    with caplog.at_level(logging.WARNING, logger="llmcache"):
        ours.update("p", "m", odd)  # never raises: the caller has its result
    assert ours.lookup("p", "m") is None
    assert "not stored" in caplog.text


def test_an_entry_that_cannot_be_decoded_is_a_miss(caplog: pytest.LogCaptureFixture) -> None:
    ours = LangChainCache(memory_cache())
    ours.site.put({"prompt": "p", "llm_string": "m"}, {"not": "a list"}, latency_s=0.0)
    ours.site.put({"prompt": "q", "llm_string": "m"}, '{"lc": 1}', latency_s=0.0)
    with caplog.at_level(logging.WARNING, logger="llmcache"):
        assert ours.lookup("p", "m") is None
        assert ours.lookup("q", "m") is None
    assert "could not be decoded" in caplog.text


# -- expiry, workspaces, failures ---------------------------------------------------------------
def test_an_entry_lives_exactly_its_ttl() -> None:
    clock = FakeClock()
    ours = LangChainCache(
        llmcache.Cache(workspace="ttl", tiers=["memory"], clock=clock), namespace="t", ttl=10
    )
    ours.update("p", "m", [generation("fresh")])
    clock.advance(9.9)
    assert ours.lookup("p", "m") == [generation("fresh")]
    clock.advance(0.2)
    assert ours.lookup("p", "m") is None


def test_workspaces_with_different_secrets_on_one_folder_never_see_each_other(
    tmp_path: Path,
) -> None:
    def on_disk(secret: str) -> LangChainCache:
        cache = llmcache.Cache(workspace="team", secret=secret, tiers=[f"disk://{tmp_path}"])
        return LangChainCache(cache, namespace="shared")

    alpha, beta, alpha_again = on_disk("a" * 32), on_disk("b" * 32), on_disk("a" * 32)
    alpha.update("p", "m", [generation("alpha's")])
    assert beta.lookup("p", "m") is None
    beta.update("p", "m", [generation("beta's")])
    assert alpha_again.lookup("p", "m") == [generation("alpha's")]  # the folder is shared
    assert beta.lookup("p", "m") == [generation("beta's")]
    beta.clear()
    assert alpha_again.lookup("p", "m") == [generation("alpha's")]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def test_redis_down_lookups_miss_updates_do_not_raise_and_the_paid_result_reaches_the_caller(
    redis_server: RedisServer, openai_server: FakeOpenAIServer
) -> None:
    cache = llmcache.Cache(workspace="failopen", secret="s" * 32, tiers=[redis_server.url])
    ours = LangChainCache(cache)
    model = chat_openai(openai_server, cache=ours)
    assert model.invoke("before").content  # stored in Redis
    assert model.invoke("before").content and openai_server.requests == 1
    redis_server.kill()
    try:
        assert ours.lookup("anything", "m") is None
        ours.update("anything", "m", [generation("lost")])  # no exception
        answer = model.invoke("during the outage")
        assert isinstance(answer, AIMessage) and answer.content  # the paid result
        assert openai_server.requests == 2
        assert any(tier.read_state != "closed" or tier.last_error for tier in cache.health().tiers)
    finally:
        redis_server.start()


async def test_redis_down_async_lookups_miss_and_updates_do_not_raise(
    redis_server: RedisServer, openai_server: FakeOpenAIServer
) -> None:
    cache = llmcache.Cache(workspace="failopen-async", secret="s" * 32, tiers=[redis_server.url])
    ours = LangChainCache(cache)
    model = chat_openai(openai_server, cache=ours)
    redis_server.kill()
    try:
        assert await ours.alookup("anything", "m") is None
        await ours.aupdate("anything", "m", [generation("lost")])
        await ours.aclear()
        answer = await model.ainvoke("during the outage")
        assert isinstance(answer, AIMessage) and answer.content
        assert openai_server.requests == 1
    finally:
        redis_server.start()


# -- real chat models -----------------------------------------------------------------------------
def test_chat_openai_invoke_second_call_makes_no_request(
    openai_server: FakeOpenAIServer, global_cache: None
) -> None:
    set_llm_cache(LangChainCache(memory_cache(), namespace="openai", provider="openai"))
    model = chat_openai(openai_server)
    first = model.invoke("What does a cache do?")
    second = model.invoke("What does a cache do?")
    assert openai_server.requests == 1
    assert isinstance(second, AIMessage) and second.content == first.content
    assert second.usage_metadata is not None and second.usage_metadata.get("total_cost") == 0
    chat_openai(openai_server, temperature=0.5).invoke("What does a cache do?")
    assert openai_server.requests == 2  # another llm_string: another entry


async def test_chat_openai_ainvoke_second_call_makes_no_request(
    openai_server: FakeOpenAIServer, global_cache: None
) -> None:
    set_llm_cache(LangChainCache(memory_cache(), namespace="openai"))
    model = chat_openai(openai_server)
    first = await model.ainvoke("What does a cache do?")
    second = await model.ainvoke("What does a cache do?")
    assert openai_server.requests == 1 and second.content == first.content
    assert model.invoke("What does a cache do?").content == first.content  # sync sees it too
    assert openai_server.requests == 1


def test_chat_anthropic_invoke_and_ainvoke_second_call_makes_no_request(
    anthropic_server: FakeAnthropicServer,
) -> None:
    ours = LangChainCache(memory_cache(), namespace="claude")
    model = chat_anthropic(anthropic_server, cache=ours)
    first = model.invoke("What does a cache do?")
    assert model.invoke("What does a cache do?").content == first.content
    assert asyncio.run(model.ainvoke("What does a cache do?")).content == first.content
    assert anthropic_server.requests == 1
    asyncio.run(model.ainvoke("Something else"))
    assert model.invoke("Something else") is not None and anthropic_server.requests == 2


def test_stream_never_consults_the_cache(openai_server: FakeOpenAIServer) -> None:
    """LangChain's `stream()` goes to the model without a lookup or an update (documented)."""
    model = chat_openai(openai_server, cache=LangChainCache(memory_cache()))
    model.invoke("hi")
    assert "".join(str(chunk.content) for chunk in model.stream("hi"))
    assert openai_server.requests == 2


async def test_identical_concurrent_ainvokes_each_get_the_answer_and_later_calls_hit(
    openai_server: FakeOpenAIServer,
) -> None:
    """No single-flight through LangChain's cache (see the README: a failed call never tells the
    cache), so concurrent identical misses each make their call; every caller gets a complete
    answer, one entry is kept, and every later call is a hit."""
    cache = memory_cache()
    model = chat_openai(openai_server, cache=LangChainCache(cache))
    answers = await asyncio.gather(*(model.ainvoke("together") for _ in range(5)))
    assert len({a.content for a in answers}) == 1
    concurrent = openai_server.requests
    assert 1 <= concurrent <= 5
    await asyncio.gather(*(model.ainvoke("together") for _ in range(5)))
    assert openai_server.requests == concurrent
    assert cache.stats().hits >= 5


# -- savings --------------------------------------------------------------------------------------
def test_a_hit_saves_the_hand_computed_price_of_the_original_call(
    openai_server: FakeOpenAIServer,
) -> None:
    cache = memory_cache("savings")
    model = chat_openai(
        openai_server, cache=LangChainCache(cache, namespace="s", provider="openai")
    )
    miss = model.invoke("Price this call, please.")
    model.invoke("Price this call, please.")
    info = llmcache.last_info()  # the hit LangChain's lookup just made, in this thread
    assert info is not None and info.hit and info.namespace == "s"
    usage = miss.usage_metadata
    assert usage is not None and usage["input_tokens"] > 0
    # gpt-4o-mini: $0.15 per million input tokens, $0.60 per million output tokens.
    price = usage["input_tokens"] * 0.15e-6 + usage["output_tokens"] * 0.60e-6
    report = cache.report()
    (row,) = report.rows
    assert row.group == {"namespace": "s", "model": "gpt-4o-mini"}
    assert (row.calls, row.hits, row.misses) == (2, 1, 1)
    assert row.spent_usd == pytest.approx(price) and row.saved_usd == pytest.approx(price)
    assert row.saved_input_tokens == usage["input_tokens"]
    assert row.saved_output_tokens == usage["output_tokens"]
    assert row.saved_s > 0  # the time from the lookup miss to the update
    assert info.saved_cost_usd == pytest.approx(price) and info.saved_time_s == row.saved_s
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (1, 1)
    assert stats.calls == 2 and stats.tiers[0].writes == 1
    assert cache.health().tiers[0].read_state == "closed"


def test_claude_prompt_cache_tokens_are_priced_at_their_own_rates(
    anthropic_server: FakeAnthropicServer,
) -> None:
    """A 5-minute write, a read, a 1-hour write: each hit saves what its call cost."""
    cache = memory_cache("claude-savings")
    model = chat_anthropic(
        anthropic_server, cache=LangChainCache(cache, namespace="c", provider="anthropic")
    )

    def system(text: str, **marker: str) -> SystemMessage:
        block = {
            "type": "text",
            "text": text * 200,
            "cache_control": {"type": "ephemeral", **marker},
        }
        return SystemMessage(content=[block])

    calls = [
        [system("You answer briefly. "), HumanMessage("first")],  # writes the prefix (5 min)
        [system("You answer briefly. "), HumanMessage("second")],  # reads it
        [system("Another long one. ", ttl="1h"), HumanMessage("third")],  # writes for 1 h
    ]
    misses = [model.invoke(messages) for messages in calls]
    hits = [model.invoke(messages) for messages in calls]
    assert anthropic_server.requests == 3
    assert [hit.content for hit in hits] == [miss.content for miss in misses]
    # claude-sonnet-4-6, per million: input $3, 5-minute write $3.75, 1-hour write $6,
    # read $0.30, output $15. LangChain's input_tokens includes the reads and writes.
    expected = 0.0
    parts = {"read": 0, "5m": 0, "1h": 0}
    for miss in misses:
        usage: Any = miss.usage_metadata
        details = usage["input_token_details"]
        read, write_5m = details["cache_read"], details["ephemeral_5m_input_tokens"]
        write_1h = details["ephemeral_1h_input_tokens"]
        plain = usage["input_tokens"] - read - write_5m - write_1h
        expected += plain * 3 + write_5m * 3.75 + write_1h * 6 + read * 0.30
        expected += usage["output_tokens"] * 15
        parts["read"] += read
        parts["5m"] += write_5m
        parts["1h"] += write_1h
    assert all(parts.values())  # each kind of prompt-cache use happened once
    (row,) = cache.report().rows
    assert row.group["model"] == "claude-sonnet-4-6" and row.hits == 3
    assert row.saved_usd == pytest.approx(expected / 1e6)
    assert row.saved_cache_read_tokens == parts["read"]
    assert row.saved_cache_write_tokens == parts["5m"] + parts["1h"]


def test_a_model_behind_an_unknown_base_url_is_counted_unpriced(
    openai_server: FakeOpenAIServer,
) -> None:
    cache = memory_cache("unpriced")
    model = chat_openai(openai_server, cache=LangChainCache(cache))
    model.invoke("hi")
    model.invoke("hi")
    (row,) = cache.report().rows
    assert row.group["model"] == "gpt-4o-mini"
    assert row.unpriced_hits == 1 and row.saved is None
