# Written by scripts/unasync.py from adapters/llmcache_anthropic/_async.py:
# edit that file, then run `python scripts/unasync.py`. CI fails when this copy is
# not current.
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

from ._common import ClientState, Delegate, Endpoints, bypassed
from ._keys import feature_headers, request_of
from ._sites import Family, Sites
from ._sync_streams import (
    CachedBetaMessageStream,
    CachedMessageStream,
    StreamHelper,
    open_stream,
)

__all__ = ["Beta", "BetaMessages", "Messages"]


class Messages(Endpoints):
    """`client.messages`: `create` (plain and ``stream=True``), `stream` and `count_tokens`
    are cached; `parse`, `batches` and the rest pass straight through."""

    __slots__ = ("_family",)
    _helper_stream: type[Any] = CachedMessageStream

    def __init__(self, inner: Any, state: ClientState, sites: Sites) -> None:
        super().__init__(inner, state, sites)
        self._family: Family = self._family_of(sites)

    @staticmethod
    def _family_of(sites: Sites) -> Family:
        return sites.messages

    def create(self, **kwargs: Any) -> Any:
        request = request_of(kwargs, self._state.fields)
        if request is None:
            return self._inner.create(**kwargs)
        if kwargs.get("stream") is True:
            return self._open(request, kwargs)
        # The SDK method is looked up only on a miss: a hit never needs it.
        return self._family.create.call(request, lambda: self._inner.create(**kwargs))

    def stream(self, **kwargs: Any) -> Any:
        """The SDK's stream helper: ``with client.messages.stream(...) as stream``.

        It shares the entries of ``create(stream=True)`` (the same events); with an
        ``output_format`` type it passes straight through.
        """
        request = request_of(kwargs, self._state.fields)
        if request is None:
            return self._inner.stream(**kwargs)
        upstream = {**kwargs, "stream": True}
        return StreamHelper(
            lambda: self._open(request, upstream), self._helper_stream, feature_headers(request)
        )

    def _open(self, request: dict[str, Any], kwargs: dict[str, Any]) -> Any:
        site = self._family.stream
        if bypassed(site.cache):
            return self._inner.create(**kwargs)
        return open_stream(
            site, request, lambda: self._inner.create(**kwargs), self._family.recording
        )

    def count_tokens(self, **kwargs: Any) -> Any:
        request = request_of(kwargs, self._state.fields)
        if request is None:
            return self._inner.count_tokens(**kwargs)
        count = self._inner.count_tokens
        return self._family.count.call(request, lambda: count(**kwargs))


class BetaMessages(Messages):
    """`client.beta.messages`: as `client.messages`, with the beta types and ``betas``."""

    __slots__ = ()
    _helper_stream = CachedBetaMessageStream

    @staticmethod
    def _family_of(sites: Sites) -> Family:
        return sites.beta


class Beta(Delegate):
    """`client.beta`, whose `messages` is cached."""

    __slots__ = ("messages",)

    def __init__(self, inner: Any, state: ClientState, sites: Sites) -> None:
        super().__init__(inner)
        self.messages = BetaMessages(inner.messages, state, sites)
