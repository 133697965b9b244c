"""Cached endpoints of wrapped clients (`AsyncOpenAI` in `_async.py`, `OpenAI` in `_sync.py`).

`_async.py` is the one source of both: `scripts/unasync.py` writes `_sync.py` from it (the
classes lose their ``Async`` prefix, awaited site methods become the plain ones) and CI
checks the copy is current. Each method turns its keyword arguments into the keyed request
(see `_keys`) and lets the call site do the rest: lookup, single-flight, the real call on a
miss, storing, the ledger. Streams go through `_streaming`: a hit is replayed, a miss is
recorded as it is consumed. Async lookups that leave the memory tier, and stores of
recorded streams, do not block the loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from openai import omit

from ._async_streams import aopen_stream
from ._common import (
    ClientState,
    Delegate,
    Endpoints,
    asks_for_usage,
    bypassed,
    is_reusable_response,
    with_usage_requested,
)
from ._keys import request_of, uncacheable
from ._parse import PARSE_CONTEXT, PARSE_SUPPORTED, response_format_key
from ._sites import Sites

__all__ = ["AsyncChat", "AsyncChatCompletions", "AsyncEmbeddings", "AsyncResponses"]


class AsyncChatCompletions(Endpoints):
    """`client.chat.completions`: `create` and `parse` are cached."""

    async def create(self, **kwargs: Any) -> Any:
        if kwargs.get("stream") is True:
            return await self._stream(kwargs)
        # The SDK method is looked up only on a miss: a hit never needs it.
        return await self._sites.chat.acall(
            request_of(kwargs, self._state.fields), lambda: self._inner.create(**kwargs)
        )

    async def _stream(self, kwargs: dict[str, Any]) -> Any:
        # The Responses API's `_stream` below has the same steps; chat streams also ask the
        # API for the usage chunk, to price the call, and hide it unless the caller asked.
        site = self._sites.chat_stream
        request = request_of(kwargs, self._state.fields)
        include_usage = asks_for_usage(kwargs)
        if bypassed(site.cache):
            return await self._inner.create(**kwargs)
        upstream = kwargs if include_usage else with_usage_requested(kwargs)
        return await aopen_stream(
            site,
            request,
            lambda: self._inner.create(**upstream),
            chat=True,
            include_usage=include_usage,
        )

    async def parse(self, **kwargs: Any) -> Any:
        if not PARSE_SUPPORTED:
            return await self._inner.parse(**kwargs)
        tools = kwargs.get("tools", omit)
        if isinstance(tools, Iterable) and not isinstance(tools, list | tuple):
            tools = kwargs["tools"] = list(tools)  # read twice: by the key and by the SDK
        request = request_of(kwargs, self._state.fields)
        if "response_format" in request:
            request["response_format"] = response_format_key(request["response_format"])
        parse = self._inner.parse
        token = PARSE_CONTEXT.set((kwargs.get("response_format", omit), tools))
        try:
            return await self._sites.parse.acall(request, lambda: parse(**kwargs))
        finally:
            PARSE_CONTEXT.reset(token)


class AsyncChat(Delegate):
    """`client.chat`, whose `completions` is cached."""

    __slots__ = ("completions",)

    def __init__(self, inner: Any, state: ClientState, sites: Sites) -> None:
        super().__init__(inner)
        self.completions = AsyncChatCompletions(inner.completions, state, sites)


class AsyncResponses(Endpoints):
    """`client.responses`: `create` is cached (plain and streamed)."""

    async def create(self, **kwargs: Any) -> Any:
        if uncacheable(kwargs):
            return await self._inner.create(**kwargs)
        if kwargs.get("stream") is True:
            return await self._stream(kwargs)
        create = self._inner.create
        # A response that did not complete reaches the caller but is never stored.
        return await self._sites.responses.acall(
            request_of(kwargs, self._state.fields),
            lambda: create(**kwargs),
            keep=is_reusable_response,
        )

    async def _stream(self, kwargs: dict[str, Any]) -> Any:
        # The steps of the chat endpoint's `_stream` (its events carry their own usage).
        site = self._sites.responses_stream
        request = request_of(kwargs, self._state.fields)
        if bypassed(site.cache):
            return await self._inner.create(**kwargs)
        return await aopen_stream(
            site,
            request,
            lambda: self._inner.create(**kwargs),
            chat=False,
            include_usage=False,
        )


class AsyncEmbeddings(Endpoints):
    """`client.embeddings`: `create` is cached."""

    async def create(self, **kwargs: Any) -> Any:
        create = self._inner.create
        return await self._sites.embeddings.acall(
            request_of(kwargs, self._state.fields), lambda: create(**kwargs)
        )
