"""llmcache as LiteLLM's cache: ``litellm.cache = llmcache_litellm.cache(cache)``.

`cache` returns a ``litellm.Cache`` whose backend is an `LLMCacheBackend`: LiteLLM keeps
deciding what is cached and under which key (``litellm.Cache.get_cache_key``), and when to
read and write (``completion``, ``acompletion``, streams, ``embedding``, ``aembedding``,
``text_completion``, and the per-call ``cache={...}`` controls); llmcache stores each entry
signed and encrypted per workspace in its tiers, fails open, and counts what every hit saved
in its ledger (LiteLLM reports a hit's ``response_cost`` as 0). Identical concurrent calls of
one process make one request: the others wait for its entry (single-flight, `_flight`).
"""

from __future__ import annotations

from typing import Any

from litellm.caching.caching import Cache as LiteLLMCache

from llmcache.ext import Cache

from ._backend import LLMCacheBackend
from ._cache import SingleFlightCache
from ._usage import usage_of

__all__ = ["LLMCacheBackend", "cache", "usage_of"]


def cache(
    cache: Cache,
    *,
    namespace: str | None = None,
    ttl: float | None = None,
    **options: Any,
) -> LiteLLMCache:
    """A ``litellm.Cache`` that stores in `cache`: assign it to ``litellm.cache``.

    Args:
        cache: the llmcache `Cache` (its workspace, secret and tiers).
        namespace: the llmcache namespace of calls that name no LiteLLM namespace (default:
            the cache's). A LiteLLM namespace, given per call (``cache={"namespace": "x"}``),
            is the llmcache namespace of that call's entries.
        ttl: seconds an entry lives unless the call says ``cache={"ttl": n}`` (default: the
            cache's).
        options: passed to ``litellm.Cache`` (``mode``, ``supported_call_types``,
            ``max_messages``, ...); not ``type`` nor LiteLLM's own ``namespace`` or ``ttl``.
    """
    for name in ("type", "_backend", "default_in_memory_ttl", "default_in_redis_ttl"):
        if name in options:
            raise TypeError(
                f"llmcache_litellm.cache() sets the backend itself; drop {name}= "
                f"(the tiers are the llmcache Cache's)"
            )
    backend = LLMCacheBackend(cache, namespace=namespace, ttl=ttl)
    # LiteLLM's `type=` names only its own backends (local, redis, s3, ...). `_backend=` is
    # the constructor's way to give it another BaseCache (the rest of the constructor, its
    # callbacks, supported call types and mode, runs as for its own types), so nothing is
    # patched afterwards; building type="local" and replacing `.cache` would also work but
    # builds an in-memory store for nothing. The namespace and ttl stay ours (see
    # LLMCacheBackend): a LiteLLM namespace still reaches us as the key's prefix.
    # `SingleFlightCache` is LiteLLM's Cache that tells the backend which call a read belongs
    # to: identical concurrent calls then make one request (see `_flight`).
    return SingleFlightCache(_backend=backend, **options)
