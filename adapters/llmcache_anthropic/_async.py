"""Cached endpoints of wrapped clients (`AsyncAnthropic` in `_async.py`, `Anthropic` in
`_sync.py`).

`_async.py` is the one source of both: `scripts/unasync.py` writes `_sync.py` from it (the
classes lose their ``Async`` prefix, awaited site methods become the plain ones) and CI
checks the copy is current. Each method turns its keyword arguments into the keyed request
(see `_keys`) and lets the call site do the rest: lookup, single-flight, the real call on a
miss, storing, the ledger. Streams go through `_streaming`: a hit is replayed, a miss is
recorded as it is consumed. Calls that name server-side state pass straight through
(`request_of` is None for them: see `_keys.uncacheable`).
"""

from __future__ import annotations

from typing import Any

from ._async_streams import (
    AsyncStreamHelper,
    CachedAsyncMessageStream,
    CachedBetaAsyncMessageStream,
    aopen_stream,
)
from ._common import ClientState, Delegate, Endpoints, bypassed
from ._keys import feature_headers, request_of
from ._sites import Family, Sites

__all__ = ["AsyncBeta", "AsyncBetaMessages", "AsyncMessages"]


class AsyncMessages(Endpoints):
    """`client.messages`: `create` (plain and ``stream=True``), `stream` and `count_tokens`
    are cached; `parse`, `batches` and the rest pass straight through."""

    __slots__ = ("_family",)
    _helper_stream: type[Any] = CachedAsyncMessageStream

    def __init__(self, inner: Any, state: ClientState, sites: Sites) -> None:
        super().__init__(inner, state, sites)
        self._family: Family = self._family_of(sites)

    @staticmethod
    def _family_of(sites: Sites) -> Family:
        return sites.messages

    async def create(self, **kwargs: Any) -> Any:
        request = request_of(kwargs, self._state.fields)
        if request is None:
            return await self._inner.create(**kwargs)
        if kwargs.get("stream") is True:
            return await self._open(request, kwargs)
        # The SDK method is looked up only on a miss: a hit never needs it.
        return await self._family.create.acall(request, lambda: self._inner.create(**kwargs))

    def stream(self, **kwargs: Any) -> Any:
        """The SDK's stream helper: ``async with client.messages.stream(...) as stream``.

        It shares the entries of ``create(stream=True)`` (the same events); with an
        ``output_format`` type it passes straight through.
        """
        request = request_of(kwargs, self._state.fields)
        if request is None:
            return self._inner.stream(**kwargs)
        upstream = {**kwargs, "stream": True}
        return AsyncStreamHelper(
            lambda: self._open(request, upstream), self._helper_stream, feature_headers(request)
        )

    async def _open(self, request: dict[str, Any], kwargs: dict[str, Any]) -> Any:
        site = self._family.stream
        if bypassed(site.cache):
            return await self._inner.create(**kwargs)
        return await aopen_stream(
            site, request, lambda: self._inner.create(**kwargs), self._family.recording
        )

    async def count_tokens(self, **kwargs: Any) -> Any:
        request = request_of(kwargs, self._state.fields)
        if request is None:
            return await self._inner.count_tokens(**kwargs)
        count = self._inner.count_tokens
        return await self._family.count.acall(request, lambda: count(**kwargs))


class AsyncBetaMessages(AsyncMessages):
    """`client.beta.messages`: as `client.messages`, with the beta types and ``betas``."""

    __slots__ = ()
    _helper_stream = CachedBetaAsyncMessageStream

    @staticmethod
    def _family_of(sites: Sites) -> Family:
        return sites.beta


class AsyncBeta(Delegate):
    """`client.beta`, whose `messages` is cached."""

    __slots__ = ("messages",)

    def __init__(self, inner: Any, state: ClientState, sites: Sites) -> None:
        super().__init__(inner)
        self.messages = AsyncBetaMessages(inner.messages, state, sites)
