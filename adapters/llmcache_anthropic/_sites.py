"""The call sites behind a wrapped client: one per cached endpoint and delivery mode.

Sites hold no client state (the base URL is part of each request), so every client wrapped
with the same cache and options shares one set: `with_options(...)` and re-wrapping are
free, and `cache.stats()` does not grow a row per wrapped client.
"""

from __future__ import annotations

import threading
from typing import Any

from anthropic.types import Message, MessageTokensCount
from anthropic.types.beta import BetaMessage, BetaMessageTokensCount

from llmcache.ext import Cache, CallSite, extension_state

from ._decoding import stored_as
from ._streaming import BetaMessageStreamRecording, MessageStreamRecording, StreamRecording
from ._usage import count_usage, recording_usage

__all__ = ["Family", "Sites", "sites_for"]


class Family:
    """The sites of one Messages API: ``messages`` or ``beta.messages``."""

    __slots__ = ("count", "create", "recording", "stream")

    def __init__(
        self,
        site: Any,
        prefix: str,
        message: type,
        recording: type[StreamRecording],
        count: type,
    ) -> None:
        # Each site prices its misses with this adapter's usage reader (a hook, so no other
        # provider's reader is asked about these results). Messages are stored and decoded
        # through `stored_as`: the SDK's type, validated with its unions tagged.
        self.create: CallSite = site(f"{prefix}.create", stored_as(message), recording_usage)
        self.stream: CallSite = site(f"{prefix}.create:stream", recording, recording_usage)
        self.count: CallSite = site(f"{prefix}.count_tokens", count, count_usage)
        self.recording = recording


class Sites:
    """The cached endpoints of one (cache, namespace, ttl, version, provider).

    The provider is the price list misses are priced from (genai-prices' id): "anthropic"
    for Anthropic's API.
    """

    __slots__ = ("beta", "cache", "messages")

    def __init__(
        self,
        cache: Cache,
        namespace: str | None,
        ttl: float | None,
        version: str | int | None,
        provider: str,
    ) -> None:
        def site(identity: str, returns: Any, usage: Any) -> CallSite:
            return cache.site(
                identity,
                returns=returns,
                namespace=namespace,
                ttl=ttl,
                version=version,
                provider=provider,
                usage=usage,
            )

        self.cache = cache
        self.messages = Family(
            site, "anthropic.messages", Message, MessageStreamRecording, MessageTokensCount
        )
        self.beta = Family(
            site,
            "anthropic.beta.messages",
            BetaMessage,
            BetaMessageStreamRecording,
            BetaMessageTokensCount,
        )


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
        by_options: dict[tuple[Any, ...], Sites] = extension_state(
            cache, "llmcache_anthropic", dict
        )
        found = by_options.get(options)
        if found is None:
            found = by_options[options] = Sites(cache, *options)
        return found
