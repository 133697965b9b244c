"""llmcache provider adapter for the OpenAI SDK: ``cache.wrap(OpenAI())``.

import llmcache
from openai import OpenAI

cache = llmcache.Cache(workspace="acme")
client = cache.wrap(OpenAI())                     # or AsyncOpenAI(); same methods and types
client.chat.completions.create(model=..., messages=...)              # cached
client.chat.completions.create(model=..., messages=..., stream=True) # recorded, replayed
with llmcache.options(sample=2):                  # a fresh sample on purpose
    client.chat.completions.create(model=..., messages=..., temperature=1)

Cached: ``chat.completions.create`` (plain and ``stream=True``), ``chat.completions.parse``,
``responses.create`` (plain and ``stream=True``) and ``embeddings.create``. Everything else
goes straight to the SDK. Which parameters are keyed is decided in one place: `_keys`.
Found by llmcache through the ``llmcache.providers`` entry point ``openai``.
"""

from __future__ import annotations

from typing import Any

from ._async_streams import AsyncReplayStream, CachedAsyncStream
from ._client import CachedAsyncOpenAI, CachedClient, CachedOpenAI
from ._keys import EXCLUDED, INCLUDED
from ._sites import sites_for
from ._streaming import ChatStreamRecording, ResponseStreamRecording
from ._sync_streams import CachedStream, ReplayStream
from ._usage import provider_for_url, usage_of

__all__ = [
    "EXCLUDED",
    "INCLUDED",
    "AsyncReplayStream",
    "CachedAsyncOpenAI",
    "CachedAsyncStream",
    "CachedOpenAI",
    "CachedStream",
    "ChatStreamRecording",
    "OpenAIProvider",
    "ReplayStream",
    "ResponseStreamRecording",
]

_WRAP_OPTIONS = ("namespace", "ttl", "version", "provider")


class OpenAIProvider:
    """Wraps `openai.OpenAI` and `openai.AsyncOpenAI` clients (and subclasses, e.g. Azure)."""

    name = "openai"
    usage_of = staticmethod(usage_of)

    @staticmethod
    def can_wrap(client: Any) -> bool:
        from openai import AsyncOpenAI, OpenAI

        return isinstance(client, OpenAI | AsyncOpenAI)

    @staticmethod
    def wrap(cache: Any, client: Any, **options: Any) -> CachedClient:
        """A cached view of `client`.

        Args:
            cache: the `llmcache.Cache` the calls go through.
            client: an `OpenAI` or `AsyncOpenAI` client (a wrapped one is re-wrapped).
            namespace: namespace of the entries (default: the cache's).
            ttl: time to live of the entries in seconds.
            version: bump it to stop reusing entries made before.
            provider: the price list of the calls (a genai-prices provider id, e.g.
                "openai" for a gateway that forwards to OpenAI). Default: "azure" for Azure
                clients, else the provider genai-prices knows by the client's base URL
                (Groq, Together, ...); a URL it does not know (a local vLLM or Ollama
                server) leaves the calls unpriced unless `llmcache.set_price` prices the
                model.
        """
        from openai import AsyncAzureOpenAI, AsyncOpenAI, AzureOpenAI

        unknown = set(options) - set(_WRAP_OPTIONS)
        if unknown:
            raise TypeError(
                f"cache.wrap() got unexpected option(s) {sorted(unknown)}; "
                f"the OpenAI adapter takes {', '.join(_WRAP_OPTIONS)}"
            )
        if isinstance(client, CachedClient):
            client = client.unwrapped
        provider = options.get("provider")
        if provider is None:
            is_azure = isinstance(client, AzureOpenAI | AsyncAzureOpenAI)
            provider = "azure" if is_azure else provider_for_url(str(client.base_url))
        sites = sites_for(
            cache, options.get("namespace"), options.get("ttl"), options.get("version"), provider
        )
        if isinstance(client, AsyncOpenAI):
            return CachedAsyncOpenAI(client, sites)
        return CachedOpenAI(client, sites)
