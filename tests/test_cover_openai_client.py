"""The wrapped OpenAI clients behave as the SDK clients they wrap: attributes, copies,
context managers, settings that are part of every key, and what they add (`cache`,
`unwrapped`)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from openai import AsyncOpenAI, OpenAI

import llmcache
from llmcache.testing import FakeOpenAIServer
from tests.openai_data import MESSAGES, MODEL

pytest_plugins = ["tests.openai_fixtures"]  # server, cache, client, aclient, raw_client


def unwrapped_of(client: Any) -> Any:
    return client.unwrapped


def ask(client: Any) -> Any:
    return client.chat.completions.create(model=MODEL, messages=MESSAGES)


def test_the_wrapped_client_names_its_cache_and_what_it_wraps(
    client: Any, cache: llmcache.Cache, raw_client: OpenAI
) -> None:
    assert client.cache is cache
    assert client.unwrapped is raw_client
    assert isinstance(client, OpenAI)
    assert "unwrapped" in dir(client) and "cache" in dir(client) and "models" in dir(client)
    assert repr(client).startswith("<llmcache cached OpenAI base_url=http://127.0.0.1:")


def test_sdk_attributes_read_and_write_through(client: Any, raw_client: OpenAI) -> None:
    assert client.api_key == "test"
    assert client.models is raw_client.models  # not cached: the SDK's own resource
    client.timeout = 7.5
    assert raw_client.timeout == 7.5


def test_a_copy_is_still_cached(client: Any, server: FakeOpenAIServer) -> None:
    copied = client.copy(timeout=9.0)
    assert copied.unwrapped is not client.unwrapped and copied.unwrapped.timeout == 9.0
    with_options = client.with_options(max_retries=1)
    assert with_options.unwrapped.max_retries == 1
    first = ask(client)
    assert ask(copied).id == ask(with_options).id == first.id  # hits of the same entry
    assert server.requests == 1


def test_copy_module_and_missing_private_attributes(client: Any) -> None:
    # copy.copy builds the object without __init__ and then reads attributes: ours must
    # say AttributeError, not recurse forever through __getattr__.
    shallow = copy.copy(client)
    assert shallow.unwrapped is client.unwrapped
    with pytest.raises(AttributeError):
        object.__new__(type(client)).__getattr__("_client")


def test_changing_the_base_url_changes_the_keys(
    client: Any, server: FakeOpenAIServer, cache: llmcache.Cache
) -> None:
    first = ask(client)
    with FakeOpenAIServer() as other:
        client.base_url = other.base_url  # another endpoint: its answers are not ours
        second = ask(client)
        assert other.requests == 1
    assert second.id != first.id
    assert server.requests == 1


def test_the_sync_client_is_a_context_manager(cache: llmcache.Cache, server: Any) -> None:
    raw = OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    with cache.wrap(raw) as wrapped:
        assert unwrapped_of(wrapped) is raw
        ask(wrapped)
    assert raw.is_closed()


async def test_the_async_client_is_an_async_context_manager(
    cache: llmcache.Cache, server: FakeOpenAIServer
) -> None:
    raw = AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    async with cache.wrap(raw) as wrapped:
        assert isinstance(wrapped, AsyncOpenAI) and unwrapped_of(wrapped) is raw
        first = await wrapped.chat.completions.create(model=MODEL, messages=MESSAGES)
        again = await wrapped.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert again.id == first.id
    assert raw.is_closed()
    assert server.requests == 1


def test_wrapped_resources_delegate_what_they_do_not_cache(client: Any, raw_client: OpenAI) -> None:
    completions = client.chat.completions
    assert completions.with_raw_response is not None  # the SDK's, reached through ours
    assert client.chat.completions.messages is not None  # stored completions' messages
    assert "create" in dir(completions) and "with_raw_response" in dir(completions)
    assert repr(completions).startswith("<llmcache cached <openai.resources.chat.completions")
    shallow = copy.copy(completions)  # built without __init__: no endless __getattr__
    assert shallow.with_raw_response is not None


def test_a_disabled_cache_sends_every_call(server: FakeOpenAIServer, tmp_path: Any) -> None:
    with llmcache.Cache(workspace="off", tiers=["memory"], enabled=False) as off:
        raw = OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        wrapped = off.wrap(raw)
        first, second = ask(wrapped), ask(wrapped)
    assert first.id != second.id
    assert server.requests == 2
