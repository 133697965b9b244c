"""Fixtures for the OpenAI adapter tests (used through ``pytest_plugins``): a loopback
server, a cache on memory and disk, and wrapped sync and async clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI, OpenAI

import llmcache
from llmcache.testing import FakeOpenAIServer


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[llmcache.Cache]:
    with llmcache.Cache(workspace="adapter", tiers=["memory", f"disk://{tmp_path}/tier"]) as c:
        yield c


@pytest.fixture
def raw_client(server: FakeOpenAIServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as client:
        yield client


@pytest.fixture
def client(cache: llmcache.Cache, raw_client: OpenAI) -> Any:
    return cache.wrap(raw_client, provider="openai")  # the fake server imitates OpenAI


@pytest.fixture
async def aclient(cache: llmcache.Cache, server: FakeOpenAIServer) -> AsyncIterator[Any]:
    async with AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as raw:
        yield cache.wrap(raw, provider="openai")
