"""The call sites behind a wrapped client: one per cached endpoint and delivery mode.

Sites hold no client state (the base URL is part of each request), so every client wrapped
with the same cache and options shares one set: `with_options(...)` and re-wrapping are
free, and `cache.stats()` does not grow a row per wrapped client.
"""

from __future__ import annotations

import threading
from typing import Any

from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from llmcache.ext import Cache, CallSite, extension_state

from ._parse import ParsedCompletionValue
from ._streaming import ChatStreamRecording, ResponseStreamRecording

__all__ = ["Sites", "sites_for"]


class Sites:
    """The cached endpoints of one (cache, namespace, ttl, version, provider).

    The provider is the price list misses are priced from (genai-prices' id): "openai", or
    "azure" for Azure OpenAI clients.
    """

    __slots__ = (
        "cache",
        "chat",
        "chat_stream",
        "embeddings",
        "parse",
        "responses",
        "responses_stream",
    )

    def __init__(
        self,
        cache: Cache,
        namespace: str | None,
        ttl: float | None,
        version: str | int | None,
        provider: str,
    ) -> None:
        def site(identity: str, returns: Any) -> CallSite:
            return cache.site(
                identity,
                returns=returns,
                namespace=namespace,
                ttl=ttl,
                version=version,
                provider=provider,
            )

        self.cache = cache
        self.chat = site("openai.chat.completions.create", ChatCompletion)
        self.chat_stream = site("openai.chat.completions.create:stream", ChatStreamRecording)
        self.parse = site("openai.chat.completions.parse", ParsedCompletionValue)
        self.responses = site("openai.responses.create", Response)
        self.responses_stream = site("openai.responses.create:stream", ResponseStreamRecording)
        self.embeddings = site("openai.embeddings.create", CreateEmbeddingResponse)


_LOCK = threading.Lock()


def sites_for(
    cache: Cache,
    namespace: str | None,
    ttl: float | None,
    version: str | int | None,
    provider: str,
) -> Sites:
    options = (namespace, ttl, version, provider)
    with _LOCK:
        # Kept with the cache (a module-level map keyed by cache would keep every cache
        # alive, since its sites refer back to it).
        by_options: dict[tuple[Any, ...], Sites] = extension_state(cache, "llmcache_openai", dict)
        found = by_options.get(options)
        if found is None:
            found = by_options[options] = Sites(cache, *options)
        return found
