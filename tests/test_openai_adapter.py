"""The OpenAI adapter, through the real `openai` SDK talking HTTP to a loopback server."""

from __future__ import annotations

import inspect
from typing import Any

import openai
import pydantic
import pytest
from llmcache_openai import EXCLUDED, INCLUDED, CachedOpenAI
from llmcache_openai._keys import PASSED_THROUGH, request_of
from openai import AsyncOpenAI, OpenAI
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ParsedChatCompletion
from openai.types.responses import Response

import llmcache
from llmcache.testing import FakeOpenAIServer
from tests.openai_data import MESSAGES, MODEL, WEATHER_TOOL, user

pytest_plugins = ["tests.openai_fixtures"]  # server, cache, client, aclient, raw_client


class Answer(pydantic.BaseModel):
    city: str
    degrees: int


class GetWeather(pydantic.BaseModel):
    city: str
    days: int


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json", warnings=False)


# -- the basics: a second identical call reaches no server --------------------------------------
CALLS: dict[str, Any] = {
    "chat": lambda c: c.chat.completions.create(model=MODEL, messages=MESSAGES),
    "parse": lambda c: c.chat.completions.parse(
        model=MODEL, messages=MESSAGES, response_format=Answer
    ),
    "responses": lambda c: c.responses.create(model=MODEL, input="What does a cache do?"),
    "embeddings": lambda c: c.embeddings.create(model="text-embedding-3-small", input="cache"),
}
TYPES = {
    "chat": ChatCompletion,
    "parse": ParsedChatCompletion,
    "responses": Response,
    "embeddings": CreateEmbeddingResponse,
}


@pytest.mark.parametrize("endpoint", sorted(CALLS))
def test_second_identical_call_reaches_no_server(
    endpoint: str, client: Any, server: FakeOpenAIServer
) -> None:
    first = CALLS[endpoint](client)
    assert server.requests == 1
    second = CALLS[endpoint](client)
    assert server.requests == 1
    assert isinstance(second, TYPES[endpoint])
    assert type(second) is type(first)
    assert _dump(second) == _dump(first)
    assert second is not first


@pytest.mark.parametrize("endpoint", sorted(CALLS))
async def test_async_hits_return_the_same_types(
    endpoint: str, aclient: Any, server: FakeOpenAIServer
) -> None:
    first = await CALLS[endpoint](aclient)
    second = await CALLS[endpoint](aclient)
    assert server.requests == 1
    assert type(second) is type(first)
    assert isinstance(second, TYPES[endpoint])
    assert _dump(second) == _dump(first)


def test_sync_and_async_clients_share_entries(
    cache: llmcache.Cache, client: Any, server: FakeOpenAIServer
) -> None:
    import asyncio

    CALLS["chat"](client)

    async def call_async() -> Any:
        async with AsyncOpenAI(base_url=server.base_url, api_key="t", max_retries=0) as raw:
            return await CALLS["chat"](cache.wrap(raw))

    hit = asyncio.run(call_async())
    assert server.requests == 1
    assert llmcache.info(hit) is not None and llmcache.info(hit).hit  # type: ignore[union-attr]


# -- faithful values ------------------------------------------------------------------------
def test_tool_calls_logprobs_and_usage_survive_a_hit(client: Any, server: FakeOpenAIServer) -> None:
    call = dict(model=MODEL, messages=MESSAGES, tools=[WEATHER_TOOL])
    miss = client.chat.completions.create(**call)
    hit = client.chat.completions.create(**call)
    assert server.requests == 1
    calls = hit.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == miss.choices[0].message.tool_calls[0].function.arguments
    assert hit.choices[0].finish_reason == "tool_calls"

    with_logprobs = dict(model=MODEL, messages=MESSAGES, logprobs=True, top_logprobs=2)
    miss = client.chat.completions.create(**with_logprobs)
    hit = client.chat.completions.create(**with_logprobs)
    assert hit.choices[0].logprobs.content[0].top_logprobs == (
        miss.choices[0].logprobs.content[0].top_logprobs
    )
    assert hit.usage == miss.usage and hit.usage.prompt_tokens > 0


def test_refusals_survive_a_hit(client: Any, server: FakeOpenAIServer) -> None:
    miss = client.chat.completions.create(model=MODEL, messages=user("REFUSE this"))
    hit = client.chat.completions.create(model=MODEL, messages=user("REFUSE this"))
    assert server.requests == 1
    assert hit.choices[0].message.refusal == miss.choices[0].message.refusal
    assert hit.choices[0].message.refusal


def test_each_hit_is_an_independent_object(client: Any) -> None:
    first = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    first.choices[0].message.content = "poisoned"
    second = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    second.choices[0].message.content = "poisoned again"
    third = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert third.choices[0].message.content not in ("poisoned", "poisoned again")


def test_parse_hit_returns_the_callers_model(client: Any, server: FakeOpenAIServer) -> None:
    miss = CALLS["parse"](client)
    hit = CALLS["parse"](client)
    assert server.requests == 1
    parsed = hit.choices[0].message.parsed
    assert isinstance(parsed, Answer)
    assert parsed == miss.choices[0].message.parsed
    assert llmcache.info(hit).hit  # type: ignore[union-attr]
    assert not llmcache.info(miss).hit  # type: ignore[union-attr]


def test_parse_hit_parses_pydantic_tool_arguments(client: Any, server: FakeOpenAIServer) -> None:
    call = dict(model=MODEL, messages=MESSAGES, tools=[openai.pydantic_function_tool(GetWeather)])
    miss = client.chat.completions.parse(**call)
    hit = client.chat.completions.parse(**call)
    assert server.requests == 1
    arguments = hit.choices[0].message.tool_calls[0].function.parsed_arguments
    assert isinstance(arguments, GetWeather)
    assert arguments == miss.choices[0].message.tool_calls[0].function.parsed_arguments


def test_parse_with_another_model_is_another_entry(client: Any, server: FakeOpenAIServer) -> None:
    class Other(pydantic.BaseModel):
        city: str
        degrees: int
        note: str

    CALLS["parse"](client)
    other = client.chat.completions.parse(model=MODEL, messages=MESSAGES, response_format=Other)
    assert server.requests == 2
    assert isinstance(other.choices[0].message.parsed, Other)


def test_parse_and_create_do_not_mix(client: Any, server: FakeOpenAIServer) -> None:
    created = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    parsed = client.chat.completions.parse(model=MODEL, messages=MESSAGES)
    assert server.requests == 2
    assert type(created) is ChatCompletion and isinstance(parsed, ParsedChatCompletion)


# -- the key ------------------------------------------------------------------------------------
OUTPUT_AFFECTING: list[tuple[str, Any]] = [
    ("model", "gpt-4o"),
    ("messages", user("Something else")),
    ("temperature", 0.7),
    ("top_p", 0.5),
    ("n", 2),
    ("seed", 7),
    ("max_tokens", 5),
    ("max_completion_tokens", 5),
    ("stop", ["\n"]),
    ("presence_penalty", 0.5),
    ("frequency_penalty", 0.5),
    ("logit_bias", {"50256": -100}),
    ("logprobs", True),
    ("tools", [WEATHER_TOOL]),
    ("tool_choice", "none"),
    ("parallel_tool_calls", False),
    ("response_format", {"type": "json_object"}),
    ("reasoning_effort", "low"),
    ("modalities", ["text"]),
    ("prediction", {"type": "content", "content": "a cache"}),
    ("verbosity", "low"),
    ("extra_body", {"top_k": 3}),
    ("extra_query", {"api-version": "2"}),
    ("a_parameter_from_the_future", 1),
]
TRANSPORT: list[tuple[str, Any]] = [
    ("timeout", 30.0),
    ("extra_headers", {"X-Trace": "abc"}),
    ("user", "alice"),
    ("safety_identifier", "user-42"),
    ("metadata", {"run": "1"}),
    ("store", True),
    ("prompt_cache_key", "shared-prefix"),
    ("prompt_cache_retention", "24h"),
    ("service_tier", "flex"),
]


def _create(client: Any, **changes: Any) -> Any:
    call: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, **changes}
    future = {k: call.pop(k) for k in list(call) if k == "a_parameter_from_the_future"}
    if future:  # the SDK has no such keyword yet: it would arrive through extra_body
        return client.chat.completions._sites.chat.key(
            request_of({**call, **future}, client.chat.completions._state.fields)
        )
    return client.chat.completions.create(**call)


@pytest.mark.parametrize(("name", "value"), OUTPUT_AFFECTING, ids=[p for p, _ in OUTPUT_AFFECTING])
def test_output_affecting_parameters_change_the_key(
    name: str, value: Any, client: Any, server: FakeOpenAIServer
) -> None:
    site = client.chat.completions._sites.chat
    fields = client.chat.completions._state.fields
    base = {"model": MODEL, "messages": MESSAGES}
    changed = {**base, name: value}
    assert site.key(request_of(base, fields)) != site.key(request_of(changed, fields))
    if name == "a_parameter_from_the_future":
        return
    _create(client)
    _create(client, **{name: value})
    assert server.requests == 2, f"{name} did not change the key"


@pytest.mark.parametrize(("name", "value"), TRANSPORT, ids=[p for p, _ in TRANSPORT])
def test_transport_parameters_do_not_change_the_key(
    name: str, value: Any, client: Any, server: FakeOpenAIServer
) -> None:
    _create(client)
    hit = _create(client, **{name: value})
    assert server.requests == 1, f"{name} changed the key"
    assert llmcache.info(hit).hit  # type: ignore[union-attr]


def test_client_settings_that_are_transport_do_not_change_the_key(
    client: Any, server: FakeOpenAIServer
) -> None:
    _create(client)
    other = client.with_options(api_key="another-key", timeout=5.0, max_retries=3)
    assert isinstance(other, CachedOpenAI) and isinstance(other, OpenAI)
    _create(other)
    assert server.requests == 1


def test_two_base_urls_do_not_share_entries(cache: llmcache.Cache) -> None:
    with FakeOpenAIServer() as one, FakeOpenAIServer() as two:
        first = cache.wrap(OpenAI(base_url=one.base_url, api_key="t", max_retries=0))
        second = cache.wrap(OpenAI(base_url=two.base_url, api_key="t", max_retries=0))
        _create(first)
        _create(second)
        _create(first)
        _create(second)
        assert (one.requests, two.requests) == (1, 1)


def test_setting_base_url_through_the_wrapper_rekeys(cache: llmcache.Cache) -> None:
    with FakeOpenAIServer() as one, FakeOpenAIServer() as two:
        client = cache.wrap(OpenAI(base_url=one.base_url, api_key="t", max_retries=0))
        _create(client)
        client.base_url = two.base_url
        _create(client)
        assert (one.requests, two.requests) == (1, 1)


def test_the_key_is_a_snapshot_of_the_request(client: Any, server: FakeOpenAIServer) -> None:
    messages = [dict(m) for m in MESSAGES]
    client.chat.completions.create(model=MODEL, messages=messages)
    messages.append({"role": "user", "content": "and one more thing"})
    client.chat.completions.create(model=MODEL, messages=messages)
    assert server.requests == 2


def test_previous_messages_as_sdk_objects_are_keyed(client: Any, server: FakeOpenAIServer) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    follow_up = [*MESSAGES, answer.choices[0].message, {"role": "user", "content": "why?"}]
    client.chat.completions.create(model=MODEL, messages=follow_up)
    client.chat.completions.create(model=MODEL, messages=follow_up)
    assert server.requests == 2


def test_every_sdk_parameter_is_classified() -> None:
    """A parameter the SDK adds is keyed by default; this asks for a deliberate decision."""
    endpoints = [
        openai.resources.chat.Completions.create,
        openai.resources.chat.Completions.parse,
        openai.resources.responses.Responses.create,
        openai.resources.Embeddings.create,
    ]
    classified = INCLUDED | EXCLUDED | PASSED_THROUGH
    assert not INCLUDED & EXCLUDED
    for endpoint in endpoints:
        names = set(inspect.signature(endpoint).parameters) - {"self"}
        assert not names - classified, f"{endpoint.__qualname__}: classify {names - classified}"


def test_unknown_parameters_are_keyed() -> None:
    request = request_of({"model": MODEL, "brand_new": 1, "timeout": 3}, {"base_url": "u"})
    assert request == {"model": MODEL, "brand_new": 1, "base_url": "u"}
    assert request_of({"seed": openai.omit, "n": openai.NOT_GIVEN}, {}) == {}


# -- nondeterminism -----------------------------------------------------------------------------
def test_sampling_calls_are_cached_by_default(client: Any, server: FakeOpenAIServer) -> None:
    for _ in range(2):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=1.2, n=3)
    assert server.requests == 1


def test_sample_enters_the_key_and_is_never_sent(client: Any, server: FakeOpenAIServer) -> None:
    call = dict(model=MODEL, messages=MESSAGES, temperature=1.0)
    client.chat.completions.create(**call)
    with llmcache.options(sample=1):
        first = client.chat.completions.create(**call)
        assert server.requests == 2
        assert "sample" not in str(server.last_request_body)
        assert server.last_request_body == {**call, "messages": MESSAGES}
        again = client.chat.completions.create(**call)
    with llmcache.options(sample=2):
        client.chat.completions.create(**call)
    assert server.requests == 3
    assert _dump(again) == _dump(first)


def test_options_refresh_bypass_and_namespace(client: Any, server: FakeOpenAIServer) -> None:
    _create(client)
    with llmcache.options(refresh=True):
        fresh = _create(client)
    assert server.requests == 2 and not llmcache.info(fresh).hit  # type: ignore[union-attr]
    with llmcache.options(bypass=True):
        _create(client)
    assert server.requests == 3
    with llmcache.options(namespace="elsewhere"):
        _create(client)
        _create(client)
    assert server.requests == 4


# -- llmcache.info ------------------------------------------------------------------------------
def test_info_on_misses_and_hits(client: Any, server: FakeOpenAIServer) -> None:
    miss = _create(client)
    hit = _create(client)
    miss_info, hit_info = llmcache.info(miss), llmcache.info(hit)
    assert miss_info is not None and hit_info is not None
    assert not miss_info.hit and miss_info.tier is None and miss_info.saved_cost_usd == 0
    assert hit_info.hit and hit_info.tier == "memory"
    assert hit_info.key == miss_info.key and hit_info.key.startswith("llmc:adapter#")
    assert hit_info.model == MODEL
    assert hit_info.cost_usd is not None and hit_info.cost_usd > 0
    assert hit_info.saved_cost_usd == hit_info.cost_usd == miss_info.cost_usd
    assert hit_info.saved_time_s is not None and hit_info.saved_time_s > 0
    assert hit_info.age_s is not None and hit_info.age_s >= 0
    # The response's schema is untouched: nothing added to the object or its JSON.
    assert type(hit) is ChatCompletion and hit.model_extra == {}
    assert hit.model_dump() == miss.model_dump()


def test_info_from_a_lower_tier(cache: llmcache.Cache, client: Any) -> None:
    _create(client)
    assert cache.memory is not None
    cache.memory.clear()
    hit = _create(client)
    assert llmcache.info(hit).tier == cache._tiers[0].name  # type: ignore[union-attr]


def test_unknown_model_cost_is_unknown_not_zero(client: Any) -> None:
    _create(client, model="my-local-model")
    hit = _create(client, model="my-local-model")
    found = llmcache.info(hit)
    assert found is not None and found.hit
    assert found.cost_usd is None and found.saved_cost_usd is None


# -- pass-through -------------------------------------------------------------------------------
def test_everything_else_passes_through(client: Any, server: FakeOpenAIServer) -> None:
    assert [m.id for m in client.models.list()]
    client.models.list()
    assert server.requests == 2
    assert client.api_key == "test"
    assert client.unwrapped.chat.completions is client.chat.completions._inner


def test_background_and_conversation_calls_are_not_cached(
    client: Any, server: FakeOpenAIServer
) -> None:
    for _ in range(2):
        client.responses.create(model=MODEL, input="hi", background=True)
    for _ in range(2):
        client.responses.create(model=MODEL, input="hi", conversation="conv_123")
    assert server.requests == 4


def test_wrapping_twice_wraps_the_sdk_client(cache: llmcache.Cache, client: Any) -> None:
    again = cache.wrap(client)
    assert again.unwrapped is client.unwrapped


def test_wrap_rejects_unknown_options(cache: llmcache.Cache, raw_client: OpenAI) -> None:
    with pytest.raises(TypeError, match="namespace"):
        cache.wrap(raw_client, nampsace="typo")


def test_wrap_options_namespace_and_version(
    cache: llmcache.Cache, raw_client: OpenAI, server: FakeOpenAIServer
) -> None:
    research = cache.wrap(raw_client, namespace="research")
    _create(research)
    hit = _create(research)
    assert llmcache.info(hit).namespace == "research"  # type: ignore[union-attr]
    _create(cache.wrap(raw_client, namespace="research", version=2))
    assert server.requests == 2


def test_errors_are_raised_and_not_cached(client: Any, server: FakeOpenAIServer) -> None:
    server.fail_next(1, status=500)
    with pytest.raises(openai.InternalServerError):
        _create(client)
    _create(client)
    _create(client)
    assert server.requests == 2
