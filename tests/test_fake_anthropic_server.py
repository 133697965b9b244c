"""The fake Anthropic server, exercised through the real ``anthropic`` SDK (sync and async)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import pytest
from anthropic import Anthropic, AsyncAnthropic
from anthropic.types import (
    Message,
    RawMessageStreamEvent,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
)

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
LONG_SYSTEM = "You answer questions about caches. " * 40  # 1,400 characters: 350 tokens
STREAM_ORDER = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
]


@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as srv:
        yield srv


@pytest.fixture
def client(server: FakeAnthropicServer) -> Iterator[Anthropic]:
    with Anthropic(base_url=server.base_url, api_key="test", max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(server: FakeAnthropicServer) -> AsyncIterator[AsyncAnthropic]:
    async with AsyncAnthropic(base_url=server.base_url, api_key="test", max_retries=0) as c:
        yield c


def _create(client: Anthropic, **fields: Any) -> Message:
    request = {"model": MODEL, "max_tokens": 256, "messages": MESSAGES, **fields}
    message: Message = client.messages.create(**request)
    return message


def _stream(client: Anthropic, **fields: Any) -> Iterator[RawMessageStreamEvent]:
    request = {"model": MODEL, "max_tokens": 256, "messages": MESSAGES, **fields}
    yield from client.messages.create(**request, stream=True)


def _text(message: Message) -> str:
    return "".join(block.text for block in message.content if isinstance(block, TextBlock))


def _cached_system(ttl: str | None = None) -> list[Any]:
    marker = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return [{"type": "text", "text": LONG_SYSTEM, "cache_control": marker}]


# -- lifecycle ------------------------------------------------------------------------


def test_base_url_and_lifecycle() -> None:
    srv = FakeAnthropicServer()
    with pytest.raises(RuntimeError):
        _ = srv.port
    srv.start()
    try:
        assert srv.running and srv.base_url == f"http://127.0.0.1:{srv.port}"
        assert httpx.get(f"{srv.base_url}/v1/models").status_code == 200
    finally:
        srv.stop()
    srv.stop()  # idempotent
    assert not srv.running


def test_llmcache_testing_imports_without_the_anthropic_sdk() -> None:
    """``FakeAnthropicServer`` is exported lazily: the OpenAI demo needs no ``anthropic``."""
    code = "import sys, llmcache.testing; print('anthropic' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"
    import llmcache.testing

    assert llmcache.testing.FakeAnthropicServer is FakeAnthropicServer
    with pytest.raises(AttributeError):
        _ = llmcache.testing.NoSuchServer


# -- messages -------------------------------------------------------------------------


def test_message_is_deterministic_per_request(client: Anthropic) -> None:
    first, second = _create(client), _create(client)
    other_prompt = _create(client, messages=[{"role": "user", "content": "Something else"}])
    other_model = _create(client, model="claude-haiku-4-5")
    assert _text(first) and _text(first) == _text(second)
    assert _text(other_prompt) != _text(first) and _text(other_model) != _text(first)
    assert first.id.startswith("msg_") and first.id != second.id
    assert (first.type, first.role, first.model) == ("message", "assistant", MODEL)
    assert (first.stop_reason, first.stop_sequence) == ("end_turn", None)
    assert first._request_id is not None and first._request_id.startswith("req_")


def test_usage_and_count_tokens_agree(client: Anthropic) -> None:
    message = _create(client, system="You are terse.")
    usage = message.usage
    counted = client.messages.count_tokens(model=MODEL, messages=MESSAGES, system="You are terse.")
    assert usage.input_tokens == counted.input_tokens > len("What does a cache do?") // 4
    assert usage.output_tokens == len(_text(message).split())  # one token a word
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
    assert usage.service_tier == "standard"
    bare = client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert bare.input_tokens < counted.input_tokens  # the system prompt counts


def test_system_as_string_or_blocks(client: Anthropic) -> None:
    as_string = _create(client, system="You are terse.")
    as_blocks = _create(client, system=[{"type": "text", "text": "You are terse."}])
    other = _create(client, system=[{"type": "text", "text": "You are verbose."}])
    assert _text(as_string) == _text(as_blocks) != _text(other)
    assert as_string.usage.input_tokens == as_blocks.usage.input_tokens
    assert _text(as_string) != _text(_create(client))


def test_max_tokens_cuts_the_answer(client: Anthropic) -> None:
    full, short = _create(client), _create(client, max_tokens=3)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3
    assert _text(full).startswith(_text(short)) and len(_text(short).split()) == 3
    assert not _text(short).endswith(".")


def test_stop_sequences(client: Anthropic) -> None:
    full = _text(_create(client))
    stop = " " + full.split()[3]
    message = _create(client, stop_sequences=["never there", stop])
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", stop)
    assert _text(message) == full[: full.index(stop)]
    assert message.usage.output_tokens == len(_text(message).split()) + 1


def test_thinking_block_with_signature(client: Anthropic) -> None:
    message = _create(client, max_tokens=2048, thinking=THINKING)
    thinking, text = message.content
    assert isinstance(thinking, ThinkingBlock) and isinstance(text, TextBlock)
    assert thinking.thinking and len(thinking.signature) > 40
    words = len(thinking.thinking.split()) + len(text.text.split())
    assert message.usage.output_tokens == words  # thinking counts toward output
    assert _create(client, max_tokens=2048, thinking=THINKING).content[0] == thinking
    plain = _create(client, max_tokens=2048, thinking={"type": "disabled"})
    assert [block.type for block in plain.content] == ["text"]


@pytest.mark.parametrize("budget", [512, 4096])
def test_thinking_budget_is_checked(client: Anthropic, budget: int) -> None:
    thinking = {"type": "enabled", "budget_tokens": budget}
    with pytest.raises(anthropic.BadRequestError, match="budget_tokens"):
        _create(client, max_tokens=2048, thinking=thinking)


# -- tool use -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool_choice", "prompt"),
    [
        ({"type": "tool", "name": "get_weather"}, "Hello"),
        ({"type": "any"}, "Hello"),
        (None, "Please call get_weather for Paris."),
    ],
)
def test_tool_use(client: Anthropic, tool_choice: Any, prompt: str) -> None:
    choice = {"tool_choice": tool_choice} if tool_choice else {}
    messages = [{"role": "user", "content": prompt}]
    message = _create(client, tools=[WEATHER_TOOL], messages=messages, **choice)
    assert message.stop_reason == "tool_use"
    (call,) = message.content
    assert isinstance(call, ToolUseBlock) and call.id.startswith("toolu_")
    assert (call.name, call.input) == ("get_weather", {"city": "example", "days": 1})


def test_text_without_a_reason_to_call(client: Anthropic) -> None:
    unasked = _create(client, tools=[WEATHER_TOOL])
    refused = _create(client, tools=[WEATHER_TOOL], tool_choice={"type": "none"})
    asked: list[Any] = [{"role": "user", "content": "Use get_weather."}]
    call = _create(client, tools=[WEATHER_TOOL], messages=asked)
    result = {"type": "tool_result", "tool_use_id": call.content[0].id, "content": "21C"}  # type: ignore[union-attr]
    follow_up = [*asked, call.to_param(), {"role": "user", "content": [result]}]
    answered = _create(client, tools=[WEATHER_TOOL], messages=follow_up)
    for message in (unasked, refused, answered):
        assert message.stop_reason == "end_turn" and _text(message)
    with pytest.raises(anthropic.BadRequestError, match="no tool named"):
        _create(client, tools=[WEATHER_TOOL], tool_choice={"type": "tool", "name": "nope"})


# -- streams --------------------------------------------------------------------------


def _types(events: list[RawMessageStreamEvent]) -> list[str]:
    """Event types with repeats collapsed."""
    return [e.type for i, e in enumerate(events) if not i or events[i - 1].type != e.type]


def test_stream_events_in_order(client: Anthropic) -> None:
    events = list(_stream(client))
    assert _types(events) == STREAM_ORDER
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    whole = _create(client)
    assert "".join(d.text for d in deltas if d.type == "text_delta") == _text(whole)
    start, end = events[0], events[-2]
    assert start.type == "message_start" and start.message.content == []
    assert start.message.usage.input_tokens == whole.usage.input_tokens
    assert end.type == "message_delta" and end.delta.stop_reason == "end_turn"
    assert end.usage.output_tokens == whole.usage.output_tokens


def test_stream_with_thinking_and_tool_use(client: Anthropic) -> None:
    request: Any = {"max_tokens": 2048, "thinking": THINKING, "tools": [WEATHER_TOOL]}
    request["messages"] = [{"role": "user", "content": "Use get_weather."}]
    events = list(_stream(client, **request))
    deltas = [(e.index, e.delta.type) for e in events if e.type == "content_block_delta"]
    kinds = list(dict.fromkeys(deltas))
    assert kinds == [(0, "thinking_delta"), (0, "signature_delta"), (1, "input_json_delta")]
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["thinking", "tool_use"]
    with client.messages.stream(model=MODEL, **request) as stream:
        final = stream.get_final_message()
    assert final.content == _create(client, **request).content
    assert final.stop_reason == "tool_use"


def test_stream_helper(client: Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    whole = _create(client)
    assert text == _text(final) == _text(whole)
    assert final.usage == whole.usage


def test_stream_helper_events_with_thinking(client: Anthropic) -> None:
    request: Any = {"model": MODEL, "max_tokens": 2048, "messages": MESSAGES, "thinking": THINKING}
    with client.messages.stream(**request) as stream:
        kinds = [event.type for event in stream if event.type != "content_block_delta"]
        final = stream.get_final_message()
    assert [kind for i, kind in enumerate(kinds) if not i or kinds[i - 1] != kind] == [
        "message_start",
        "content_block_start",
        "thinking",
        "signature",
        "content_block_stop",
        "content_block_start",
        "text",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    whole = _create(client, **request)
    assert final.content[0] == whole.content[0]  # the thinking, signature included
    assert _text(final) == _text(whole) and final.usage == whole.usage


def test_raw_sse_lines_name_each_event(server: FakeAnthropicServer) -> None:
    request = {"model": MODEL, "max_tokens": 5, "messages": MESSAGES, "stream": True}
    response = httpx.post(f"{server.base_url}/v1/messages", json=request)
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["request-id"].startswith("req_")
    blocks = response.text.strip().split("\n\n")
    names = [block.split("\n")[0].removeprefix("event: ") for block in blocks]
    for name, block in zip(names, blocks, strict=True):
        assert json.loads(block.split("\n")[1].removeprefix("data: "))["type"] == name
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


async def test_async_create_and_streams(aclient: AsyncAnthropic) -> None:
    message = await aclient.messages.create(model=MODEL, max_tokens=256, messages=MESSAGES)
    stream = await aclient.messages.create(
        model=MODEL, max_tokens=256, messages=MESSAGES, stream=True
    )
    events = [event async for event in stream]
    assert _types(events) == STREAM_ORDER
    async with aclient.messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as helper:
        text = "".join([piece async for piece in helper.text_stream])
        final = await helper.get_final_message()
    assert text == _text(final) == _text(message)
    counted = await aclient.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert counted.input_tokens == message.usage.input_tokens


# -- prompt caching -------------------------------------------------------------------


def test_cache_creation_then_read(server: FakeAnthropicServer, client: Anthropic) -> None:
    system = _cached_system()
    first, second = _create(client, system=system), _create(client, system=system)
    total = client.messages.count_tokens(model=MODEL, messages=MESSAGES, system=system)
    cached = first.usage.cache_creation_input_tokens
    assert cached is not None and cached >= len(LONG_SYSTEM) // 4
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == cached
    assert (second.usage.cache_creation_input_tokens, second.usage.cache_read_input_tokens) == (
        0,
        cached,
    )
    for usage in (first.usage, second.usage):  # input_tokens leaves the cached prefix out
        assert usage.input_tokens == total.input_tokens - cached > 0
    assert _text(first) == _text(second) == _text(_create(client, system=LONG_SYSTEM))
    other_model = _create(client, system=system, model="claude-haiku-4-5")
    assert other_model.usage.cache_read_input_tokens == 0
    server.clear_prompt_cache()
    assert _create(client, system=system).usage.cache_creation_input_tokens == cached


def test_cache_reads_the_longest_cached_prefix(client: Anthropic) -> None:
    system = _cached_system(ttl="1h")
    turn = {"type": "text", "text": "Tell me more. " * 20, "cache_control": {"type": "ephemeral"}}
    longer = [
        *MESSAGES,
        {"role": "assistant", "content": "Sure."},
        {"role": "user", "content": [turn]},
    ]
    first = _create(client, system=system)
    extended = _create(client, system=system, messages=longer)
    assert first.usage.cache_creation is not None
    assert (
        first.usage.cache_creation.ephemeral_1h_input_tokens
        == first.usage.cache_creation_input_tokens
    )
    assert extended.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    written = extended.usage.cache_creation_input_tokens
    assert written is not None and written >= len(turn["text"]) // 4
    # Written after the one-hour prefix was read, up to a 5-minute breakpoint: 5 minutes.
    split = extended.usage.cache_creation
    assert split is not None and split.ephemeral_5m_input_tokens == written
    assert split.ephemeral_1h_input_tokens == 0
    total = client.messages.count_tokens(model=MODEL, messages=longer, system=system)
    read = extended.usage.cache_read_input_tokens
    assert 0 < extended.usage.input_tokens == total.input_tokens - written - (read or 0)


def test_cache_hit_behind_a_moved_breakpoint(client: Anthropic) -> None:
    """A conversation that moves its one breakpoint to the latest turn reads the prefix the
    previous request wrote: the API looks back up to 20 blocks from a breakpoint."""
    marker: Any = {"type": "ephemeral"}
    question = {"type": "text", "text": LONG_SYSTEM}
    first = _create(
        client, messages=[{"role": "user", "content": [{**question, "cache_control": marker}]}]
    )
    follow_up = {"type": "text", "text": "And then? " * 30, "cache_control": marker}
    conversation = [
        {"role": "user", "content": [question]},
        {"role": "assistant", "content": _text(first)},
        {"role": "user", "content": [follow_up]},
    ]
    second = _create(client, messages=conversation)
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    written = second.usage.cache_creation_input_tokens
    assert written is not None and written >= len(follow_up["text"]) // 4


def test_automatic_caching_and_streamed_usage(client: Anthropic) -> None:
    marker: Any = {"type": "ephemeral"}
    first = _create(client, system=LONG_SYSTEM, cache_control=marker)
    events = list(_stream(client, system=LONG_SYSTEM, cache_control=marker))
    start, end = events[0], events[-2]
    assert start.type == "message_start" and end.type == "message_delta"
    written = first.usage.cache_creation_input_tokens
    assert written and start.message.usage.cache_read_input_tokens == written
    assert end.usage.cache_read_input_tokens == written
    assert end.usage.input_tokens == first.usage.input_tokens


def test_count_tokens_writes_no_cache(client: Anthropic) -> None:
    system = _cached_system()
    client.messages.count_tokens(model=MODEL, messages=MESSAGES, system=system)
    assert _create(client, system=system).usage.cache_read_input_tokens == 0


# -- errors and fault injection -------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "exception"),
    [
        (400, "invalid_request_error", anthropic.BadRequestError),
        (401, "authentication_error", anthropic.AuthenticationError),
        (429, "rate_limit_error", anthropic.RateLimitError),
        (500, "api_error", anthropic.InternalServerError),
        (529, "overloaded_error", anthropic.OverloadedError),
    ],
)
def test_error_shapes(
    server: FakeAnthropicServer,
    client: Anthropic,
    status: int,
    error_type: str,
    exception: type[anthropic.APIStatusError],
) -> None:
    server.fail_next(status=status)
    with pytest.raises(exception) as caught:
        _create(client)
    error = caught.value
    assert error.status_code == status
    assert error.request_id is not None and error.request_id.startswith("req_")
    assert error.body == {
        "type": "error",
        "error": {"type": error_type, "message": f"Simulated failure (HTTP {status})."},
        "request_id": error.request_id,
    }
    assert _text(_create(client))  # one failure, then answers again


def test_errors_the_server_finds_itself(server: FakeAnthropicServer, client: Anthropic) -> None:
    missing = httpx.post(
        f"{server.base_url}/v1/messages", json={"model": MODEL, "messages": MESSAGES}
    )
    assert missing.status_code == 400
    assert missing.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    assert missing.json()["request_id"] == missing.headers["request-id"]
    assert httpx.post(f"{server.base_url}/v1/messages", content=b"{").status_code == 400
    assert httpx.get(f"{server.base_url}/v1/nowhere").json()["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-unknown")
    with FakeAnthropicServer(api_key="secret") as guarded:
        wrong = Anthropic(base_url=guarded.base_url, api_key="wrong", max_retries=0)
        with wrong, pytest.raises(anthropic.AuthenticationError, match="invalid x-api-key"):
            _create(wrong)
        with Anthropic(base_url=guarded.base_url, api_key="secret", max_retries=0) as right:
            assert _text(_create(right))
        assert (
            httpx.get(f"{guarded.base_url}/v1/models", headers={"x-api-key": "secret"}).status_code
            == 200
        )


def test_fail_next_is_used_up_by_retries(server: FakeAnthropicServer) -> None:
    server.fail_next(2, status=529)
    with Anthropic(base_url=server.base_url, api_key="test", max_retries=2) as client:
        assert _text(_create(client))
    assert server.requests == 3
    with pytest.raises(ValueError):
        server.fail_next(status=200)


def test_abort_stream_cuts_the_connection(server: FakeAnthropicServer, client: Anthropic) -> None:
    server.abort_stream_after(4)  # message_start, content_block_start, ping, one delta
    received = []
    with pytest.raises(httpx2.RemoteProtocolError):  # the SDK lets a cut stream's error through
        for event in _stream(client):
            received.append(event.type)
    assert received == ["message_start", "content_block_start", "content_block_delta"]
    assert _types(list(_stream(client))) == STREAM_ORDER  # the abort applies once


async def test_abort_stream_with_an_error_event(
    server: FakeAnthropicServer, aclient: AsyncAnthropic
) -> None:
    server.abort_stream_after(1, error="overloaded_error")
    stream = await aclient.messages.create(
        model=MODEL, max_tokens=256, messages=MESSAGES, stream=True
    )
    received = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async for event in stream:
            received.append(event.type)
    assert received == ["message_start"]
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    with pytest.raises(ValueError):
        server.abort_stream_after(1, error="no_such_error")


# -- counters, headers, models, latency -----------------------------------------------


def test_counters_and_headers(server: FakeAnthropicServer, client: Anthropic) -> None:
    _create(client)
    client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    _create(client, extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"})
    assert server.requests == 3
    assert server.requests_by_path == {"/v1/messages": 2, "/v1/messages/count_tokens": 1}
    headers = server.last_request_headers
    assert headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert headers["anthropic-version"] and headers["authorization"] == "Bearer test"
    assert server.last_request_body["model"] == MODEL
    server.reset_counts()
    assert (server.requests, server.requests_by_path) == (0, {})


def test_models(client: Anthropic) -> None:
    models = list(client.models.list())
    assert [model.id for model in models][:1] == ["claude-opus-4-5"] and len(models) == 3
    model = client.models.retrieve(MODEL)
    assert (model.id, model.display_name, model.type) == (MODEL, "Claude Sonnet 4.6", "model")


def test_latency(server: FakeAnthropicServer, client: Anthropic) -> None:
    server.latency_per_token, server.base_latency = 0.01, 0.05
    start = time.perf_counter()
    message = _create(client, max_tokens=10)
    assert time.perf_counter() - start >= 0.9 * (0.05 + 0.01 * message.usage.output_tokens)
