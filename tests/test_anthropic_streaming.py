"""Streams through the Anthropic adapter: ``create(stream=True)`` and the SDK's
``messages.stream(...)`` helper, recorded on a miss, replayed on a hit, never half-stored."""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pydantic
import pytest
from anthropic import Anthropic, AsyncAnthropic
from anthropic.lib.streaming import AsyncMessageStream, BetaMessageStream, MessageStream
from anthropic.types import Message, RawMessageStartEvent, RawMessageStopEvent
from llmcache_anthropic import (
    AsyncReplayStream,
    BetaMessageStreamRecording,
    CachedAsyncStream,
    CachedStream,
    MessageStreamRecording,
    ReplayStream,
)
from llmcache_anthropic._streaming import Recorder

import llmcache
from llmcache.ext import MISS
from llmcache.testing import FakeAnthropicServer

MODEL = "claude-sonnet-4-6"
MESSAGES: list[Any] = [{"role": "user", "content": "What does a cache do?"}]
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}
ORDER = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
]


# -- fixtures (as in tests/test_anthropic_adapter.py) ----------------------------------------------
@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as srv:
        yield srv


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[llmcache.Cache]:
    with llmcache.Cache(workspace="streams", tiers=["memory", f"disk://{tmp_path}/tier"]) as c:
        yield c


@pytest.fixture
def client(cache: llmcache.Cache, server: FakeAnthropicServer) -> Iterator[Any]:
    with Anthropic(base_url=server.base_url, api_key="test", max_retries=0) as raw:
        yield cache.wrap(raw, provider="anthropic")


@pytest.fixture
async def aclient(cache: llmcache.Cache, server: FakeAnthropicServer) -> AsyncIterator[Any]:
    async with AsyncAnthropic(base_url=server.base_url, api_key="test", max_retries=0) as raw:
        yield cache.wrap(raw, provider="anthropic")


def _call(**changes: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 256, "messages": MESSAGES, **changes}


def _stream(client: Any, **changes: Any) -> Any:
    return client.messages.create(**_call(**changes), stream=True)


def _dumps(events: list[Any]) -> list[Any]:
    return [e.model_dump(mode="json") for e in events]


def _kinds(events: list[Any]) -> list[str]:
    """The event types in order, runs of the same type counted once."""
    kinds: list[str] = []
    for event in events:
        if not kinds or kinds[-1] != event.type:
            kinds.append(event.type)
    return kinds


def _text(events: list[Any]) -> str:
    return "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )


def _info(value: Any) -> llmcache.CallInfo:
    described = llmcache.info(value)
    assert described is not None
    return described


# -- create(stream=True) ---------------------------------------------------------------------------
def test_a_stream_is_recorded_then_replayed(client: Any, server: FakeAnthropicServer) -> None:
    live = _stream(client)
    assert isinstance(live, CachedStream) and live.response.status_code == 200
    first = list(live)
    assert server.requests == 1
    replay = _stream(client)
    assert isinstance(replay, ReplayStream) and replay.response is None
    second = list(replay)
    assert server.requests == 1
    assert [type(e) for e in second] == [type(e) for e in first]
    assert _kinds(second) == ORDER
    assert _dumps(second) == _dumps(first)
    assert _text(second) and _text(second) == _text(first)


def test_events_reach_the_caller_before_the_stream_ends(
    client: Any, server: FakeAnthropicServer
) -> None:
    stream = _stream(client)
    first = next(iter(stream))
    assert isinstance(first, RawMessageStartEvent)
    site = client.messages._family.stream
    with llmcache.options(bypass=False):
        assert site.get({"call": {}, "client": {}}) is MISS  # nothing of it stored yet
    assert not _info(stream).hit and _info(stream).key is None
    rest = list(stream)
    assert isinstance(rest[-1], RawMessageStopEvent)
    assert _info(stream).key is not None  # stored at its end


def test_thinking_and_tool_use_streams_replay(client: Any, server: FakeAnthropicServer) -> None:
    call = {"thinking": THINKING, "max_tokens": 2048, "tools": [WEATHER_TOOL]}
    call["tool_choice"] = {"type": "tool", "name": "get_weather"}
    first = list(_stream(client, **call))
    second = list(_stream(client, **call))
    assert server.requests == 1
    assert _dumps(second) == _dumps(first)
    deltas = {e.delta.type for e in second if e.type == "content_block_delta"}
    assert deltas == {"thinking_delta", "signature_delta", "input_json_delta"}


def test_a_streamed_miss_is_priced_and_a_replay_saves_it(
    cache: llmcache.Cache, client: Any
) -> None:
    live = _stream(client)
    events = list(live)
    replay = _stream(client)
    list(replay)
    report = cache.report()
    assert report.totals.misses == 1 and report.totals.hits == 1
    start, delta = events[0], next(e for e in events if e.type == "message_delta")
    usage = start.message.usage
    expected = (usage.input_tokens * 3.00 + delta.usage.output_tokens * 15.00) / 1_000_000
    assert report.totals.spent_usd == pytest.approx(expected, rel=1e-9)
    assert report.totals.saved_usd == pytest.approx(expected, rel=1e-9)
    assert report.totals.saved_output_tokens == delta.usage.output_tokens
    assert _info(replay).saved_cost_usd == pytest.approx(expected, rel=1e-9)


def test_a_recording_carries_the_final_usage(client: Any) -> None:
    events = list(_stream(client, system=[{"type": "text", "text": "x " * 900}]))
    recorder = Recorder(client.messages._family.stream, {}, MessageStreamRecording)
    for event in events:
        recorder.add(event)
    recording = recorder.recording()
    assert recording.model == MODEL
    start = events[0].message.usage
    assert recording.usage is not None and recording.usage.input_tokens == start.input_tokens
    assert recording.usage.output_tokens == events[-2].usage.output_tokens > 1
    assert type(recording.usage) is type(start)


def test_a_cut_stream_is_not_stored(client: Any, server: FakeAnthropicServer) -> None:
    server.abort_stream_after(4)
    received = []
    with pytest.raises(httpx2.RemoteProtocolError):
        for event in _stream(client):
            received.append(event)
    assert 0 < len(received) <= 4
    complete = list(_stream(client))
    assert server.requests == 2  # the cut one left nothing behind
    assert len(complete) > len(received)
    list(_stream(client))
    assert server.requests == 2


def test_an_error_event_mid_stream_is_not_stored(client: Any, server: FakeAnthropicServer) -> None:
    server.abort_stream_after(3, error="overloaded_error")
    with pytest.raises(anthropic.APIStatusError, match="overloaded"):
        list(_stream(client))
    list(_stream(client))
    list(_stream(client))
    assert server.requests == 2


def test_a_stream_closed_early_or_dropped_is_not_stored(
    client: Any, server: FakeAnthropicServer
) -> None:
    with _stream(client) as stream:
        next(stream)
    for _ in _stream(client):
        break  # abandoned without close: never completes, never stored
    gc.collect()
    assert server.requests == 2
    list(_stream(client))
    list(_stream(client))
    assert server.requests == 3


def test_a_stream_that_errors_upfront_is_raised(client: Any, server: FakeAnthropicServer) -> None:
    server.fail_next(1, status=500)
    with pytest.raises(anthropic.InternalServerError):
        _stream(client)
    list(_stream(client))
    list(_stream(client))
    assert server.requests == 2


def test_options_apply_where_the_stream_was_made(client: Any, server: FakeAnthropicServer) -> None:
    with llmcache.options(sample=1):
        stream = _stream(client)
    list(stream)  # consumed outside the block: still stored under sample=1
    list(_stream(client))
    assert server.requests == 2
    with llmcache.options(sample=1):
        list(_stream(client))
    assert server.requests == 2


def test_bypass_and_no_store(client: Any, server: FakeAnthropicServer) -> None:
    with llmcache.options(bypass=True):
        raw = _stream(client)
        assert isinstance(raw, anthropic.Stream)
        list(raw)
    with llmcache.options(no_store=True):
        list(_stream(client))
    list(_stream(client))
    list(_stream(client))
    assert server.requests == 3


def test_streamed_and_plain_calls_are_stored_apart(
    client: Any, server: FakeAnthropicServer
) -> None:
    list(_stream(client))
    client.messages.create(**_call())
    assert server.requests == 2


def test_changing_the_messages_while_streaming_does_not_move_the_entry(
    client: Any, server: FakeAnthropicServer
) -> None:
    messages = [dict(m) for m in MESSAGES]
    for _ in client.messages.create(**_call(messages=messages), stream=True):
        if len(messages) == len(MESSAGES):
            messages.append({"role": "assistant", "content": "partial"})
    list(_stream(client))
    assert server.requests == 1


def test_info_reports_streams_on_miss_and_hit(client: Any) -> None:
    live = _stream(client)
    during = _info(live)
    assert not during.hit and during.key is None
    events = list(live)
    after = _info(live)
    assert not after.hit and after.key is not None
    replay = _stream(client)
    replayed = _info(replay)
    assert replayed.hit and replayed.key == after.key
    assert replayed.saved_cost_usd is not None and replayed.saved_cost_usd > 0
    assert _dumps(list(replay)) == _dumps(events)


def test_a_replay_can_be_closed(client: Any) -> None:
    list(_stream(client))
    with _stream(client) as replay:
        assert isinstance(replay, ReplayStream)
        next(replay)
    assert list(replay) == []


def test_beta_streams_are_recorded_and_replayed(client: Any, server: FakeAnthropicServer) -> None:
    beta = client.beta.messages
    first = list(beta.create(**_call(), stream=True, betas=["b-1"]))
    second = list(beta.create(**_call(), stream=True, betas=["b-1"]))
    assert server.requests == 1
    assert [type(e) for e in second] == [type(e) for e in first]
    assert type(first[0]).__module__.startswith("anthropic.types.beta")
    list(beta.create(**_call(), stream=True, betas=["b-2"]))
    assert server.requests == 2


# -- the messages.stream(...) helper ---------------------------------------------------------------
def test_the_stream_helper_is_cached(client: Any, server: FakeAnthropicServer) -> None:
    with client.messages.stream(**_call()) as live:
        assert isinstance(live, MessageStream)
        live_text = "".join(live.text_stream)
        live_message = live.get_final_message()
        assert live.request_id and not _info(live).hit
    assert _info(live).key is not None
    with client.messages.stream(**_call()) as replay:
        assert isinstance(replay, MessageStream) and replay.request_id is None
        assert replay.workspace_id is None and replay.response.status_code is None
        assert replay.get_final_text() == live_text
        assert replay.get_final_message() == live_message
        assert _info(replay).hit
    assert server.requests == 1
    plain = client.messages.create(**_call())
    assert [b.model_dump() for b in live_message.content] == [b.model_dump() for b in plain.content]
    assert live_message.usage.output_tokens == plain.usage.output_tokens


def test_the_stream_helper_shares_entries_with_create_stream(
    client: Any, server: FakeAnthropicServer
) -> None:
    events = list(_stream(client, thinking=THINKING, max_tokens=2048))
    with client.messages.stream(**_call(thinking=THINKING, max_tokens=2048)) as stream:
        helper_events = list(stream)
        message = stream.get_final_message()
    assert server.requests == 1
    assert {"thinking", "signature", "text"} <= {e.type for e in helper_events}
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[1].text == _text(events)
    with client.messages.stream(**_call(messages=[{"role": "user", "content": "new"}])) as s:
        s.until_done()
    assert list(_stream(client, messages=[{"role": "user", "content": "new"}]))
    assert server.requests == 2


def test_the_stream_helper_with_an_output_format_passes_through(
    client: Any, server: FakeAnthropicServer
) -> None:
    class Answer(pydantic.BaseModel):
        text: str

    for _ in range(2):
        with client.messages.stream(**_call(), output_format=Answer) as stream:
            assert type(stream) is MessageStream  # the SDK's own, untouched
            assert next(iter(stream)).type == "message_start"
    assert server.requests == 2


def test_the_stream_helper_left_early_is_not_stored(
    client: Any, server: FakeAnthropicServer
) -> None:
    with client.messages.stream(**_call()) as stream:
        next(iter(stream))
    with client.messages.stream(**_call()) as stream:
        stream.until_done()
    with client.messages.stream(**_call()) as stream:
        stream.until_done()
    assert server.requests == 2


def test_the_beta_stream_helper(client: Any, server: FakeAnthropicServer) -> None:
    for _ in range(2):
        with client.beta.messages.stream(**_call(), betas=["b-1"]) as stream:
            assert isinstance(stream, BetaMessageStream)
            text = stream.get_final_text()
            assert stream.request_id is None or stream.request_id.startswith("req_")
    assert text and server.requests == 1


def test_the_beta_stream_helper_replays_tool_input_under_its_beta_header(
    client: Any, server: FakeAnthropicServer
) -> None:
    call = _call(tools=[WEATHER_TOOL], tool_choice={"type": "any"})
    betas = ["fine-grained-tool-streaming-2025-05-14"]
    inputs = []
    for _ in range(2):
        with client.beta.messages.stream(**call, betas=betas) as stream:
            inputs.append(stream.get_final_message().content[-1].input)
            headers = stream.response.request.headers
            assert "fine-grained-tool-streaming-2025-05-14" in headers["anthropic-beta"]
    assert server.requests == 1
    assert inputs[0] == inputs[1] and set(inputs[0]) == {"city", "days"}


# -- async -----------------------------------------------------------------------------------------
async def test_async_streams(aclient: Any, server: FakeAnthropicServer) -> None:
    live = await aclient.messages.create(**_call(), stream=True)
    assert isinstance(live, CachedAsyncStream) and live.response.status_code == 200
    first = [e async for e in live]
    replay = await aclient.messages.create(**_call(), stream=True)
    assert isinstance(replay, AsyncReplayStream)
    async with replay as stream:
        second = [e async for e in stream]
    assert server.requests == 1
    assert _dumps(first) == _dumps(second) and _kinds(second) == ORDER
    assert [e async for e in replay] == []


async def test_async_aborted_stream_is_not_stored(
    aclient: Any, server: FakeAnthropicServer
) -> None:
    server.abort_stream_after(2, error="overloaded_error")
    with pytest.raises(anthropic.APIStatusError):
        async for _ in await aclient.messages.create(**_call(), stream=True):
            pass
    stream = await aclient.messages.create(**_call(), stream=True)
    async with stream:
        assert [e async for e in stream]
    assert server.requests == 2
    again = await aclient.messages.create(**_call(), stream=True)
    assert isinstance(again, AsyncReplayStream)


async def test_async_stream_errors_upfront_and_bypass(
    aclient: Any, server: FakeAnthropicServer
) -> None:
    server.fail_next(1, status=500)
    with pytest.raises(anthropic.InternalServerError):
        await aclient.messages.create(**_call(), stream=True)
    with llmcache.options(bypass=True):
        raw = await aclient.messages.create(**_call(), stream=True)
        assert isinstance(raw, anthropic.AsyncStream)
        await raw.close()
    assert server.requests == 2


async def test_async_stream_helper(aclient: Any, server: FakeAnthropicServer) -> None:
    texts = []
    for _ in range(2):
        async with aclient.messages.stream(**_call()) as stream:
            assert isinstance(stream, AsyncMessageStream)
            texts.append(await stream.get_final_text())
            message = await stream.get_final_message()
    assert server.requests == 1
    assert texts[0] == texts[1] and type(message) is not Message  # the SDK's ParsedMessage
    assert stream.request_id is None and _info(stream).hit
    async with aclient.beta.messages.stream(**_call(), betas=["b-1"]) as beta:
        assert await beta.get_final_text() == texts[0]
    assert server.requests == 2


async def test_async_stored_below_memory(tmp_path: Path, server: FakeAnthropicServer) -> None:
    tiers = ["memory", f"disk://{tmp_path}/below"]
    with llmcache.Cache(workspace="below", tiers=tiers) as cache:
        async with AsyncAnthropic(base_url=server.base_url, api_key="t", max_retries=0) as raw:
            client = cache.wrap(raw, provider="anthropic")
            first = [e async for e in await client.messages.create(**_call(), stream=True)]
    with llmcache.Cache(workspace="below", tiers=tiers) as cache:
        async with AsyncAnthropic(base_url=server.base_url, api_key="t", max_retries=0) as raw:
            client = cache.wrap(raw, provider="anthropic")
            replay = await client.messages.create(**_call(), stream=True)
            second = [e async for e in replay]
    assert server.requests == 1 and _dumps(second) == _dumps(first)
    assert _info(replay).tier != "memory"


# -- single-flight ---------------------------------------------------------------------------------
def test_identical_concurrent_streams_make_one_call() -> None:
    with FakeAnthropicServer(latency_per_token=0.005) as server:
        cache = llmcache.Cache(workspace="stream-flight", tiers=["memory"])
        client = cache.wrap(Anthropic(base_url=server.base_url, api_key="k", max_retries=0))
        texts: list[str] = []
        barrier = threading.Barrier(5)

        def consume(helper: bool) -> None:
            barrier.wait()
            if helper:
                with client.messages.stream(**_call()) as stream:
                    texts.append(stream.get_final_text())
            else:
                texts.append(_text(list(_stream(client))))

        threads = [threading.Thread(target=consume, args=(n % 2 == 0,)) for n in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert server.requests == 1
        assert len(texts) == 5 and len(set(texts)) == 1 and texts[0]
        cache.close()


async def test_identical_concurrent_async_streams_make_one_call() -> None:
    with FakeAnthropicServer(latency_per_token=0.005) as server:
        cache = llmcache.Cache(workspace="stream-flight-async", tiers=["memory"])
        async with AsyncAnthropic(base_url=server.base_url, api_key="k", max_retries=0) as raw:
            client = cache.wrap(raw)

            async def consume() -> str:
                stream = await client.messages.create(**_call(), stream=True)
                return _text([e async for e in stream])

            texts = await asyncio.gather(*(consume() for _ in range(5)))
        assert server.requests == 1
        assert len(set(texts)) == 1 and texts[0]
        cache.close()


def test_a_dropped_stream_lets_waiters_go_at_once(client: Any) -> None:
    stream = _stream(client)
    next(iter(stream))
    recorder = stream._recorder
    assert recorder is not None and recorder.on_end is not None  # it leads its request
    gc.disable()
    try:
        del stream
        # llmcache.last_info() holds the last call's result until the next call; after that,
        # no cycle keeps the stream: it goes now, not at the next collection.
        client.messages.count_tokens(model=MODEL, messages=MESSAGES)
        assert recorder.on_end is None
    finally:
        gc.enable()


def test_an_abandoned_leader_lets_the_waiter_call_itself(
    client: Any, server: FakeAnthropicServer
) -> None:
    first = _stream(client)
    next(iter(first))
    first.close()  # closed early: nothing stored, and nobody is left waiting
    second = _stream(client)
    assert list(second) and server.requests == 2


def test_a_stream_that_cannot_be_recorded_still_reaches_its_caller(
    client: Any, server: FakeAnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Any, data: Any) -> Any:
        raise ValueError("an event the SDK's types do not accept")

    monkeypatch.setattr(MessageStreamRecording, "model_validate_json", classmethod(refuse))
    assert list(_stream(client))
    monkeypatch.undo()
    assert list(_stream(client))
    list(_stream(client))
    assert server.requests == 2


def test_a_failing_store_never_fails_the_stream(
    client: Any, server: FakeAnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = client.messages._family.stream

    def broken_put(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a tier on fire")

    monkeypatch.setattr(site, "put", broken_put)
    assert list(_stream(client))
    assert server.requests == 1


def test_recordings_of_both_apis_validate_their_own_events() -> None:
    start = {
        "type": "message_start",
        "message": {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        },
    }
    for recording in (MessageStreamRecording, BetaMessageStreamRecording):
        value = recording.model_validate({"events": [start, {"type": "message_stop"}]})
        assert [e.type for e in value.events] == ["message_start", "message_stop"]
        with pytest.raises(pydantic.ValidationError):
            recording.model_validate({"events": [{"type": "no_such_event"}]})


def _start_event() -> Any:
    return RawMessageStartEvent.model_validate(
        {
            "type": "message_start",
            "message": {
                "id": "m",
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            },
        }
    )


async def test_a_stream_that_ends_without_message_stop_is_not_stored(client: Any) -> None:
    site = client.messages._family.stream
    request = {"call": {"messages": ["short"]}, "client": {}}
    released = []
    for store in ("sync", "async"):
        recorder = Recorder(site, request, MessageStreamRecording)
        recorder.on_end = functools.partial(released.append, store)
        recorder.add(_start_event())  # the body ended here, without an error
        if store == "sync":
            recorder.store()
        else:
            await recorder.astore()
    assert released == ["sync", "async"]  # waiters let go
    assert site.get(request) is MISS


def test_a_request_that_cannot_be_copied_is_recorded_as_it_is(client: Any) -> None:
    class Uncopyable:
        def __deepcopy__(self, memo: Any) -> Any:
            raise TypeError("no copies")

    odd = {"call": {"thing": Uncopyable()}}
    recorder = Recorder(client.messages._family.stream, odd, MessageStreamRecording)
    assert recorder.recording is not None and recorder._request is odd
