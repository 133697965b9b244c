"""llmcache provider adapter for the Anthropic SDK: ``cache.wrap(Anthropic())``.

import llmcache
from anthropic import Anthropic

cache = llmcache.Cache(workspace="acme")
client = cache.wrap(Anthropic())                  # or AsyncAnthropic(); same methods and types
client.messages.create(model=..., max_tokens=..., messages=...)               # cached
client.messages.create(model=..., max_tokens=..., messages=..., stream=True)  # recorded, replayed
with client.messages.stream(model=..., max_tokens=..., messages=...) as stream:  # the same entry
    print(stream.get_final_text())
client.messages.count_tokens(model=..., messages=...)                         # cached

Cached: ``messages.create`` (plain and ``stream=True``), the ``messages.stream(...)`` helper,
``messages.count_tokens``, and the same three of ``beta.messages``. Everything else
(``messages.parse``, ``batches``, ``models``, ``files``, ...) goes straight to the SDK, as do
calls that name server-side state (``container``, ``mcp_servers``, ...). Which parameters are
keyed is decided in one place: `_keys`. Found by llmcache through the ``llmcache.providers``
entry point ``anthropic``.

llmcache loads every installed provider on the first miss that reports a usage, and asks each
whether it can wrap a client: this module imports the ``anthropic`` SDK (a second's work)
only when a client of it is wrapped, never for another provider's calls.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from ._usage import provider_for_url, usage_of

if TYPE_CHECKING:
    from ._async_streams import AsyncReplayStream, CachedAsyncStream
    from ._client import CachedAnthropic, CachedAsyncAnthropic, CachedClient
    from ._keys import EXCLUDED, INCLUDED, PASSED_THROUGH
    from ._streaming import BetaMessageStreamRecording, MessageStreamRecording
    from ._sync_streams import CachedStream, ReplayStream

__all__ = [
    "EXCLUDED",
    "INCLUDED",
    "PASSED_THROUGH",
    "AnthropicProvider",
    "AsyncReplayStream",
    "BetaMessageStreamRecording",
    "CachedAnthropic",
    "CachedAsyncAnthropic",
    "CachedAsyncStream",
    "CachedStream",
    "MessageStreamRecording",
    "ReplayStream",
]

# The names above that need the SDK, and the module of each: imported when first asked for.
_LAZY = {
    "EXCLUDED": "_keys",
    "INCLUDED": "_keys",
    "PASSED_THROUGH": "_keys",
    "AsyncReplayStream": "_async_streams",
    "CachedAsyncStream": "_async_streams",
    "CachedAnthropic": "_client",
    "CachedAsyncAnthropic": "_client",
    "CachedClient": "_client",
    "BetaMessageStreamRecording": "_streaming",
    "MessageStreamRecording": "_streaming",
    "CachedStream": "_sync_streams",
    "ReplayStream": "_sync_streams",
}
_WRAP_OPTIONS = ("namespace", "ttl", "version", "provider")


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


class AnthropicProvider:
    """Wraps `anthropic.Anthropic` and `anthropic.AsyncAnthropic` clients (and subclasses)."""

    name = "anthropic"
    usage_of = staticmethod(usage_of)

    @staticmethod
    def can_wrap(client: Any) -> bool:
        # An SDK that is not imported has no clients: no import just to ask.
        sdk = sys.modules.get("anthropic")
        return sdk is not None and isinstance(client, sdk.Anthropic | sdk.AsyncAnthropic)

    @staticmethod
    def wrap(cache: Any, client: Any, **options: Any) -> CachedClient:
        """A cached view of `client`.

        Args:
            cache: the `llmcache.Cache` the calls go through.
            client: an `Anthropic` or `AsyncAnthropic` client (a wrapped one is re-wrapped).
            namespace: namespace of the entries (default: the cache's).
            ttl: time to live of the entries in seconds.
            version: bump it to stop reusing entries made before.
            provider: the price list of the calls (a genai-prices provider id, e.g.
                "anthropic" for a gateway that forwards to Anthropic). Default: the provider
                genai-prices knows by the client's base URL ("anthropic" for Anthropic's
                API); a URL it does not know (a local server, a private gateway) leaves the
                calls unpriced unless `llmcache.set_price` prices the model.
        """
        from anthropic import AsyncAnthropic

        from ._client import CachedAnthropic, CachedAsyncAnthropic, CachedClient
        from ._sites import sites_for

        unknown = set(options) - set(_WRAP_OPTIONS)
        if unknown:
            raise TypeError(
                f"cache.wrap() got unexpected option(s) {sorted(unknown)}; "
                f"the Anthropic adapter takes {', '.join(_WRAP_OPTIONS)}"
            )
        if isinstance(client, CachedClient):
            client = client.unwrapped
        provider = options.get("provider") or provider_for_url(str(client.base_url))
        sites = sites_for(
            cache, options.get("namespace"), options.get("ttl"), options.get("version"), provider
        )
        if isinstance(client, AsyncAnthropic):
            return CachedAsyncAnthropic(client, sites)
        return CachedAnthropic(client, sites)
