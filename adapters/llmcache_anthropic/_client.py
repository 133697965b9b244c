"""The wrapped clients: an `Anthropic` / `AsyncAnthropic` with cached endpoints.

A wrapped client forwards everything to the SDK client it wraps, except `messages` and
`beta.messages` (`create`, `stream`, `count_tokens`), which are cached. It reports the
wrapped client's class (``isinstance(client, Anthropic)`` holds, as with ``wrapt``-style
proxies) so libraries that check for an SDK client accept it.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from ._async import AsyncBeta, AsyncMessages
from ._common import ClientState
from ._sites import Sites
from ._sync import Beta, Messages

__all__ = ["CachedAnthropic", "CachedAsyncAnthropic", "CachedClient"]

# Client attributes that are part of every request's key: setting them re-reads the key fields.
_KEYED_SETTINGS = frozenset({"base_url", "default_query", "default_headers"})


class CachedClient:
    """What sync and async wrapped clients share: delegation, `with_options`, `unwrapped`."""

    _messages_type: Any = None
    _beta_type: Any = None

    def __init__(self, client: Any, sites: Sites) -> None:
        state = ClientState(client)
        own = object.__setattr__  # our __setattr__ forwards to the client
        own(self, "_client", client)
        own(self, "_sites", sites)
        own(self, "_state", state)
        own(self, "messages", self._messages_type(client.messages, state, sites))
        own(self, "beta", self._beta_type(client.beta, state, sites))

    @property
    def unwrapped(self) -> Any:
        """The SDK client underneath, which never touches the cache."""
        return self._client

    @property
    def cache(self) -> Any:
        """The `llmcache.Cache` this client's calls go through."""
        return self._sites.cache

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() sees the SDK client's class
        return type(self._client)

    def with_options(self, **options: Any) -> Any:
        """`Anthropic.with_options(...)`, still cached."""
        return type(self)(self._client.with_options(**options), self._sites)

    def copy(self, **options: Any) -> Any:
        return type(self)(self._client.copy(**options), self._sites)

    def __getattr__(self, name: str) -> Any:
        if name in ("_client", "_sites", "_state"):  # not set yet (copy, pickle)
            raise AttributeError(name)
        return getattr(self._client, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._client, name, value)
        if name in _KEYED_SETTINGS:
            self._state.refresh()

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._client)) | {"unwrapped", "cache"})

    def __repr__(self) -> str:
        return f"<llmcache cached {type(self._client).__name__} base_url={self._client.base_url}>"


class CachedAnthropic(CachedClient):
    """A cached `anthropic.Anthropic`."""

    _messages_type = Messages
    _beta_type = Beta

    # The context-manager protocol's signature, as every context manager in the adapters
    # spells it (the streams, the stream helper): it enters and exits the SDK client.
    def __enter__(self) -> CachedAnthropic:
        self._client.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._client.__exit__(exc_type, exc, traceback)


class CachedAsyncAnthropic(CachedClient):
    """A cached `anthropic.AsyncAnthropic`."""

    _messages_type = AsyncMessages
    _beta_type = AsyncBeta

    # As `CachedAnthropic.__enter__` / `__exit__`, for the async client.
    async def __aenter__(self) -> CachedAsyncAnthropic:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._client.__aexit__(exc_type, exc, traceback)
