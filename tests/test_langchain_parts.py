"""The parts of the LangChain integration: its fast decoder's templates, the model and price
list read from an `llm_string`, the usage read from generations, and the latency it records."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation
from llmcache_langchain import LangChainCache, _cache, _codec
from llmcache_langchain._usage import model_and_provider, usage_of
from pydantic import PrivateAttr

import llmcache


class WithPrivate(Generation):
    _secret: str = PrivateAttr(default="hidden")


class WithTextMessage(Generation):
    message: str = "not a model"


class Opaque:
    pass


def test_a_template_is_refused_when_it_cannot_copy_or_its_copy_could_differ() -> None:
    assert _codec._template(["not a generation"]) is None
    stamp = datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)  # fresh_copy does not copy it
    assert _codec._template([Generation(text="t", generation_info={"at": stamp})]) is None
    assert _codec._template([Generation(text="t", generation_info={"n": Opaque()})]) is None


@pytest.mark.parametrize(
    "generation",
    [
        WithPrivate(text="x"),
        WithTextMessage(text="x"),
        ChatGeneration(message=AIMessage(content="x", custom_field={"a": [1]})),  # an extra
        Generation(text="t", generation_info={"pair": (1, [2])}),
        ChatGeneration(
            message=AIMessage(
                content=[{"type": "text", "text": "hi"}],
                tool_calls=[{"name": "f", "args": {"q": [1]}, "id": "c1"}],
                usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
            )
        ),
    ],
    ids=["private", "str-message", "extra", "tuple", "tool-call"],
)
def test_a_template_copies_everything_and_shares_nothing_mutable(generation: Any) -> None:
    build = _codec._template([generation])
    assert build is not None
    first, second = build(), build()
    assert first == second == [generation]
    assert first[0].__pydantic_private__ == generation.__pydantic_private__
    assert first[0].__pydantic_extra__ == generation.__pydantic_extra__

    def containers(value: Any) -> list[Any]:
        found = []
        if isinstance(value, dict | list | set) or hasattr(value, "__dict__"):
            found.append(value)
        state = getattr(value, "__dict__", None)
        items = state.values() if state is not None else ()
        if isinstance(value, dict):
            items = value.values()
        elif isinstance(value, list | tuple):
            items = value
        for item in items:
            found += containers(item)
        return found

    # No dict, list, set or object is shared between two hits: mutating one leaves the other.
    assert not {id(c) for c in containers(first)} & {id(c) for c in containers(second)}


def test_decode_builds_a_template_once_and_memory_stays_bounded(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    kept = dict(_codec.templates)
    _codec.templates.clear()  # in place: the adapter holds this very dict
    request.addfinalizer(lambda: (_codec.templates.clear(), _codec.templates.update(kept)))
    monkeypatch.setattr(_codec, "_template_chars", 0)
    monkeypatch.setattr(_codec, "MAX_TEMPLATES", 2)
    texts = [_codec.encode([Generation(text=f"answer {i}")]) for i in range(3)]
    assert all(texts) and len(_codec.templates) == 2
    assert texts[0] not in _codec.templates  # the oldest went first
    first = _codec.decode(texts[0])  # a text this process has not decoded: the slow path
    assert first == [Generation(text="answer 0")] and texts[0] in _codec.templates
    again = _codec.decode(texts[0])
    assert again == first and again is not first and again[0] is not first[0]
    _codec._remember(texts[0], lambda: [])  # already known: kept as it was
    assert _codec.decode(texts[0]) == first


def test_generations_that_change_through_dumps_and_loads_are_not_encoded() -> None:
    assert _codec.encode([Generation(text="t", generation_info={"pair": (1, 2)})]) is None


@pytest.mark.parametrize(
    ("llm_string", "provider", "expected"),
    [
        (
            '{"id": ["langchain", "chat_models", "openai", "ChatOpenAI"], '
            '"kwargs": {"model_name": "gpt-4o"}}---[("stop", None)]',
            None,
            ("gpt-4o", "openai"),
        ),
        (
            '{"id": ["langchain", "chat_models", "anthropic", "ChatAnthropic"], '
            '"kwargs": {"model": "claude-sonnet-4-6", '
            '"anthropic_api_url": "https://api.anthropic.com"}}---[]',
            None,
            ("claude-sonnet-4-6", "anthropic"),
        ),
        (
            '{"id": ["langchain", "chat_models", "openai", "ChatOpenAI"], '
            '"kwargs": {"model_name": "gpt-4o", "openai_api_base": "http://127.0.0.1:9/v1"}}',
            None,
            ("gpt-4o", "127.0.0.1:9"),
        ),
        (
            '{"id": ["x", "y", "openai", "ChatOpenAI"], "kwargs": {"model": "m"}}',
            "azure",
            ("m", "azure"),
        ),
        ('{"id": ["some", "other", "vendor", "Chat"], "kwargs": []}', None, (None, None)),
        ("[('model', 'local-llm'), ('temperature', 0.1)]", None, ("local-llm", None)),
        (
            '{"id": ["langchain", "chat_models", "azure_openai", "AzureChatOpenAI"], '
            '"kwargs": {"deployment_name": "my-deployment"}}',
            None,
            (None, "azure"),
        ),
        ("{not json", "openai", (None, "openai")),
        ('["a list"]', None, (None, None)),
        ("plain text", None, (None, None)),
    ],
)
def test_the_model_and_price_list_come_from_the_llm_string(
    llm_string: str, provider: str | None, expected: tuple[Any, Any]
) -> None:
    assert model_and_provider(llm_string, provider) == expected


def test_usage_is_read_from_the_first_message_that_reports_one() -> None:
    message = AIMessage(
        content="x",
        response_metadata={"model_name": "gpt-4o-2024-08-06"},
        usage_metadata={
            "input_tokens": 100,
            "output_tokens": 20,
            "total_tokens": 120,
            "input_token_details": {
                "cache_read": 30,
                "cache_creation": 0,
                "ephemeral_5m_input_tokens": 10,
                "ephemeral_1h_input_tokens": 5,
            },
            "output_token_details": {"reasoning": 7},
        },
    )
    usage = usage_of([Generation(text="no usage"), ChatGeneration(message=message)], None, "p")
    assert usage is not None
    assert (usage.model, usage.provider) == ("gpt-4o-2024-08-06", "p")
    assert (usage.input_tokens, usage.output_tokens) == (100, 20)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (30, 15)
    assert (usage.cache_write_1h_tokens, usage.reasoning_tokens) == (5, 7)
    assert usage_of([Generation(text="none")], "m", None) is None


def test_an_update_without_a_lookup_records_no_latency_and_odd_usage_is_unpriced(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = llmcache.Cache(workspace="parts", tiers=["memory"])
    ours = LangChainCache(cache)
    llm_string = '{"id": ["a", "b", "c", "D"], "kwargs": {"model": "house-model"}}'
    ours.update("p", llm_string, [Generation(text="no usage")])
    assert ours._latency("p", llm_string) == 0.0
    (row,) = cache.report().rows
    # No usage reported: the call is counted under its model, with no tokens and no price.
    assert row.group["model"] == "house-model" and (row.calls, row.input_tokens) == (1, 0)

    def broken(*args: Any) -> None:
        raise RuntimeError("usage")

    monkeypatch.setattr(_cache, "usage_of", broken)
    ours.update("q", llm_string, [Generation(text="still stored")])
    assert ours.lookup("q", llm_string) == [Generation(text="still stored")]

    def fails(*args: Any) -> None:
        raise ValueError("no JSON for you")

    monkeypatch.setattr(_cache, "encode", fails)
    with caplog.at_level(logging.WARNING, logger="llmcache"):
        ours.update("r", llm_string, [Generation(text="lost")])
    assert ours.lookup("r", llm_string) is None and "no JSON for you" in caplog.text


def test_lookup_misses_waiting_for_an_update_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cache, "MAX_PENDING", 3)
    ours = LangChainCache(llmcache.Cache(workspace="pending", tiers=["memory"]))
    for i in range(5):
        assert ours.lookup(f"prompt {i}", "m") is None
    assert ours.lookup("prompt 4", "m") is None
    key = hash(("prompt 4", "m"))
    assert len(ours._pending) == 3 and len(ours._pending[key]) == 2
    assert ours._latency("prompt 4", "m") >= ours._latency("prompt 4", "m") >= 0.0
    assert key not in ours._pending


def test_key_tokens_are_kept_for_repeated_lookups_bounded_and_never_outlive_a_clear(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_cache, "MAX_TOKENS", 3)
    monkeypatch.setattr(_cache, "MAX_TOKEN_CHARS", 16 * 200)
    ours = LangChainCache(llmcache.Cache(workspace="tokens", tiers=["memory"]))
    answer = [Generation(text="stored")]
    ours.update("p0", "m", answer)
    assert ours.lookup("p0", "m") == answer  # loads the namespace: later lookups keep tokens
    for i in range(5):
        assert ours.lookup(f"p{i}", "m") == (answer if i == 0 else None)
    assert list(ours._tokens) == [("p2", "m"), ("p3", "m"), ("p4", "m")]  # oldest out first
    assert ours._token_chars == sum(len(p) + len(m) for p, m in ours._tokens)
    assert ours.lookup("x" * 201, "m") is None  # too large to hold: keyed each time
    assert ("x" * 201, "m") not in ours._tokens
    ours.lookup("y" * 150, "m")
    ours.lookup("z" * 150, "m")  # over the character bound: older tokens go
    assert ours._token_chars <= 16 * 200 and ("z" * 150, "m") in ours._tokens
    ours.update("z" * 150, "m", answer)
    assert ours.lookup("z" * 150, "m") == answer  # through the kept token
    ours.clear()
    assert ours.lookup("z" * 150, "m") is None  # the token is stale: keyed anew, a miss


def test_async_lookups_keep_and_use_key_tokens_too() -> None:
    import asyncio

    ours = LangChainCache(llmcache.Cache(workspace="atokens", tiers=["memory"]))
    answer = [Generation(text="stored")]

    async def run() -> list[Any]:
        await ours.aupdate("p", "m", answer)
        first = await ours.alookup("p", "m")
        second = await ours.alookup("p", "m")  # through the token the first one kept
        await ours.aclear()
        return [first, second, ("p", "m") in ours._tokens, await ours.alookup("p", "m")]

    first, second, kept, after_clear = asyncio.run(run())
    assert first == second == answer and first is not second and kept
    assert after_clear is None  # the kept token is stale after the clear: a miss
