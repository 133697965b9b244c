"""The fake OpenAI server, exercised through the real ``openai`` SDK (sync and async)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest
from openai import AsyncOpenAI, OpenAI

from llmcache.testing import FakeOpenAIServer

MODEL = "gpt-4o-mini"
MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What does a cache do?"},
]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "metric": {"type": "boolean"},
            },
            "required": ["city", "days", "metric"],
            "additionalProperties": False,
        },
    },
}


class Address(pydantic.BaseModel):
    street: str
    zip_code: str | None


class Person(pydantic.BaseModel):
    name: str
    age: int
    height: float
    active: bool
    tags: list[str]
    address: Address


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def client(server: FakeOpenAIServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=server.base_url, api_key="test-key", max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(server: FakeOpenAIServer) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=server.base_url, api_key="test-key", max_retries=0) as c:
        yield c


def _user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


# -- lifecycle ------------------------------------------------------------------------


def test_base_url_and_lifecycle() -> None:
    srv = FakeOpenAIServer()
    with pytest.raises(RuntimeError):
        _ = srv.port
    srv.start()
    try:
        assert srv.port > 0
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
        assert httpx.get(f"{srv.base_url}/models").status_code == 200
    finally:
        srv.stop()
    srv.stop()  # idempotent
    assert not srv.running


# -- chat completions ------------------------------------------------------------------


def test_chat_is_deterministic_per_request(client: OpenAI) -> None:
    first = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    second = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    other_prompt = client.chat.completions.create(model=MODEL, messages=_user("Something else"))
    other_model = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    content = first.choices[0].message.content
    assert content
    assert second.choices[0].message.content == content
    assert other_prompt.choices[0].message.content != content
    assert other_model.choices[0].message.content != content
    assert first.model == MODEL and other_model.model == "gpt-4o"
    assert first.object == "chat.completion"
    assert first.choices[0].finish_reason == "stop"
    assert first.choices[0].message.role == "assistant"
    assert first.id != second.id  # every response is freshly "generated"


def test_chat_usage(client: OpenAI) -> None:
    resp = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    usage = resp.usage
    assert usage is not None
    text_chars = sum(len(m["content"]) for m in MESSAGES)
    assert usage.prompt_tokens >= text_chars // 4 > 0
    assert usage.completion_tokens == len(resp.choices[0].message.content.split())  # type: ignore[union-attr]
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_reasoning_model_reports_reasoning_tokens(client: OpenAI) -> None:
    resp = client.chat.completions.create(model="o3-mini", messages=MESSAGES)
    usage = resp.usage
    assert usage is not None and usage.completion_tokens_details is not None
    reasoning = usage.completion_tokens_details.reasoning_tokens
    assert reasoning is not None and reasoning > 0
    visible = len(resp.choices[0].message.content.split())  # type: ignore[union-attr]
    assert usage.completion_tokens == visible + reasoning


def test_max_tokens_controls_length(client: OpenAI) -> None:
    short = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3)
    long = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=40)
    capped = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100_000)
    assert short.usage is not None and short.usage.completion_tokens == 3
    assert long.usage is not None and long.usage.completion_tokens == 40
    assert capped.usage is not None and capped.usage.completion_tokens == 512
    short_words = (short.choices[0].message.content or "").rstrip(".").split()
    long_words = (long.choices[0].message.content or "").split()
    assert long_words[:2] == short_words[:2]


def test_n_choices(client: OpenAI) -> None:
    resp = client.chat.completions.create(model=MODEL, messages=MESSAGES, n=2)
    single = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert [c.index for c in resp.choices] == [0, 1]
    assert resp.choices[0].message.content == single.choices[0].message.content
    assert resp.choices[0].message.content != resp.choices[1].message.content
    assert resp.usage is not None and single.usage is not None
    assert resp.usage.completion_tokens > single.usage.completion_tokens


def test_tool_call(client: OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL, messages=_user("Weather in Paris?"), tools=[WEATHER_TOOL]
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "example", "days": 1, "metric": True}


def test_tool_choice_none_and_tool_result_give_text(client: OpenAI) -> None:
    none = client.chat.completions.create(
        model=MODEL, messages=_user("Weather?"), tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert none.choices[0].finish_reason == "stop" and none.choices[0].message.content

    first = client.chat.completions.create(
        model=MODEL, messages=_user("Weather?"), tools=[WEATHER_TOOL]
    )
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    follow_up: list[Any] = [
        *_user("Weather?"),
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'},
    ]
    answer = client.chat.completions.create(model=MODEL, messages=follow_up, tools=[WEATHER_TOOL])
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content


def test_parse_pydantic_tool(client: OpenAI) -> None:
    tool = openai.pydantic_function_tool(Person)
    resp = client.chat.completions.parse(model=MODEL, messages=_user("Make one"), tools=[tool])
    calls = resp.choices[0].message.tool_calls
    assert calls is not None
    assert isinstance(calls[0].function.parsed_arguments, Person)


def test_logprobs(client: OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, logprobs=True, top_logprobs=3
    )
    logprobs = resp.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert "".join(t.token for t in logprobs.content) == resp.choices[0].message.content
    for token in logprobs.content:
        assert token.logprob <= 0
        assert token.bytes == list(token.token.encode())
        assert len(token.top_logprobs) == 3
        assert token.top_logprobs[0].token == token.token
    plain = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert plain.choices[0].logprobs is None


def test_parse_structured_output(client: OpenAI, server: FakeOpenAIServer) -> None:
    resp = client.chat.completions.parse(
        model=MODEL, messages=_user("Invent a person"), response_format=Person
    )
    parsed = resp.choices[0].message.parsed
    assert isinstance(parsed, Person)
    assert parsed == Person(
        name="example",
        age=1,
        height=1.5,
        active=True,
        tags=[],
        address=Address(street="example", zip_code="example"),
    )
    sent = server.last_request_body
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "Person"


def test_json_object_mode(client: OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL, messages=_user("Reply in JSON"), response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(resp.choices[0].message.content or ""), dict)


def test_refusal(client: OpenAI) -> None:
    resp = client.chat.completions.create(model=MODEL, messages=_user("Please REFUSE this"))
    message = resp.choices[0].message
    assert message.content is None
    assert message.refusal
    parsed = client.chat.completions.parse(
        model=MODEL, messages=_user("REFUSE"), response_format=Person
    )
    assert parsed.choices[0].message.parsed is None
    assert parsed.choices[0].message.refusal


# -- streaming -------------------------------------------------------------------------


def test_stream_sync_matches_non_streamed(client: OpenAI) -> None:
    full = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 3
    joined = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert joined == full.choices[0].message.content
    assert len({c.id for c in chunks}) == 1


def test_stream_include_usage(client: OpenAI) -> None:
    full = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and full.usage is not None
    assert last.usage.model_dump() == full.usage.model_dump()
    assert all(c.usage is None for c in chunks[:-1])


async def test_stream_async_matches_non_streamed(aclient: AsyncOpenAI) -> None:
    full = await aclient.chat.completions.create(model=MODEL, messages=MESSAGES)
    stream = await aclient.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    joined = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert joined == full.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == full.usage.total_tokens  # type: ignore[union-attr]


def test_stream_tool_call_and_helper(client: OpenAI) -> None:
    with client.chat.completions.stream(
        model=MODEL, messages=_user("Weather?"), tools=[WEATHER_TOOL]
    ) as stream:
        for _event in stream:
            pass
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls"
    assert calls is not None and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments)["city"] == "example"


def test_stream_n_and_logprobs(client: OpenAI) -> None:
    full = client.chat.completions.create(model=MODEL, messages=MESSAGES, n=2)
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, n=2, stream=True, logprobs=True
        )
    )
    for index in (0, 1):
        parts = [c.choices[0] for c in chunks if c.choices and c.choices[0].index == index]
        joined = "".join(p.delta.content or "" for p in parts)
        assert joined == full.choices[index].message.content
        assert any(p.logprobs and p.logprobs.content for p in parts)


def test_stream_refusal(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model=MODEL, messages=_user("REFUSE"), stream=True)
    )
    refusal = "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices)
    assert refusal
    assert all(not c.choices[0].delta.content for c in chunks if c.choices)


def test_stream_latency(server: FakeOpenAIServer, client: OpenAI) -> None:
    server.latency_per_token = 0.01
    start = time.perf_counter()
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, max_tokens=20
    )
    first_chunk_at = None
    for _chunk in stream:
        if first_chunk_at is None:
            first_chunk_at = time.perf_counter() - start
    total = time.perf_counter() - start
    assert first_chunk_at is not None and first_chunk_at < total
    assert total >= 20 * 0.01 * 0.9


def test_abort_stream_sync(server: FakeOpenAIServer, client: OpenAI) -> None:
    server.abort_stream_after(3)
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 3
    # The abort applies once: the next stream completes normally.
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_abort_stream_async(server: FakeOpenAIServer, aclient: AsyncOpenAI) -> None:
    server.abort_stream_after(2)
    stream = await aclient.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 2


# -- responses API ---------------------------------------------------------------------


def test_responses_create(client: OpenAI) -> None:
    resp = client.responses.create(model=MODEL, input="Hello!", instructions="Be brief.")
    again = client.responses.create(model=MODEL, input="Hello!", instructions="Be brief.")
    other = client.responses.create(model=MODEL, input="Hello!", instructions="Be long.")
    assert resp.status == "completed"
    assert resp.object == "response"
    assert resp.output_text
    assert resp.output_text == again.output_text != other.output_text
    assert resp.output[0].type == "message"
    usage = resp.usage
    assert usage is not None
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_responses_message_list_input(client: OpenAI) -> None:
    resp = client.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": [{"type": "input_text", "text": "How are you?"}]},
        ],
        max_output_tokens=16,
    )
    assert len(resp.output_text.split()) == 16


def test_responses_stream(client: OpenAI) -> None:
    full = client.responses.create(model=MODEL, input="Stream me")
    events = list(client.responses.create(model=MODEL, input="Stream me", stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == full.output_text
    with client.responses.stream(model=MODEL, input="Stream me") as stream:
        final = stream.get_final_response()
    assert final.output_text == full.output_text


async def test_responses_async_and_parse(aclient: AsyncOpenAI) -> None:
    resp = await aclient.responses.create(model=MODEL, input="async hello")
    assert resp.output_text
    parsed = await aclient.responses.parse(model=MODEL, input="person", text_format=Person)
    assert isinstance(parsed.output_parsed, Person)


def test_responses_function_call(client: OpenAI) -> None:
    tool: Any = {"type": "function", **WEATHER_TOOL["function"]}
    resp = client.responses.create(model=MODEL, input="Weather?", tools=[tool])
    item = resp.output[0]
    assert item.type == "function_call"
    assert item.name == "get_weather"
    assert json.loads(item.arguments)["days"] == 1


# -- embeddings ------------------------------------------------------------------------


def test_embeddings_default_base64(client: OpenAI, server: FakeOpenAIServer) -> None:
    single = client.embeddings.create(model="text-embedding-3-small", input="hello world")
    assert server.last_request_body["encoding_format"] == "base64"  # the SDK's default
    assert len(single.data) == 1 and len(single.data[0].embedding) == 8
    batch = client.embeddings.create(
        model="text-embedding-3-small", input=["hello world", "goodbye moon", "hello world"]
    )
    vectors = [d.embedding for d in batch.data]
    assert [d.index for d in batch.data] == [0, 1, 2]
    assert all(len(v) == 8 for v in vectors)
    assert vectors[0] == vectors[2] == single.data[0].embedding
    assert vectors[0] != vectors[1]
    assert batch.usage.prompt_tokens > 0
    assert batch.usage.total_tokens == batch.usage.prompt_tokens


def test_embeddings_float_dimensions_and_tokens(client: OpenAI) -> None:
    as_float = client.embeddings.create(
        model="text-embedding-3-small", input="hello", encoding_format="float", dimensions=32
    )
    as_b64 = client.embeddings.create(model="text-embedding-3-small", input="hello", dimensions=32)
    assert isinstance(as_float.data[0].embedding, list)
    assert len(as_float.data[0].embedding) == 32
    assert as_float.data[0].embedding == as_b64.data[0].embedding
    tokens = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]])
    assert len(tokens.data) == 2 and tokens.usage.prompt_tokens == 5


async def test_embeddings_async(aclient: AsyncOpenAI) -> None:
    resp = await aclient.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert [len(d.embedding) for d in resp.data] == [8, 8]


# -- models, errors, counters ----------------------------------------------------------


def test_models_and_unknown_path(client: OpenAI, server: FakeOpenAIServer) -> None:
    models = client.models.list()
    assert MODEL in [m.id for m in models.data]
    assert client.models.retrieve("my-model").id == "my-model"
    raw = httpx.post(f"{server.base_url}/does-not-exist", json={})
    assert raw.status_code == 404
    error = raw.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    with pytest.raises(openai.NotFoundError):
        client.post("/does-not-exist", cast_to=object, body={})


def test_counters(client: OpenAI, server: FakeOpenAIServer) -> None:
    assert server.requests == 0
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True).close()
    client.embeddings.create(model="text-embedding-3-small", input="x")
    client.responses.create(model=MODEL, input="x")
    assert server.requests == 4
    assert server.requests_by_path == {
        "/v1/chat/completions": 2,
        "/v1/embeddings": 1,
        "/v1/responses": 1,
    }
    assert server.last_request_body["input"] == "x"
    server.reset_counts()
    assert server.requests == 0 and server.requests_by_path == {}


async def test_counters_are_thread_safe(aclient: AsyncOpenAI, server: FakeOpenAIServer) -> None:
    import asyncio

    await asyncio.gather(
        *(aclient.chat.completions.create(model=MODEL, messages=_user(str(i))) for i in range(25))
    )
    assert server.requests == 25
    assert server.requests_by_path == {"/v1/chat/completions": 25}


def test_fail_next(client: OpenAI, server: FakeOpenAIServer) -> None:
    server.fail_next(2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert client.chat.completions.create(model=MODEL, messages=MESSAGES).choices
    server.fail_next(1, status=429)
    with pytest.raises(openai.RateLimitError) as excinfo:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert excinfo.value.status_code == 429
    assert server.requests == 4


def test_fail_next_with_sdk_retries(server: FakeOpenAIServer) -> None:
    server.fail_next(2, status=503)
    with OpenAI(base_url=server.base_url, api_key="k", max_retries=2) as retrying:
        resp = retrying.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert resp.choices[0].message.content
    assert server.requests == 3


async def test_fail_next_async(aclient: AsyncOpenAI, server: FakeOpenAIServer) -> None:
    server.fail_next(1, status=500)
    with pytest.raises(openai.InternalServerError):
        await aclient.responses.create(model=MODEL, input="x")
    assert (await aclient.responses.create(model=MODEL, input="x")).output_text


def test_request_the_sdk_types_reject_is_a_400(server: FakeOpenAIServer) -> None:
    # The Response echoes the request's tools; an unknown tool type cannot be one.
    body = {"model": MODEL, "input": "hi", "tools": [{"type": "no_such_tool"}]}
    answer = httpx.post(f"{server.base_url}/responses", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith("Invalid request")


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/chat/completions", {"messages": MESSAGES}, "Missing required parameter: 'model'."),
        ("/chat/completions", {"model": MODEL, "messages": []}, "Missing required parameter"),
        ("/embeddings", {"model": MODEL}, "Missing required parameter: 'input'."),
        ("/embeddings", {"model": MODEL, "input": "x", "dimensions": 1.5}, "Invalid request"),
        ("/chat/completions", {"model": MODEL, "messages": MESSAGES, "n": "two"}, "Invalid"),
    ],
)
def test_a_request_the_server_cannot_read_is_a_400(
    server: FakeOpenAIServer, path: str, body: Any, message: str
) -> None:
    answer = httpx.post(f"{server.base_url}{path}", json=body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["message"].startswith(message) and error["type"] == "invalid_request_error"
    assert server.requests == 1  # counted like any other request


def test_errors_carry_the_api_codes(server: FakeOpenAIServer) -> None:
    for status, code in [(401, "invalid_api_key"), (429, "rate_limit_exceeded"), (503, None)]:
        server.fail_next(1, status=status)
        answer = httpx.get(f"{server.base_url}/models")
        assert answer.status_code == status and answer.json()["error"]["code"] == code
        assert answer.headers["retry-after-ms"] == "1"  # the SDK retries at once
    assert httpx.delete(f"{server.base_url}/models/x").status_code == 404
    assert httpx.post(f"{server.base_url}/chat/completions", content=b"{oops").status_code == 400
