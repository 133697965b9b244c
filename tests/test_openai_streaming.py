"""Streams through the OpenAI adapter: recorded on a miss, replayed on a hit, never half-stored."""

from __future__ import annotations

import gc
from typing import Any

import openai
import pytest
from llmcache_openai import (
    AsyncReplayStream,
    CachedAsyncStream,
    CachedStream,
    ReplayStream,
)
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseCompletedEvent

import llmcache
from llmcache.testing import FakeOpenAIServer
from tests.openai_data import MESSAGES, MODEL, WEATHER_TOOL

pytest_plugins = ["tests.openai_fixtures"]  # server, cache, client, aclient, raw_client


def _stream(client: Any, **extra: Any) -> Any:
    return client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **extra)


def _text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _dumps(chunks: list[Any]) -> list[Any]:
    return [c.model_dump(mode="json") for c in chunks]


def test_a_stream_is_recorded_then_replayed(client: Any, server: FakeOpenAIServer) -> None:
    live = _stream(client)
    assert isinstance(live, CachedStream)
    first = list(live)
    assert server.requests == 1
    replay = _stream(client)
    assert isinstance(replay, ReplayStream) and replay.response is None
    second = list(replay)
    assert server.requests == 1
    assert all(type(c) is ChatCompletionChunk for c in second)
    assert _dumps(second) == _dumps(first)
    assert _text(second) and _text(second) == _text(first)


def test_chunks_reach_the_caller_as_they_arrive(cache: llmcache.Cache) -> None:
    with FakeOpenAIServer(latency_per_token=0.05) as slow:
        client = cache.wrap(openai.OpenAI(base_url=slow.base_url, api_key="t", max_retries=0))
        import time

        started = time.perf_counter()
        stream = _stream(client)
        next(stream)
        first_chunk = time.perf_counter() - started
        rest = list(stream)
        total = time.perf_counter() - started
        assert rest and first_chunk < total / 3


def test_the_usage_chunk_is_hidden_unless_asked_for(client: Any, server: FakeOpenAIServer) -> None:
    plain = list(_stream(client))
    assert server.last_request_body["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in plain) and all(c.usage is None for c in plain)
    replayed = list(_stream(client))
    assert all(c.choices for c in replayed)

    asked = list(_stream(client, stream_options={"include_usage": True}))
    assert server.requests == 1  # the same entry serves both
    assert asked[-1].choices == [] and asked[-1].usage is not None
    assert asked[-1].usage.completion_tokens > 0


def test_asking_for_usage_on_a_miss_passes_it_through(
    client: Any, server: FakeOpenAIServer
) -> None:
    chunks = list(_stream(client, stream_options={"include_usage": True}))
    assert server.last_request_body["stream_options"] == {"include_usage": True}
    assert chunks[-1].usage is not None
    assert all(c.choices for c in list(_stream(client)))


def test_a_streamed_miss_is_priced_and_a_replay_saves_it(
    cache: llmcache.Cache, client: Any
) -> None:
    list(_stream(client))
    list(_stream(client))
    report = cache.report()
    assert report.totals.misses == 1 and report.totals.hits == 1
    assert report.totals.spent_usd > 0
    assert report.totals.saved_usd == pytest.approx(report.totals.spent_usd)
    assert report.totals.saved_input_tokens > 0


def test_tool_call_streams_replay(client: Any, server: FakeOpenAIServer) -> None:
    first = list(_stream(client, tools=[WEATHER_TOOL]))
    second = list(_stream(client, tools=[WEATHER_TOOL]))
    assert server.requests == 1
    assert _dumps(first) == _dumps(second)
    assert any(c.choices and c.choices[0].delta.tool_calls for c in second)


def test_an_aborted_stream_is_not_stored(client: Any, server: FakeOpenAIServer) -> None:
    server.abort_stream_after(3)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in _stream(client):
            received.append(chunk)
    assert 0 < len(received) <= 3
    complete = list(_stream(client))
    assert server.requests == 2  # the aborted one left nothing behind
    assert len(complete) > len(received)
    list(_stream(client))
    assert server.requests == 2


def test_a_stream_closed_early_is_not_stored(client: Any, server: FakeOpenAIServer) -> None:
    with _stream(client) as stream:
        next(stream)
    for _ in _stream(client):
        break  # abandoned without close: never completes, never stored
    assert server.requests == 2
    list(_stream(client))
    list(_stream(client))
    assert server.requests == 3


def test_a_stream_that_errors_upfront_is_raised(client: Any, server: FakeOpenAIServer) -> None:
    server.fail_next(1, status=500)
    with pytest.raises(openai.InternalServerError):
        _stream(client)
    list(_stream(client))
    list(_stream(client))
    assert server.requests == 2


def test_options_apply_where_the_stream_was_made(client: Any, server: FakeOpenAIServer) -> None:
    with llmcache.options(sample=1):
        stream = _stream(client)
    list(stream)  # consumed outside the block: still stored under sample=1
    list(_stream(client))
    assert server.requests == 2
    with llmcache.options(sample=1):
        list(_stream(client))
    assert server.requests == 2


def test_bypass_and_no_store(client: Any, server: FakeOpenAIServer) -> None:
    with llmcache.options(bypass=True):
        raw = _stream(client)
        assert isinstance(raw, openai.Stream)
        list(raw)
    with llmcache.options(no_store=True):
        list(_stream(client))
    list(_stream(client))
    list(_stream(client))
    assert server.requests == 3


def test_streamed_and_plain_calls_are_stored_apart(client: Any, server: FakeOpenAIServer) -> None:
    list(_stream(client))
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert server.requests == 2


def test_responses_streams_are_recorded_and_replayed(client: Any, server: FakeOpenAIServer) -> None:
    first = list(client.responses.create(model=MODEL, input="hello", stream=True))
    second = list(client.responses.create(model=MODEL, input="hello", stream=True))
    assert server.requests == 1
    assert [type(e) for e in second] == [type(e) for e in first]
    assert isinstance(second[-1], ResponseCompletedEvent)
    assert second[-1].response.output_text == first[-1].response.output_text
    assert [e.model_dump(mode="json") for e in second] == [e.model_dump(mode="json") for e in first]


def test_an_aborted_responses_stream_is_not_stored(client: Any, server: FakeOpenAIServer) -> None:
    server.abort_stream_after(4)
    with pytest.raises(openai.APIError):
        list(client.responses.create(model=MODEL, input="hello", stream=True))
    list(client.responses.create(model=MODEL, input="hello", stream=True))
    assert server.requests == 2


async def test_async_streams(aclient: Any, server: FakeOpenAIServer) -> None:
    live = await aclient.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert isinstance(live, CachedAsyncStream)
    first = [c async for c in live]
    replay = await aclient.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert isinstance(replay, AsyncReplayStream)
    async with replay as stream:
        second = [c async for c in stream]
    assert server.requests == 1
    assert _dumps(first) == _dumps(second)
    assert all(c.choices for c in second)


async def test_async_aborted_stream_is_not_stored(aclient: Any, server: FakeOpenAIServer) -> None:
    server.abort_stream_after(2)
    with pytest.raises(openai.APIError):
        async for _ in await aclient.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True
        ):
            pass
    stream = await aclient.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    async with stream:
        assert [c async for c in stream]
    assert server.requests == 2
    again = await aclient.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert isinstance(again, AsyncReplayStream)


async def test_async_responses_streams(aclient: Any, server: FakeOpenAIServer) -> None:
    for _ in range(2):
        events = [
            e async for e in await aclient.responses.create(model=MODEL, input="hi", stream=True)
        ]
        assert events[-1].type == "response.completed"
    assert server.requests == 1


def test_concurrent_streams_of_one_request_both_complete(
    client: Any, server: FakeOpenAIServer
) -> None:
    one, two = _stream(client), _stream(client)  # streams have no single-flight
    assert _text(list(one)) == _text(list(two))
    assert server.requests == 2
    list(_stream(client))
    assert server.requests == 2


def test_changing_the_messages_while_streaming_does_not_move_the_entry(
    client: Any, server: FakeOpenAIServer
) -> None:
    messages = [dict(m) for m in MESSAGES]
    stream = client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    text = ""
    for chunk in stream:
        text += chunk.choices[0].delta.content or ""
        if len(messages) == len(MESSAGES):
            messages.append({"role": "assistant", "content": "partial"})
    list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert server.requests == 1


def test_info_reports_streams_on_miss_and_hit() -> None:
    with FakeOpenAIServer() as server:
        cache = llmcache.Cache(workspace="streams", tiers=["memory"])
        raw = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        client = cache.wrap(raw, provider="openai")  # the fake server imitates OpenAI
        request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        live = client.chat.completions.create(stream=True, **request)
        during = llmcache.info(live)
        assert during is not None and not during.hit and during.key is None
        chunks = list(live)
        after = llmcache.info(live)
        assert after is not None and not after.hit and after.key is not None
        replay = client.chat.completions.create(stream=True, **request)
        replayed = llmcache.info(replay)
        assert replayed is not None and replayed.hit and replayed.key == after.key
        assert replayed.saved_cost_usd is not None and replayed.saved_cost_usd > 0
        assert [c.model_dump() for c in replay] == [c.model_dump() for c in chunks]


def test_identical_concurrent_streams_make_one_call() -> None:
    import threading

    with FakeOpenAIServer(latency_per_token=0.01) as server:
        cache = llmcache.Cache(workspace="stream-flight", tiers=["memory"])
        client = cache.wrap(openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0))
        request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "together"}]}
        texts: list[str] = []
        barrier = threading.Barrier(5)

        def consume() -> None:
            barrier.wait()
            stream = client.chat.completions.create(stream=True, **request)
            texts.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))

        threads = [threading.Thread(target=consume) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert server.requests == 1
        assert len(texts) == 5 and len(set(texts)) == 1 and texts[0]


async def test_identical_concurrent_async_streams_make_one_call() -> None:
    import asyncio

    with FakeOpenAIServer(latency_per_token=0.01) as server:
        cache = llmcache.Cache(workspace="stream-flight-async", tiers=["memory"])
        client = cache.wrap(
            openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        )
        request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "as one"}]}

        async def consume() -> str:
            stream = await client.chat.completions.create(stream=True, **request)
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        texts = await asyncio.gather(*(consume() for _ in range(5)))
        assert server.requests == 1
        assert len(set(texts)) == 1 and texts[0]


def test_an_aborted_leader_lets_the_waiter_call_itself() -> None:
    with FakeOpenAIServer() as server:
        cache = llmcache.Cache(workspace="stream-abort", tiers=["memory"])
        client = cache.wrap(openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0))
        request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "abort"}]}
        first = client.chat.completions.create(stream=True, **request)
        next(iter(first))
        first.close()  # closed early: nothing stored, and nobody is left waiting
        second = client.chat.completions.create(stream=True, **request)
        assert list(second) and server.requests == 2


def test_a_dropped_stream_lets_waiters_go_at_once(client: Any) -> None:
    """The recorder holds the stream weakly: dropping an unfinished stream frees it at once
    (its `__del__` lets identical waiting calls go), not at the next garbage collection."""
    stream = _stream(client)
    next(stream)
    recorder = stream._recorder
    assert recorder is not None and recorder.on_end is not None  # it leads its request
    gc.disable()
    try:
        del stream
        # llmcache.last_info() holds the last call's result until the next call; after that,
        # no cycle keeps the stream: it goes now.
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert recorder.on_end is None
    finally:
        gc.enable()
