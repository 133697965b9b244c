"""The Anthropic adapter, through the real `anthropic` SDK talking HTTP to a loopback server."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pydantic
import pytest
from anthropic import NOT_GIVEN, Anthropic, AsyncAnthropic
from anthropic.types import (
    Message,
    MessageTokensCount,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
)
from anthropic.types.beta import BetaMessage, BetaMessageTokensCount
from genai_prices import extract_usage
from llmcache_anthropic import (
    EXCLUDED,
    INCLUDED,
    PASSED_THROUGH,
    AnthropicProvider,
    CachedAnthropic,
    CachedAsyncAnthropic,
)
from llmcache_anthropic._decoding import stored_as
from llmcache_anthropic._keys import client_fields, request_of, uncacheable
from llmcache_anthropic._usage import count_usage, provider_for_url, usage_of

import llmcache
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
LONG_SYSTEM = "You answer questions about caches, briefly and precisely. " * 40
EPHEMERAL: Any = {"type": "ephemeral"}


# -- fixtures (tests/test_anthropic_streaming.py has the same) -------------------------------------
@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as srv:
        yield srv


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[llmcache.Cache]:
    with llmcache.Cache(workspace="claude", tiers=["memory", f"disk://{tmp_path}/tier"]) as c:
        yield c


@pytest.fixture
def raw_client(server: FakeAnthropicServer) -> Iterator[Anthropic]:
    with Anthropic(base_url=server.base_url, api_key="test", max_retries=0) as client:
        yield client


@pytest.fixture
def client(cache: llmcache.Cache, raw_client: Anthropic) -> Any:
    return cache.wrap(raw_client, provider="anthropic")  # the fake server imitates Anthropic


@pytest.fixture
async def aclient(cache: llmcache.Cache, server: FakeAnthropicServer) -> AsyncIterator[Any]:
    async with AsyncAnthropic(base_url=server.base_url, api_key="test", max_retries=0) as raw:
        yield cache.wrap(raw, provider="anthropic")


def _create(client: Any, **changes: Any) -> Any:
    return client.messages.create(
        **{"model": MODEL, "max_tokens": 256, "messages": MESSAGES, **changes}
    )


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json", warnings=False)


def _info(value: Any) -> llmcache.CallInfo:
    described = llmcache.info(value)
    assert described is not None
    return described


# -- the basics: a second identical call reaches no server -----------------------------------------
CALLS: dict[str, Any] = {
    "create": lambda c: _create(c),
    "count_tokens": lambda c: c.messages.count_tokens(model=MODEL, messages=MESSAGES),
    "beta.create": lambda c: c.beta.messages.create(
        model=MODEL, max_tokens=256, messages=MESSAGES, betas=["context-1m-2025-08-07"]
    ),
    "beta.count_tokens": lambda c: c.beta.messages.count_tokens(model=MODEL, messages=MESSAGES),
}
TYPES = {
    "create": Message,
    "count_tokens": MessageTokensCount,
    "beta.create": BetaMessage,
    "beta.count_tokens": BetaMessageTokensCount,
}


@pytest.mark.parametrize("endpoint", sorted(CALLS))
def test_second_identical_call_reaches_no_server(
    endpoint: str, client: Any, server: FakeAnthropicServer
) -> None:
    first = CALLS[endpoint](client)
    assert server.requests == 1
    second = CALLS[endpoint](client)
    assert server.requests == 1
    assert type(second) is type(first) is TYPES[endpoint]
    assert second == first and _dump(second) == _dump(first)
    assert second.model_fields_set == first.model_fields_set
    assert second is not first
    assert _info(second).hit and not _info(first).hit


@pytest.mark.parametrize("endpoint", sorted(CALLS))
async def test_async_hits_return_the_same_types(
    endpoint: str, aclient: Any, server: FakeAnthropicServer
) -> None:
    first = await CALLS[endpoint](aclient)
    second = await CALLS[endpoint](aclient)
    assert server.requests == 1
    assert type(second) is type(first) is TYPES[endpoint]
    assert second == first


def test_sync_and_async_clients_share_entries(
    cache: llmcache.Cache, client: Any, server: FakeAnthropicServer
) -> None:
    _create(client)

    async def call_async() -> Any:
        async with AsyncAnthropic(base_url=server.base_url, api_key="t", max_retries=0) as raw:
            return await _create(cache.wrap(raw, provider="anthropic"))

    hit = asyncio.run(call_async())
    assert server.requests == 1
    assert _info(hit).hit


def test_a_disk_hit_after_a_restart_is_the_same_message(
    tmp_path: Path, server: FakeAnthropicServer
) -> None:
    tiers = ["memory", f"disk://{tmp_path}/restart"]
    raw = Anthropic(base_url=server.base_url, api_key="t", max_retries=0)
    with llmcache.Cache(workspace="claude", tiers=tiers) as first_run:
        miss = _create(first_run.wrap(raw), thinking=THINKING, max_tokens=2048)
    with llmcache.Cache(workspace="claude", tiers=tiers) as second_run:
        hit = _create(second_run.wrap(raw), thinking=THINKING, max_tokens=2048)
    assert server.requests == 1
    assert _info(hit).tier != "memory" and _info(hit).hit
    assert type(hit) is Message and hit == miss
    assert [type(block) for block in hit.content] == [type(block) for block in miss.content]


# -- faithful values: tool use, thinking, system blocks --------------------------------------------
def test_tool_use_round_trips(client: Any, server: FakeAnthropicServer) -> None:
    call = {"tools": [WEATHER_TOOL], "tool_choice": {"type": "tool", "name": "get_weather"}}
    miss = _create(client, **call)
    hit = _create(client, **call)
    assert server.requests == 1
    block = hit.content[-1]
    assert isinstance(block, ToolUseBlock) and block.name == "get_weather"
    assert block.input == miss.content[-1].input and set(block.input) == {"city", "days"}
    assert hit.stop_reason == "tool_use" and hit == miss


def test_thinking_blocks_round_trip_with_their_signature(
    client: Any, server: FakeAnthropicServer
) -> None:
    miss = _create(client, thinking=THINKING, max_tokens=2048)
    hit = _create(client, thinking=THINKING, max_tokens=2048)
    assert server.requests == 1
    thinking = hit.content[0]
    assert isinstance(thinking, ThinkingBlock) and thinking.signature
    assert thinking == miss.content[0]
    assert isinstance(hit.content[1], TextBlock) and hit.content[1].text == miss.content[1].text


def test_system_as_text_or_blocks_are_both_cached(client: Any, server: FakeAnthropicServer) -> None:
    as_text = _create(client, system="Be brief.")
    as_blocks = _create(client, system=[{"type": "text", "text": "Be brief."}])
    assert server.requests == 2  # the API reads them alike, but the requests differ
    assert _create(client, system="Be brief.") == as_text
    assert _create(client, system=[{"type": "text", "text": "Be brief."}]) == as_blocks
    assert server.requests == 2


def test_a_conversation_with_sdk_blocks_passed_back_is_cached(
    client: Any, server: FakeAnthropicServer
) -> None:
    call = {"tools": [WEATHER_TOOL], "thinking": THINKING, "max_tokens": 2048}
    first = _create(client, **call, tool_choice={"type": "any"})
    tool_use = first.content[-1]
    turns = [
        *MESSAGES,
        {"role": "assistant", "content": first.content},  # the SDK's own blocks, as they came
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}],
        },
    ]
    answer = _create(client, **call, messages=turns)
    again = _create(client, **call, messages=turns)
    assert server.requests == 2
    assert again == answer and answer.stop_reason == "end_turn"


def test_each_hit_is_an_independent_object(client: Any) -> None:
    first = _create(client)
    first.content[0].text = "poisoned"
    second = _create(client)
    second.content[0].text = "poisoned again"
    assert _create(client).content[0].text not in ("poisoned", "poisoned again")


def test_hits_keep_the_fields_the_api_set(client: Any) -> None:
    miss = _create(client)
    hit = _create(client)
    assert hit.model_dump(exclude_unset=True) == miss.model_dump(exclude_unset=True)
    assert hit.usage.model_fields_set == miss.usage.model_fields_set
    assert hit.content[0].model_fields_set == miss.content[0].model_fields_set


# -- the stored form: the SDK's types, validated with their unions tagged --------------------------
BODIES = [
    {"content": [{"type": "text", "text": "hi"}]},
    {"content": [{"type": "thinking", "thinking": "hm", "signature": "c2ln"}]},
    {"content": [{"type": "redacted_thinking", "data": "xyz"}]},
    {"content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1]}}]},
    {
        "content": [
            {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {}},
            {"type": "text", "text": "found", "citations": None},
        ]
    },
    {"content": [], "container": {"id": "c1", "expires_at": "2026-01-01T00:00:00Z"}},
]


@pytest.mark.parametrize("changes", BODIES, ids=lambda b: "+".join(c["type"] for c in b["content"]))
def test_the_stored_form_decodes_as_the_sdk_validates(changes: Any) -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 5},
        **changes,
    }
    raw = pydantic.TypeAdapter(dict).dump_json(body)
    adapter = pydantic.TypeAdapter(stored_as(Message))
    ours, sdk = adapter.validate_json(raw), Message.model_validate_json(raw)
    assert type(ours) is Message and ours == sdk
    assert [type(b) for b in ours.content] == [type(b) for b in sdk.content]
    assert ours.model_fields_set == sdk.model_fields_set
    assert adapter.validate_json(adapter.dump_json(ours)) == ours


def test_the_stored_form_rejects_what_the_sdk_rejects() -> None:
    adapter = pydantic.TypeAdapter(stored_as(Message))
    body = (
        b'{"id":"m","type":"message","role":"assistant","model":"m","stop_reason":null,'
        b'"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1},'
        b'"content":[{"type":"no_such_block","text":"x"}]}'
    )
    with pytest.raises(pydantic.ValidationError):
        Message.model_validate_json(body)
    with pytest.raises(pydantic.ValidationError):
        adapter.validate_json(body)
    assert stored_as(Message) is stored_as(Message)  # one schema per type


# -- the key ---------------------------------------------------------------------------------------
OUTPUT_AFFECTING: list[tuple[str, Any]] = [
    ("model", "claude-haiku-4-5"),
    ("messages", [{"role": "user", "content": "Something else"}]),
    ("system", "Answer in French."),
    ("max_tokens", 7),
    ("stop_sequences", ["cache"]),
    ("tools", [WEATHER_TOOL]),
    ("tool_choice", {"type": "none"}),
    ("thinking", THINKING),
    ("output_config", {"effort": "low"}),
    ("extra_body", {"temperature": 0.7}),
    ("extra_body", {"top_k": 3}),
    ("extra_query", {"beta": "true"}),
    ("extra_headers", {"anthropic-beta": "context-1m-2025-08-07"}),
    ("extra_headers", {"Anthropic-Version": "2023-06-01"}),
]
TRANSPORT: list[tuple[str, Any]] = [
    ("timeout", 30.0),
    ("extra_headers", {"X-Trace": "abc"}),
    ("metadata", {"user_id": "alice"}),
    ("service_tier", "standard_only"),
    ("speed", "standard"),
    ("inference_geo", "us"),
    ("user_profile_id", "profile-1"),
    ("workspace_id", "wrkspc_1"),
    ("cache_control", EPHEMERAL),
    ("stop_sequences", NOT_GIVEN),
]


def _key(client: Any, **changes: Any) -> str:
    call = {"model": MODEL, "max_tokens": 256, "messages": MESSAGES, **changes}
    request = request_of(call, client.messages._state.fields)
    return str(client.messages._family.create.key(request))


@pytest.mark.parametrize(
    ("name", "value"), OUTPUT_AFFECTING, ids=[f"{n}={v}" for n, v in OUTPUT_AFFECTING]
)
def test_output_affecting_parameters_change_the_key(
    name: str, value: Any, client: Any, server: FakeAnthropicServer
) -> None:
    extra = {"max_tokens": 2048} if name == "thinking" else {}
    assert _key(client) != _key(client, **{name: value}, **extra)
    _create(client)
    _create(client, **{name: value}, **extra)
    assert server.requests == 2, f"{name} did not change the key"


@pytest.mark.parametrize(("name", "value"), TRANSPORT, ids=[n for n, _ in TRANSPORT])
def test_transport_and_billing_parameters_do_not_change_the_key(
    name: str, value: Any, client: Any, server: FakeAnthropicServer
) -> None:
    _create(client)
    hit = _create(client, **{name: value})
    assert server.requests == 1, f"{name} changed the key"
    assert _info(hit).hit


def test_a_parameter_from_the_future_is_keyed(client: Any) -> None:
    assert _key(client) != _key(client, a_parameter_from_the_future=1)


def test_client_settings_that_are_transport_do_not_change_the_key(
    client: Any, server: FakeAnthropicServer
) -> None:
    _create(client)
    other = client.with_options(api_key="another-key", timeout=5.0, max_retries=3)
    assert isinstance(other, CachedAnthropic) and isinstance(other, Anthropic)
    _create(other)
    assert server.requests == 1


def test_the_clients_feature_headers_are_keyed(
    cache: llmcache.Cache, server: FakeAnthropicServer
) -> None:
    def wrapped(**headers: str) -> Any:
        raw = Anthropic(
            base_url=server.base_url, api_key="t", max_retries=0, default_headers=headers
        )
        return cache.wrap(raw, provider="anthropic")

    _create(wrapped())
    _create(wrapped(**{"anthropic-beta": "b-1"}))
    _create(wrapped(**{"anthropic-version": "2023-06-01"}))
    assert server.requests == 3
    _create(wrapped(**{"X-Custom": "transport"}))  # other headers are transport
    assert server.requests == 3
    assert client_fields(wrapped(**{"anthropic-beta": "b-2, b-1"}).unwrapped)["anthropic-beta"] == [
        "b-1",
        "b-2",
    ]


def test_betas_and_the_beta_header_are_one_feature_set(
    cache: llmcache.Cache, server: FakeAnthropicServer
) -> None:
    raw = Anthropic(
        base_url=server.base_url,
        api_key="t",
        max_retries=0,
        default_headers={"anthropic-beta": "from-the-client"},
    )
    client = cache.wrap(raw, provider="anthropic")
    beta = client.beta.messages

    def create(**changes: Any) -> Any:
        return beta.create(model=MODEL, max_tokens=256, messages=MESSAGES, **changes)

    create(betas=["a", "b"])
    assert server.last_request_headers["anthropic-beta"] == "a,b"
    create(betas=("b", "a"))  # the same features, in another order
    create(extra_headers={"anthropic-beta": " b,a "})
    assert server.requests == 1
    create(betas=["a"])
    create(betas=["a", "b"], extra_headers={"Anthropic-Beta": "c"})  # the header wins
    assert server.last_request_headers["anthropic-beta"] == "c"
    create(betas=["c"])
    assert server.requests == 3
    create()  # the client's own default header
    create(betas=["from-the-client"])
    assert server.requests == 4
    create(extra_headers={"anthropic-beta": anthropic.Omit()})  # no beta at all
    create(betas=[])
    assert server.requests == 5


def test_a_generator_of_betas_is_read_once_for_both(
    client: Any, server: FakeAnthropicServer
) -> None:
    beta = client.beta.messages
    beta.create(model=MODEL, max_tokens=256, messages=MESSAGES, betas=(b for b in ["x", "y"]))
    assert server.last_request_headers["anthropic-beta"] == "x,y"
    beta.create(model=MODEL, max_tokens=256, messages=MESSAGES, betas=["y", "x"])
    assert server.requests == 1


def test_two_base_urls_do_not_share_entries(cache: llmcache.Cache) -> None:
    with FakeAnthropicServer() as one, FakeAnthropicServer() as two:
        first = cache.wrap(Anthropic(base_url=one.base_url, api_key="t", max_retries=0))
        second = cache.wrap(Anthropic(base_url=two.base_url, api_key="t", max_retries=0))
        for _ in range(2):
            _create(first)
            _create(second)
        assert (one.requests, two.requests) == (1, 1)


def test_setting_base_url_through_the_wrapper_rekeys(cache: llmcache.Cache) -> None:
    with FakeAnthropicServer() as one, FakeAnthropicServer() as two:
        client = cache.wrap(Anthropic(base_url=one.base_url, api_key="t", max_retries=0))
        _create(client)
        client.base_url = two.base_url
        _create(client)
        assert (one.requests, two.requests) == (1, 1)


def test_the_key_is_a_snapshot_of_the_request(client: Any, server: FakeAnthropicServer) -> None:
    messages = [dict(m) for m in MESSAGES]
    _create(client, messages=messages)
    messages.append({"role": "assistant", "content": "A cache keeps answers."})
    messages.append({"role": "user", "content": "And then?"})
    _create(client, messages=messages)
    assert server.requests == 2


def test_a_generator_of_messages_is_read_once_for_both(
    client: Any, server: FakeAnthropicServer
) -> None:
    first = _create(client, messages=(m for m in MESSAGES))
    assert server.last_request_body["messages"] == MESSAGES  # the SDK got them all
    second = _create(client, messages=iter(MESSAGES), stop_sequences=iter(["zzz"]))
    assert server.last_request_body["stop_sequences"] == ["zzz"]
    third = _create(client, messages=MESSAGES, tools=iter([WEATHER_TOOL]), system=iter([]))
    assert server.requests == 3
    assert _create(client) == first and _info(_create(client)).hit
    assert second != first and third.content


# -- cache_control markers: not keyed --------------------------------------------------------------
def _marked_text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "cache_control": EPHEMERAL}


MARKED: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "system": (
        {"system": [{"type": "text", "text": LONG_SYSTEM}]},
        {"system": [_marked_text(LONG_SYSTEM)]},
    ),
    "message": (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Why?"}]}]},
        {"messages": [{"role": "user", "content": [_marked_text("Why?")]}]},
    ),
    "tool": (
        {"tools": [WEATHER_TOOL]},
        {"tools": [{**WEATHER_TOOL, "cache_control": EPHEMERAL}]},
    ),
    "tool result": (
        {
            "messages": [
                {"role": "user", "content": "Weather in Oslo?"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [{"type": "text", "text": "sunny"}],
                        }
                    ],
                },
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "Weather in Oslo?"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [_marked_text("sunny")],
                            "cache_control": EPHEMERAL,
                        }
                    ],
                },
            ]
        },
    ),
}


@pytest.mark.parametrize("where", sorted(MARKED))
def test_cache_control_markers_do_not_change_the_key(
    where: str, client: Any, server: FakeAnthropicServer
) -> None:
    plain, marked = MARKED[where]
    first = _create(client, **plain)
    hit = _create(client, **marked)
    assert server.requests == 1
    assert _info(hit).hit and hit == first
    assert marked != plain  # the caller's arguments are left as they were
    assert "cache_control" in str(marked)


def test_two_requests_differing_in_markers_share_the_first_ones_usage(
    client: Any, server: FakeAnthropicServer
) -> None:
    writes = _create(client, system=[_marked_text(LONG_SYSTEM)])
    assert writes.usage.cache_creation_input_tokens
    hit = _create(client, system=[{"type": "text", "text": LONG_SYSTEM}])
    assert server.requests == 1
    assert hit.usage == writes.usage  # what the stored call reported, as documented


def test_only_markers_are_left_out_of_the_key(client: Any) -> None:
    with_property = {
        **WEATHER_TOOL,
        "input_schema": {"type": "object", "properties": {"cache_control": {"type": "string"}}},
    }
    without = {**WEATHER_TOOL, "input_schema": {"type": "object", "properties": {}}}
    assert _key(client, tools=[with_property]) != _key(client, tools=[without])
    use = {"type": "tool_use", "id": "t", "name": "w"}
    turns = [{"role": "assistant", "content": [{**use, "input": {"cache_control": 1}}]}]
    other = [{"role": "assistant", "content": [{**use, "input": {}}]}]
    assert _key(client, messages=turns) != _key(client, messages=other)


def test_markers_in_mappings_of_other_types_and_odd_shapes() -> None:
    from types import MappingProxyType

    fields = {"base_url": "b"}
    marked = MappingProxyType({"type": "text", "text": "x", "cache_control": EPHEMERAL})
    plain = {"type": "text", "text": "x"}
    one = request_of({"messages": [{"role": "user", "content": (marked,)}]}, fields)
    two = request_of({"messages": [{"role": "user", "content": [plain]}]}, fields)
    assert one["call"]["messages"][0]["content"] == [plain]
    assert two["call"]["messages"] == [{"role": "user", "content": [plain]}]
    odd = request_of({"messages": ["not a message", {"role": "user", "content": [1, "x"]}]}, fields)
    assert odd["call"]["messages"] == ["not a message", {"role": "user", "content": [1, "x"]}]
    assert request_of({"system": "text", "tools": {"not": "a list"}}, fields)["call"] == {
        "system": "text",
        "tools": {"not": "a list"},
    }


# -- what is never cached --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [{"container": "container_1"}, {"diagnostics": {"previous_message_id": "msg_1"}}],
    ids=["container", "diagnostics"],
)
def test_calls_naming_server_state_pass_through(
    changes: Any, client: Any, server: FakeAnthropicServer
) -> None:
    _create(client, **changes)
    _create(client, **changes)
    assert server.requests == 2
    _create(client, container=None)  # None names no state: cached
    _create(client, container=None)
    assert server.requests == 3


def test_beta_calls_naming_server_state_pass_through(
    client: Any, server: FakeAnthropicServer
) -> None:
    beta = client.beta.messages
    for _ in range(2):
        beta.create(model=MODEL, max_tokens=256, messages=MESSAGES, thread={"type": "create"})
        beta.create(
            model=MODEL,
            max_tokens=256,
            messages=MESSAGES,
            mcp_servers=[{"type": "url", "url": "https://mcp.example", "name": "m"}],
        )
    assert server.requests == 4


def test_uncacheable_calls() -> None:
    assert uncacheable({"max_tokens": 0})  # a prompt-cache warm-up
    assert request_of({"model": MODEL, "max_tokens": 0}, {}) is None
    assert request_of({"model": MODEL, "max_tokens": 0, "metadata": {}}, {}) is None
    assert request_of({"model": MODEL, "container": "c"}, {}) is None
    assert not uncacheable({"max_tokens": 1, "container": None, "thread": NOT_GIVEN})
    assert uncacheable({"output_format": dict})
    assert {"container", "mcp_servers", "thread", "diagnostics"} <= PASSED_THROUGH


def test_parse_and_structured_helpers_pass_through(
    client: Any, server: FakeAnthropicServer
) -> None:
    class Answer(pydantic.BaseModel):
        city: str

    for _ in range(2):
        client.messages.count_tokens(model=MODEL, messages=MESSAGES, output_format=Answer)
    assert server.requests == 2
    assert client.messages.parse.__self__ is client.unwrapped.messages


def test_batches_models_and_files_pass_through(
    client: Any, raw_client: Anthropic, server: FakeAnthropicServer
) -> None:
    for _ in range(2):
        assert [m.id for m in client.models.list()][:1] == ["claude-opus-4-5"]
        assert client.models.retrieve("claude-haiku-4-5").id == "claude-haiku-4-5"
    assert server.requests == 4
    assert client.messages.batches is raw_client.messages.batches
    assert client.beta.messages.batches is raw_client.beta.messages.batches
    assert client.beta.files is raw_client.beta.files
    assert client.models is raw_client.models
    assert (
        client.messages.with_raw_response.create(
            model=MODEL, max_tokens=256, messages=MESSAGES
        ).http_response.status_code
        == 200
    )
    assert server.requests == 5


def test_every_sdk_parameter_is_classified() -> None:
    """A parameter the SDK adds is keyed by default; this asks for a deliberate decision."""
    from anthropic.resources.beta.messages import AsyncMessages as AsyncBeta
    from anthropic.resources.beta.messages import Messages as Beta
    from anthropic.resources.messages import AsyncMessages, Messages

    known = INCLUDED | EXCLUDED | PASSED_THROUGH
    for resource in (Messages, AsyncMessages, Beta, AsyncBeta):
        for method in (resource.create, resource.stream, resource.count_tokens):
            names = set(inspect.signature(method).parameters) - {"self"}
            assert names <= known, f"{resource.__name__}.{method.__name__}: {names - known}"
    assert not INCLUDED & EXCLUDED and not PASSED_THROUGH & (INCLUDED | EXCLUDED)


# -- options, the disabled cache, single-flight ----------------------------------------------------
def test_options_apply(client: Any, server: FakeAnthropicServer) -> None:
    _create(client)
    with llmcache.options(bypass=True):
        bypassed = _create(client)
    assert llmcache.info(bypassed) is None or not _info(bypassed).hit
    with llmcache.options(refresh=True):
        _create(client)
    assert server.requests == 3
    with llmcache.options(no_store=True):
        _create(client, system="no store")
    with llmcache.options(sample=2):
        _create(client)
        _create(client)
    assert server.requests == 5
    with llmcache.options(namespace="other"):
        _create(client)
    with llmcache.options(max_age=1e-9):  # older than that: refreshed
        _create(client)
    with llmcache.options(ttl=60):
        _create(client, system="short-lived")
        _create(client, system="short-lived")
    assert server.requests == 8
    with llmcache.options(bypass=True):
        client.messages.count_tokens(model=MODEL, messages=MESSAGES)
        client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert server.requests == 10


def test_wrap_options(
    cache: llmcache.Cache, raw_client: Anthropic, server: FakeAnthropicServer
) -> None:
    one = cache.wrap(raw_client, namespace="team-a", version=1, ttl=60)
    two = cache.wrap(raw_client, namespace="team-a", version=2)
    _create(one)
    _create(one)
    _create(two)
    assert server.requests == 2
    with pytest.raises(TypeError, match="unexpected option"):
        cache.wrap(raw_client, namspace="typo")
    assert cache.wrap(one).unwrapped is raw_client  # a wrapped client re-wrapped


def test_a_disabled_cache_sends_every_call(server: FakeAnthropicServer, tmp_path: Path) -> None:
    with llmcache.Cache(workspace="off", tiers=["memory"], enabled=False) as cache:
        client = cache.wrap(Anthropic(base_url=server.base_url, api_key="t", max_retries=0))
        for _ in range(2):
            _create(client)
            with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as s:
                s.until_done()
        assert server.requests == 4


def test_identical_concurrent_calls_make_one_request() -> None:
    with FakeAnthropicServer(latency_per_token=0.005) as server:
        cache = llmcache.Cache(workspace="flight", tiers=["memory"])
        client = cache.wrap(Anthropic(base_url=server.base_url, api_key="k", max_retries=0))
        barrier = threading.Barrier(6)
        answers: list[Any] = []

        def ask() -> None:
            barrier.wait()
            answers.append(_create(client, messages=[{"role": "user", "content": "together"}]))

        threads = [threading.Thread(target=ask) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert server.requests == 1
        assert len(answers) == 6 and all(a == answers[0] for a in answers)
        cache.close()


async def test_identical_concurrent_tasks_make_one_request() -> None:
    with FakeAnthropicServer(latency_per_token=0.005) as server:
        cache = llmcache.Cache(workspace="flight-async", tiers=["memory"])
        async with AsyncAnthropic(base_url=server.base_url, api_key="k", max_retries=0) as raw:
            client = cache.wrap(raw)
            answers = await asyncio.gather(
                *(client.messages.count_tokens(model=MODEL, messages=MESSAGES) for _ in range(6)),
                *(_create(client) for _ in range(6)),
            )
        assert server.requests_by_path == {"/v1/messages/count_tokens": 1, "/v1/messages": 1}
        assert len({a.input_tokens for a in answers[:6]}) == 1
        cache.close()


def test_errors_reach_the_caller_and_are_not_stored(
    client: Any, server: FakeAnthropicServer
) -> None:
    server.fail_next(1, status=529)
    with pytest.raises(anthropic.APIStatusError) as failure:
        _create(client)
    assert failure.value.status_code == 529
    _create(client)
    _create(client)
    assert server.requests == 2


# -- usage, cost and llmcache.info -----------------------------------------------------------------
# Claude Sonnet 4.6's published prices, USD per million tokens.
SONNET = {
    "input": 3.00,
    "output": 15.00,
    "cache_write": 3.75,  # kept 5 minutes (the default)
    "cache_write_1h": 6.00,  # kept one hour ("ttl": "1h")
    "cache_read": 0.30,
}


def _by_hand(usage: Any) -> float:
    one_hour = usage.cache_creation.ephemeral_1h_input_tokens if usage.cache_creation else 0
    return (
        usage.input_tokens * SONNET["input"]
        + (usage.cache_creation_input_tokens - one_hour) * SONNET["cache_write"]
        + one_hour * SONNET["cache_write_1h"]
        + usage.cache_read_input_tokens * SONNET["cache_read"]
        + usage.output_tokens * SONNET["output"]
    ) / 1_000_000


def test_a_miss_with_cache_reads_and_writes_is_priced_as_published(
    cache: llmcache.Cache, client: Any, server: FakeAnthropicServer
) -> None:
    system = [_marked_text(LONG_SYSTEM)]

    def turn(question: str) -> Any:
        content = [_marked_text(question + " " + "Please explain in detail. " * 30)]
        return _create(client, system=system, messages=[{"role": "user", "content": content}])

    turn("What is a cache?")  # writes the system prompt to Anthropic's prompt cache
    miss = turn("What is a hit?")  # reads it, and writes its own question
    usage = miss.usage
    assert usage.cache_read_input_tokens > 0 and usage.cache_creation_input_tokens > 0
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    cost = _by_hand(usage)
    assert _info(miss).cost_usd == pytest.approx(cost, rel=1e-9)

    hit = turn("What is a hit?")
    assert server.requests == 2
    assert _info(hit).saved_cost_usd == pytest.approx(cost, rel=1e-9)
    totals = cache.report().totals
    total_input = (
        usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
    )
    assert totals.saved_input_tokens == total_input  # cache reads and writes included
    assert totals.saved_cache_read_tokens == usage.cache_read_input_tokens
    assert totals.saved_cache_write_tokens == usage.cache_creation_input_tokens
    assert totals.saved_usd == pytest.approx(cost, rel=1e-9)


def test_one_hour_cache_writes_are_priced_at_their_own_rate(
    cache: llmcache.Cache, client: Any, server: FakeAnthropicServer
) -> None:
    """Anthropic bills a write kept one hour at 2x the input price, a 5-minute one at 1.25x."""
    one_hour = {"type": "ephemeral", "ttl": "1h"}
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": one_hour}]

    def turn(question: str) -> Any:
        content = [_marked_text(question + " " + "Please explain in detail. " * 30)]
        return _create(client, system=system, messages=[{"role": "user", "content": content}])

    first = turn("What is a cache?")  # the system prompt written for one hour, its question 5m
    usage = first.usage
    written_1h = usage.cache_creation.ephemeral_1h_input_tokens
    assert 0 < written_1h < usage.cache_creation_input_tokens
    cost = _by_hand(usage)
    priced_as_5m = (
        usage.input_tokens * SONNET["input"]
        + usage.cache_creation_input_tokens * SONNET["cache_write"]
        + usage.output_tokens * SONNET["output"]
    ) / 1_000_000
    assert cost > priced_as_5m
    assert _info(first).cost_usd == pytest.approx(cost, rel=1e-9)
    assert _info(turn("What is a cache?")).saved_cost_usd == pytest.approx(cost, rel=1e-9)
    assert server.requests == 1


def test_usage_is_read_as_genai_prices_reads_it() -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 100,
            "cache_creation_input_tokens": 2_000,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 500,
                "ephemeral_1h_input_tokens": 1_500,
            },
            "cache_read_input_tokens": 6_000,
            "output_tokens": 50,
            "output_tokens_details": {"thinking_tokens": 20},
        },
    }
    ours = usage_of(body)
    assert ours is not None and ours == usage_of(Message.model_validate(body))
    theirs = extract_usage(body, provider_id="anthropic").usage
    assert ours.input_tokens == theirs.input_tokens == 8_100
    assert ours.cache_read_tokens == theirs.cache_read_tokens == 6_000
    assert ours.cache_write_tokens == theirs.cache_write_tokens == 2_000
    assert ours.cache_write_1h_tokens == theirs.cache_write_1h_tokens == 1_500
    assert ours.output_tokens == theirs.output_tokens == 50
    assert ours.reasoning_tokens == 20 and ours.model == MODEL and ours.provider is None


def test_usage_of_answers_only_for_anthropic_messages() -> None:
    responses_api = {"object": "response", "model": "gpt-4o", "usage": {"input_tokens": 3}}
    assert usage_of(responses_api) is None
    assert usage_of({"type": "message", "role": "user", "usage": {"input_tokens": 1}}) is None
    assert usage_of({"type": "message", "role": "assistant"}) is None
    odd = usage_of({"type": "message", "role": "assistant", "usage": {"input_tokens": "x"}})
    assert odd is not None and odd.input_tokens == 0  # counted 0, never an error
    assert count_usage(MessageTokensCount(input_tokens=9)).cost_usd == 0.0
    assert AnthropicProvider.usage_of is usage_of


def test_a_decorated_function_returning_a_message_is_priced(
    cache: llmcache.Cache, client: Any
) -> None:
    message = _create(client)

    @cache.cached(namespace="decorated")
    def ask(question: str) -> dict[str, Any]:
        return message.model_dump(mode="json")  # a dict shaped like a message

    ask("why")
    described = llmcache.last_info()
    assert described is not None and described.model == MODEL
    assert described.cost_usd is not None and described.cost_usd > 0


def test_the_price_list_follows_the_base_url(cache: llmcache.Cache, raw_client: Anthropic) -> None:
    assert provider_for_url("https://api.anthropic.com") == "anthropic"
    assert provider_for_url("http://127.0.0.1:8080/") == "127.0.0.1:8080"
    assert provider_for_url("https://openrouter.ai/api/v1") == "openrouter"
    unpriced = _create(cache.wrap(raw_client, namespace="local"))
    assert _info(unpriced).cost_usd is None  # an unknown host: unpriced, never $0
    priced = _create(cache.wrap(raw_client, namespace="named", provider="anthropic"))
    assert _info(priced).cost_usd is not None and _info(priced).cost_usd > 0


def test_count_tokens_is_free(cache: llmcache.Cache, client: Any) -> None:
    count = client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert _info(count).cost_usd == 0.0
    assert _info(client.messages.count_tokens(model=MODEL, messages=MESSAGES)).saved_cost_usd == 0


async def test_async_info_and_cost(aclient: Any) -> None:
    miss = await _create(aclient)
    hit = await _create(aclient)
    assert not _info(miss).hit and _info(hit).hit
    assert _info(hit).saved_cost_usd == pytest.approx(_by_hand(miss.usage), rel=1e-9)


# -- the wrapped client ----------------------------------------------------------------------------
def test_the_wrapped_client_looks_like_the_sdks(
    cache: llmcache.Cache, client: Any, raw_client: Anthropic
) -> None:
    assert isinstance(client, Anthropic) and isinstance(client, CachedAnthropic)
    assert AnthropicProvider.can_wrap(client) and AnthropicProvider.can_wrap(raw_client)
    assert not AnthropicProvider.can_wrap(object())
    assert client.unwrapped is raw_client and client.cache is cache
    assert "unwrapped" in dir(client) and "create" in dir(client.messages)
    assert "base_url=" in repr(client) and "llmcache cached" in repr(client.messages)
    assert client.api_key == "test"
    client.max_retries = 1
    assert raw_client.max_retries == 1
    copied = client.copy(max_retries=2)
    assert isinstance(copied, CachedAnthropic) and copied.unwrapped.max_retries == 2
    import copy

    assert copy.copy(client.messages)._inner is client.messages._inner


def test_the_sync_client_is_a_context_manager(cache: llmcache.Cache, server: Any) -> None:
    with cache.wrap(Anthropic(base_url=server.base_url, api_key="t", max_retries=0)) as client:
        _create(client)
    assert client.unwrapped.is_closed()


async def test_the_async_client_is_an_async_context_manager(
    cache: llmcache.Cache, server: Any
) -> None:
    raw = AsyncAnthropic(base_url=server.base_url, api_key="t", max_retries=0)
    async with cache.wrap(raw) as client:
        assert isinstance(client, CachedAsyncAnthropic)
        await _create(client)
    assert raw.is_closed()


def test_the_adapter_loads_without_importing_the_sdk() -> None:
    code = (
        "import sys, llmcache_anthropic as a\n"
        "assert 'anthropic' not in sys.modules\n"
        "assert not a.AnthropicProvider.can_wrap(object())\n"
        "assert a.usage_of({'type': 'message', 'role': 'assistant', "
        "'usage': {'input_tokens': 1, 'output_tokens': 2}}).output_tokens == 2\n"
        "assert 'anthropic' not in sys.modules\n"
        "assert a.CachedStream.__name__ == 'CachedStream'\n"
        "try:\n    a.nothing\nexcept AttributeError:\n    print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_provider_is_installed() -> None:
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group="llmcache.providers")}
    assert found["anthropic"] == "llmcache_anthropic:AnthropicProvider"


def test_a_missing_attribute_of_the_adapter_module() -> None:
    import llmcache_anthropic

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = llmcache_anthropic.nothing
    import copy

    assert copy.copy(CachedAnthropic.__new__(CachedAnthropic)) is not None  # no endless lookup


# -- more of the key: odd shapes, defaults of the client, async pass-through -----------------------
def test_a_marker_nested_in_a_tool_result_alone_is_left_out() -> None:
    fields = {"base_url": "b"}

    def turn(inner: dict[str, Any]) -> Any:
        result = {"type": "tool_result", "tool_use_id": "t", "content": ["raw", inner]}
        return request_of({"messages": [{"role": "user", "content": [result]}]}, fields)

    marked = turn(_marked_text("sunny"))
    assert marked == turn({"type": "text", "text": "sunny"})
    assert marked["call"]["messages"][0]["content"][0]["content"][0] == "raw"


def test_the_clients_default_query_is_keyed(
    cache: llmcache.Cache, server: FakeAnthropicServer
) -> None:
    for query in ({}, {"api-version": "2"}, {"api-version": "2"}):
        raw = Anthropic(base_url=server.base_url, api_key="t", max_retries=0, default_query=query)
        _create(cache.wrap(raw, provider="anthropic"))
    assert server.requests == 2


async def test_async_calls_naming_server_state_pass_through(
    aclient: Any, server: FakeAnthropicServer
) -> None:
    class Answer(pydantic.BaseModel):
        city: str

    for _ in range(2):
        await _create(aclient, container="container_1")
        await aclient.messages.count_tokens(model=MODEL, messages=MESSAGES, output_format=Answer)
        async with aclient.messages.stream(
            **{"model": MODEL, "max_tokens": 64}, messages=MESSAGES, output_format=Answer
        ) as stream:
            assert type(stream).__name__ == "AsyncMessageStream"
            async for _event in stream:
                break
    assert server.requests == 6


def test_a_model_without_definitions_and_labelled_unions_decode_as_validated() -> None:
    from typing import Annotated, Literal

    class First(pydantic.BaseModel):
        type: Literal["first"] = "first"
        x: int

    class Second(pydantic.BaseModel):
        type: Literal["second"]
        y: int

    class Untyped(pydantic.BaseModel):
        type: str
        z: int

    class Holder(pydantic.BaseModel):
        item: First | Second
        labelled: Annotated[First, pydantic.Tag("a")] | Annotated[Second, pydantic.Tag("b")]
        loose: First | Untyped
        plain: int | str

    adapter = pydantic.TypeAdapter(stored_as(Holder))
    body = (
        b'{"item":{"type":"second","y":2},"labelled":{"x":1},'
        b'"loose":{"type":"third","z":3},"plain":"7"}'
    )
    ours, theirs = adapter.validate_json(body), Holder.model_validate_json(body)
    assert type(ours) is Holder and ours == theirs
    assert ours.model_fields_set == theirs.model_fields_set
    with pytest.raises(pydantic.ValidationError):
        adapter.validate_json(b'{"item":{"type":"third"},"labelled":{"x":1},"loose":{},"plain":1}')


def test_an_unavailable_price_list_leaves_other_hosts_unpriced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from genai_prices import data_snapshot
    from llmcache_anthropic import _usage

    def broken() -> Any:
        raise RuntimeError("no price data")

    monkeypatch.setattr(data_snapshot, "get_snapshot", broken)
    _usage._matched_provider.cache_clear()
    try:
        assert provider_for_url("https://gateway.example/v1") == "gateway.example"
        assert provider_for_url("https://api.anthropic.com") == "anthropic"
    finally:
        _usage._matched_provider.cache_clear()


# -- the demo: llmcache demo --provider anthropic --------------------------------------------------
@pytest.fixture
def demo_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No API settings of the machine's: the demo would call that API."""
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "LLMCACHE_DEBUG",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return monkeypatch


def _cli_demo(tmp_path: Path, *options: str, requests: int = 16) -> tuple[int, str, str]:
    """`llmcache demo ...` through the script's `main()`, inside CliRunner's isolation (its
    stdout and stderr, restored after): (exit code, out, err)."""
    from typer.testing import CliRunner

    from llmcache import _cli

    args = ["demo", "--requests", str(requests), "--concurrency", "4", *options]
    args += ["--dir", str(tmp_path / "demo"), "--html", str(tmp_path / "demo.html")]
    code: Any = 0
    with CliRunner().isolation(env={"COLUMNS": "200"}) as (out, err, _):
        argv, sys.argv = sys.argv, ["llmcache", *args]
        try:
            _cli.main()
        except SystemExit as exit_:
            code = exit_.code
        finally:
            sys.argv = argv
            sys.stdout.flush()
            sys.stderr.flush()
        shown, failed = out.getvalue().decode(), err.getvalue().decode()
    return (code if isinstance(code, int) else 1), shown, failed


def _port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_anthropic_demo_runs_twice_and_reruns_from_disk(demo_env: Any, tmp_path: Path) -> None:
    from llmcache import _demo

    if not _port_is_free(_demo.ANTHROPIC_DEMO_PORT):
        pytest.skip(f"port {_demo.ANTHROPIC_DEMO_PORT} is taken by another program")
    code, first, err = _cli_demo(tmp_path, "--provider", "anthropic")
    assert code == 0, err
    url = f"http://127.0.0.1:{_demo.ANTHROPIC_DEMO_PORT}"
    assert f"local Anthropic-compatible server at {url}" in first
    assert "run `llmcache demo --provider anthropic` again" in first
    assert "claude-haiku-4-5" in first and "claude-sonnet-4-6" in first
    assert "of which cache r/w" in first  # Anthropic's prompt cache, used and priced
    code, second, err = _cli_demo(tmp_path, "--provider", "anthropic")
    assert code == 0, err
    assert "0 real calls" in second and "16 of 16 responses were stored by an earlier run" in second


def test_the_demo_with_both_providers_reports_them_side_by_side(
    demo_env: Any, tmp_path: Path
) -> None:
    from llmcache import _demo

    if not (_port_is_free(_demo.DEMO_PORT) and _port_is_free(_demo.ANTHROPIC_DEMO_PORT)):
        pytest.skip("a demo port is taken by another program")
    code, shown, err = _cli_demo(tmp_path, "--provider", "both", requests=40)
    assert code == 0, err
    assert "local OpenAI-compatible server" in shown and "local Anthropic-compatible" in shown
    for model in ("gpt-4o-mini", "gpt-4.1-mini", "claude-haiku-4-5", "claude-sonnet-4-6"):
        assert model in shown
    page = (tmp_path / "demo.html").read_text()
    assert "claude-sonnet-4-6" in page and "gpt-4o-mini" in page


def test_the_anthropic_demo_on_a_busy_port_uses_another(demo_env: Any, tmp_path: Path) -> None:
    import socket

    from llmcache import _demo

    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("127.0.0.1", _demo.ANTHROPIC_DEMO_PORT))
            taken.listen()
        except OSError:
            pass  # another program listens there: busy all the same
        code, shown, err = _cli_demo(tmp_path, "--provider", "anthropic", requests=4)
    assert code == 0, err
    assert f"port {_demo.ANTHROPIC_DEMO_PORT} is busy: using another" in shown


def test_the_anthropic_demo_uses_the_api_the_environment_names(
    demo_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with FakeAnthropicServer(api_key="sk-ant-test") as server:
        demo_env.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        demo_env.setenv("ANTHROPIC_BASE_URL", server.base_url)
        code, shown, err = _cli_demo(tmp_path, "--provider", "anthropic", requests=6)
        requests, url = server.requests, server.base_url
    assert code == 0, err
    assert f"the Anthropic-compatible API at {url} (ANTHROPIC_API_KEY is set)" in shown
    assert 1 <= requests <= 6


def test_the_anthropic_demo_with_a_rejected_key_stops_after_one_request(
    demo_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with FakeAnthropicServer(api_key="sk-ant-right") as server:
        demo_env.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong")
        demo_env.setenv("ANTHROPIC_BASE_URL", server.base_url)
        code, _, err = _cli_demo(tmp_path, "--provider", "anthropic")
        requests = server.requests
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "answered 401 authentication_error: invalid x-api-key" in err
    assert "check ANTHROPIC_API_KEY, or unset ANTHROPIC_API_KEY" in err
    assert requests == 1


def test_the_anthropic_demo_names_a_refusal_that_is_not_about_the_key(
    demo_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with FakeAnthropicServer() as server:
        server.fail_next(10_000, status=429)
        demo_env.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        demo_env.setenv("ANTHROPIC_BASE_URL", server.base_url)
        code, _, err = _cli_demo(tmp_path, "--provider", "anthropic")
    assert code == 2
    assert "answered 429 rate_limit_error" in err and "see the message" in err


def test_the_anthropic_demo_against_a_dead_url_is_one_line(
    demo_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        demo_env.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        demo_env.setenv("ANTHROPIC_BASE_URL", url)
        demo_env.setenv("ANTHROPIC_MAX_RETRIES", "0")
        code, _, err = _cli_demo(tmp_path, "--provider", "anthropic")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"cannot reach the Anthropic-compatible API at {url}" in err
    assert "check ANTHROPIC_BASE_URL" in err


def test_the_demo_names_its_providers(demo_env: Any, tmp_path: Path) -> None:
    from llmcache import _demo

    code, _, err = _cli_demo(tmp_path, "--provider", "gemini")
    assert code == 2 and "--provider must be one of openai, anthropic, both" in err
    with pytest.raises(ValueError, match="provider must be one of"):
        _demo.run_demo(provider="gemini", directory=tmp_path)
    failed = _demo._failure(RuntimeError("odd"), "the API", "anthropic")
    assert str(failed) == "the API failed: RuntimeError: odd"
